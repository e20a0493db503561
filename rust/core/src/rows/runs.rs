//! Rows taken in passes by their kernel ([`map_row_runs`]): whole, or (long float16 rows) a
//! chunk at a time through bounded scratch.

use super::{map_rows, RowsMut, RowsRef, SharedMut};
use crate::element::Element;
use crate::reduce::{scaled_sum_squares_runs, Moments};
use crate::simd;

/// Rows longer than this, of a converted type (float16), are taken a chunk of this many values
/// at a time by [`map_row_runs`]: scratch then stays at two chunks a task (512 KB), where a whole
/// row in f32 had needed four times a one-row array's own size. A multiple of
/// [`crate::reduce::BLOCK`], so sums over the chunks are blocked as over the whole row.
pub const ROW_CHUNK: usize = 64 * crate::reduce::BLOCK;

/// One row of an input and its output, for a kernel of passes over the row ([`map_row_runs`]):
/// the whole row as slices, or (long float16 rows) consecutive chunks converted through bounded
/// scratch. Each pass goes through the row in order, from its start.
pub enum RowRuns<'a, S: Element> {
    Whole {
        x: &'a [S::Compute],
        y: &'a mut [S::Compute],
    },
    Chunked(Chunks<'a, S>),
}

/// A long row reached a chunk at a time (see [`RowRuns`]).
pub struct Chunks<'a, S: Element> {
    x: *const S,
    x_stride: isize,
    y: *mut S,
    y_stride: isize,
    len: usize,
    xs: &'a mut [S::Compute],
    ys: &'a mut [S::Compute],
}

impl<S: Element> Chunks<'_, S> {
    /// Converts values `start..start + n` of x into the input scratch.
    fn load(&mut self, start: usize, n: usize) {
        assert!(start + n <= self.len, "chunk past the row");
        let xs = &mut self.xs[..n];
        // SAFETY: `map_row_runs` took the pointers and strides from this task's row of the
        // views, which lies inside their memory (their invariant); start + n ≤ len.
        unsafe {
            if self.x_stride == 1 {
                S::load_slice(std::slice::from_raw_parts(self.x.add(start), n), xs);
            } else {
                for (k, v) in xs.iter_mut().enumerate() {
                    *v = (*self.x.offset((start + k) as isize * self.x_stride)).load();
                }
            }
        }
    }

    /// Stores the output scratch into values `start..start + n` of y.
    fn store(&mut self, start: usize, n: usize) {
        assert!(start + n <= self.len, "chunk past the row");
        let ys = &self.ys[..n];
        // SAFETY: as in `load`; this task owns the row.
        unsafe {
            if self.y_stride == 1 {
                S::store_slice(ys, std::slice::from_raw_parts_mut(self.y.add(start), n));
            } else {
                for (k, &v) in ys.iter().enumerate() {
                    *self.y.offset((start + k) as isize * self.y_stride) = S::store(v);
                }
            }
        }
    }

    fn starts(&self) -> impl Iterator<Item = (usize, usize)> {
        let len = self.len;
        (0..len)
            .step_by(ROW_CHUNK)
            .map(move |start| (start, ROW_CHUNK.min(len - start)))
    }
}

impl<S: Element> RowRuns<'_, S> {
    /// Values in the row.
    #[inline(always)]
    #[allow(clippy::len_without_is_empty)] // rows are never empty here (checked by the ops)
    pub fn len(&self) -> usize {
        match self {
            RowRuns::Whole { x, .. } => x.len(),
            RowRuns::Chunked(c) => c.len,
        }
    }

    /// The whole input row, when it is one slice.
    #[inline(always)]
    pub fn whole(&self) -> Option<&[S::Compute]> {
        match self {
            RowRuns::Whole { x, .. } => Some(x),
            RowRuns::Chunked(_) => None,
        }
    }

    /// `f` of the row's first run (the whole row, or its first chunk).
    #[inline(always)]
    pub fn first<R>(&mut self, f: impl FnOnce(&[S::Compute]) -> R) -> R {
        match self {
            RowRuns::Whole { x, .. } => f(x),
            RowRuns::Chunked(c) => {
                let n = ROW_CHUNK.min(c.len);
                c.load(0, n);
                f(&c.xs[..n])
            }
        }
    }

    /// The input row's moments: [`Moments::of_slice`] of a whole row; of a chunked one, its runs
    /// fed in order (the same bits, as its chunks are whole blocks of a row too long for
    /// `of_slice`'s short path).
    #[inline(always)]
    pub fn moments(&mut self) -> Moments {
        if let Some(x) = self.whole() {
            return Moments::of_slice(x);
        }
        let center = self.first(
            #[inline(always)]
            #[allow(clippy::redundant_closure)] // an item would be called out of line
            |x| Moments::probe_center(x),
        );
        Moments::of_runs(
            center,
            #[inline(always)]
            |sums| {
                self.read(
                    #[inline(always)]
                    |_, x| sums.add(x),
                );
            },
        )
    }

    /// Σ x² of the input row as (Σ (x·scale)², scale), see [`scaled_sum_squares_runs`].
    #[inline(always)]
    pub fn scaled_sum_squares(&mut self) -> (f64, f64) {
        scaled_sum_squares_runs::<S::Compute>(
            #[inline(always)]
            |sums| {
                self.read(
                    #[inline(always)]
                    |_, x| sums.add(x),
                );
            },
        )
    }

    /// Calls `f(start, values)` on consecutive runs of the input row.
    #[inline(always)]
    pub fn read(&mut self, mut f: impl FnMut(usize, &[S::Compute])) {
        match self {
            RowRuns::Whole { x, .. } => f(0, x),
            RowRuns::Chunked(c) => {
                for (start, n) in c.starts() {
                    c.load(start, n);
                    f(start, &c.xs[..n]);
                }
            }
        }
    }

    /// Calls `f(start, x, y)` on consecutive runs of the row, the output run stored after each
    /// (in place, a run's inputs are read before its outputs are stored).
    #[inline(always)]
    pub fn write(&mut self, mut f: impl FnMut(usize, &[S::Compute], &mut [S::Compute])) {
        match self {
            RowRuns::Whole { x, y } => f(0, x, y),
            RowRuns::Chunked(c) => {
                for (start, n) in c.starts() {
                    c.load(start, n);
                    f(start, &c.xs[..n], &mut c.ys[..n]);
                    c.store(start, n);
                }
            }
        }
    }
}

/// [`map_rows`] for kernels of one input and one output that go through their row in passes:
/// rows of float16 longer than [`ROW_CHUNK`] with one stride are handed over in chunks (bounded
/// scratch), every other row whole, as `map_rows` hands it.
/// Views as for [`map_rows`]; `y` may be `x` itself.
pub fn map_row_runs<S, R>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    results: &mut [R],
    kernel: impl Fn(usize, &mut RowRuns<'_, S>) -> R + Sync,
) where
    S: Element,
    R: Send,
{
    let (n_rows, row_len) = (x.rows().n_rows(), x.rows().row_len());
    assert!(
        y.rows().n_rows() == n_rows && y.rows().row_len() == row_len,
        "map_row_runs: views of different rows"
    );
    assert!(
        results.is_empty() || results.len() == n_rows,
        "one result per row"
    );
    assert!(super::same_or_apart(x, y), "map_row_runs: y overlaps x");
    let chunked = match (
        x.rows().inner().single_stride(),
        y.rows().inner().single_stride(),
    ) {
        (Some(sx), Some(sy)) if !S::NATIVE && row_len > ROW_CHUNK => Some((sx, sy)),
        _ => None,
    };
    let Some((x_stride, y_stride)) = chunked else {
        map_rows(
            [x],
            [y],
            results,
            #[inline(always)]
            |row, [x], [y]| kernel(row, &mut RowRuns::Whole { x, y }),
        );
        return;
    };
    let keep_results = !results.is_empty();
    let results = SharedMut(results.as_mut_ptr());
    let (xp, yp) = (SharedMut(x.as_ptr().cast_mut()), SharedMut(y.as_mut_ptr()));
    simd::for_each_range(
        n_rows,
        row_len * 2,
        #[inline(always)]
        |range| {
            let mut xs = vec![<S::Compute as crate::Float>::ZERO; ROW_CHUNK];
            let mut ys = xs.clone();
            for row in range {
                let mut runs = RowRuns::Chunked(Chunks {
                    x: xp
                        .at(0)
                        .wrapping_offset(x.rows().row_offset(row))
                        .cast_const(),
                    x_stride,
                    y: yp.at(0).wrapping_offset(y.rows().row_offset(row)),
                    y_stride,
                    len: row_len,
                    xs: &mut xs,
                    ys: &mut ys,
                });
                let result = kernel(row, &mut runs);
                if keep_results {
                    // SAFETY: row < n_rows = results.len(); one writer per row.
                    unsafe { *results.at(row) = result };
                }
            }
        },
    );
}
