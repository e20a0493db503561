//! The row driver shared by every row-wise op: hands each row to a kernel as contiguous slices of
//! the compute type, whatever the strides and storage type, and splits rows across threads.

use crate::element::Element;
use crate::error::{Error, Result};
use crate::layout::Rows;
use crate::simd;

mod runs;

pub use runs::{map_row_runs, Chunks, RowRuns, ROW_CHUNK};

/// A read-only strided array seen as rows.
#[derive(Clone, Debug)]
pub struct RowsRef<S> {
    pub ptr: *const S,
    pub rows: Rows,
}

/// A writeable strided array seen as rows.
#[derive(Clone, Debug)]
pub struct RowsMut<S> {
    pub ptr: *mut S,
    pub rows: Rows,
}

/// A read-only strided N-d array as NumPy hands it over (element strides), from which an op makes
/// the row views its path needs.
#[derive(Clone, Debug)]
pub struct ArrayRef<S> {
    pub ptr: *const S,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
}

/// A writeable strided N-d array (see [`ArrayRef`]).
#[derive(Clone, Debug)]
pub struct ArrayMut<S> {
    pub ptr: *mut S,
    pub shape: Vec<usize>,
    pub strides: Vec<isize>,
}

/// Element strides of a C-contiguous array of `shape`.
fn c_strides(shape: &[usize]) -> Vec<isize> {
    let mut strides = vec![1isize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1] as isize;
    }
    strides
}

/// Shape and strides with the `leading` dims first (in that order), the others after in order.
fn with_leading(shape: &[usize], strides: &[isize], leading: &[usize]) -> (Vec<usize>, Vec<isize>) {
    let rest = (0..shape.len()).filter(|d| !leading.contains(d));
    let order = leading.iter().copied().chain(rest);
    order.map(|d| (shape[d], strides[d])).unzip()
}

/// Rows along `axis`: that dim innermost, the others in order.
fn axis_last(shape: &[usize], strides: &[isize], axis: usize) -> Rows {
    let others: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
    let (shape, strides) = with_leading(shape, strides, &others);
    Rows::split(&shape, &strides, 1)
}

/// `shape` without `axis`: the shape of a reduction's result.
pub fn without_axis(shape: &[usize], axis: usize) -> Vec<usize> {
    let kept = shape.iter().enumerate().filter(|&(d, _)| d != axis);
    kept.map(|(_, &n)| n).collect()
}

/// One value per row of a reduction along an axis, and the shape they take (the input's without
/// that axis, or `[]` for a single value).
#[derive(Clone, Debug, PartialEq)]
pub struct Reduced {
    pub values: Vec<f64>,
    pub shape: Vec<usize>,
}

impl<S> ArrayRef<S> {
    /// The same array with its dims reordered: `leading` first (in that order), the others after.
    #[must_use]
    pub fn with_leading(&self, leading: &[usize]) -> ArrayRef<S> {
        let (shape, strides) = with_leading(&self.shape, &self.strides, leading);
        ArrayRef {
            ptr: self.ptr,
            shape,
            strides,
        }
    }

    /// The array as rows along `axis`: that dim innermost, the others in order.
    pub fn rows_along(&self, axis: usize) -> RowsRef<S> {
        RowsRef {
            ptr: self.ptr,
            rows: axis_last(&self.shape, &self.strides, axis),
        }
    }

    /// A C-contiguous array of `shape` over a slice of exactly that many elements.
    pub fn from_slice(data: &[S], shape: &[usize]) -> Self {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "slice and shape disagree"
        );
        ArrayRef {
            ptr: data.as_ptr(),
            shape: shape.to_vec(),
            strides: c_strides(shape),
        }
    }

    /// The array as rows of its last `inner_ndim` dims.
    pub fn rows(&self, inner_ndim: usize) -> RowsRef<S> {
        RowsRef {
            ptr: self.ptr,
            rows: Rows::split(&self.shape, &self.strides, inner_ndim),
        }
    }
}

impl<S> ArrayMut<S> {
    /// The same array with its dims reordered (see [`ArrayRef::with_leading`]).
    #[must_use]
    pub fn with_leading(&self, leading: &[usize]) -> ArrayMut<S> {
        let (shape, strides) = with_leading(&self.shape, &self.strides, leading);
        ArrayMut {
            ptr: self.ptr,
            shape,
            strides,
        }
    }

    /// The array as rows along `axis` (see [`ArrayRef::rows_along`]).
    pub fn rows_along(&self, axis: usize) -> RowsMut<S> {
        RowsMut {
            ptr: self.ptr,
            rows: axis_last(&self.shape, &self.strides, axis),
        }
    }

    /// A C-contiguous array of `shape` over a mutable slice of exactly that many elements.
    pub fn from_slice(data: &mut [S], shape: &[usize]) -> Self {
        assert_eq!(
            data.len(),
            shape.iter().product::<usize>(),
            "slice and shape disagree"
        );
        ArrayMut {
            ptr: data.as_mut_ptr(),
            shape: shape.to_vec(),
            strides: c_strides(shape),
        }
    }

    /// The array as rows of its last `inner_ndim` dims.
    pub fn rows(&self, inner_ndim: usize) -> RowsMut<S> {
        RowsMut {
            ptr: self.ptr,
            rows: Rows::split(&self.shape, &self.strides, inner_ndim),
        }
    }
}

// SAFETY: the array views, like the row views below, are plain descriptions of memory.
unsafe impl<S: Sync> Send for ArrayRef<S> {}
unsafe impl<S: Sync> Sync for ArrayRef<S> {}
unsafe impl<S: Send> Send for ArrayMut<S> {}
unsafe impl<S: Send> Sync for ArrayMut<S> {}

// SAFETY: the views are plain descriptions of memory; `map_rows`' contract makes concurrent use
// sound (rows are disjoint, inputs are not written while read).
unsafe impl<S: Sync> Send for RowsRef<S> {}
unsafe impl<S: Sync> Sync for RowsRef<S> {}
unsafe impl<S: Send> Send for RowsMut<S> {}
unsafe impl<S: Send> Sync for RowsMut<S> {}

impl<'a, S> RowsRef<S> {
    /// C-contiguous rows over a slice.
    pub fn from_slice(data: &'a [S], row_len: usize) -> Self {
        let n_rows = data.len().checked_div(row_len).unwrap_or(0);
        RowsRef {
            ptr: data.as_ptr(),
            rows: Rows::contiguous(n_rows, row_len),
        }
    }
}

impl<'a, S> RowsMut<S> {
    /// C-contiguous rows over a mutable slice.
    pub fn from_slice(data: &'a mut [S], row_len: usize) -> Self {
        let n_rows = data.len().checked_div(row_len).unwrap_or(0);
        RowsMut {
            ptr: data.as_mut_ptr(),
            rows: Rows::contiguous(n_rows, row_len),
        }
    }
}

/// Calls `kernel(input_chunks, y_chunk)` over all elements, for elementwise ops: contiguous native
/// arrays in parallel chunks of `ELEMENTWISE_CHUNK`, anything else row by row (last dim) through
/// [`map_rows`]. Every view must have the shape of `y` (given as rows over their last dim).
///
/// # Safety
/// As [`map_rows`]; an input may also be `y` itself (in place).
pub unsafe fn map_elements<S: Element, const NI: usize>(
    inputs: [&RowsRef<S>; NI],
    y: &RowsMut<S>,
    kernel: impl Fn([&[S::Compute]; NI], &mut [S::Compute]) + Sync,
) -> Result<()> {
    for input in inputs {
        check_same_rows("elementwise", &y.rows, &[("input", &input.rows)])?;
    }
    let flat_len = flat_unit_stride(&y.rows);
    let all_flat = inputs.iter().all(|v| flat_unit_stride(&v.rows).is_some());
    if let (true, Some(len), true) = (S::NATIVE, flat_len, all_flat) {
        let in_ptrs = inputs.map(|v| SharedMut(v.ptr.cast_mut()));
        let yp = SharedMut(y.ptr);
        let chunks = len.div_ceil(ELEMENTWISE_CHUNK);
        simd::for_each_range(
            chunks,
            ELEMENTWISE_CHUNK * (NI + 1),
            #[inline(always)]
            |range| {
                let mut scratch: [Vec<S::Compute>; NI] = std::array::from_fn(|_| Vec::new());
                for c in range {
                    let start = c * ELEMENTWISE_CHUNK;
                    let n = ELEMENTWISE_CHUNK.min(len - start);
                    let y_at = yp.at(start);
                    // SAFETY: NATIVE: S == Compute; chunks are disjoint and in bounds. An
                    // input that is y (in place) is copied first, so no two slices alias.
                    unsafe {
                        let ys: &mut [S::Compute] = std::slice::from_raw_parts_mut(y_at.cast(), n);
                        for (i, p) in in_ptrs.iter().enumerate() {
                            if p.at(start) == y_at {
                                scratch[i].clear();
                                scratch[i].extend_from_slice(ys);
                            }
                        }
                        let xs: [&[S::Compute]; NI] = std::array::from_fn(|i| {
                            let at = in_ptrs[i].at(start);
                            if at == y_at {
                                &scratch[i][..]
                            } else {
                                std::slice::from_raw_parts(at.cast_const().cast(), n)
                            }
                        });
                        kernel(xs, ys);
                    }
                }
            },
        );
        return Ok(());
    }
    // SAFETY: forwarded from the caller.
    unsafe {
        map_rows(
            inputs,
            [y],
            &mut [],
            #[inline(always)]
            |_, xs, [y]| kernel(xs, y),
        );
    }
    Ok(())
}

/// Elements per task of [`map_elements`]: 16 KB of f32, cache-resident.
const ELEMENTWISE_CHUNK: usize = 4096;

/// Total length when all rows together are one contiguous run.
fn flat_unit_stride(rows: &Rows) -> Option<usize> {
    let mut all = rows.outer.clone();
    all.shape.extend(&rows.inner.shape);
    all.strides.extend(&rows.inner.strides);
    let all = crate::layout::Dims::new(&all.shape, &all.strides);
    (all.single_stride() == Some(1)).then(|| all.len())
}

pub(crate) struct SharedMut<T>(*mut T);
// SAFETY: each row index is written by exactly one task (see `parallel::for_each_range`).
unsafe impl<T: Send> Sync for SharedMut<T> {}

impl<T> SharedMut<T> {
    /// A method, not field access, so closures capture the Sync wrapper rather than the pointer.
    pub(crate) fn at(&self, index: usize) -> *mut T {
        self.0.wrapping_add(index)
    }
}

/// Checks that every view has the rows of `reference` (same count and length).
pub fn check_same_rows(op: &str, reference: &Rows, others: &[(&str, &Rows)]) -> Result<()> {
    for (name, rows) in others {
        if rows.n_rows() != reference.n_rows() || rows.row_len() != reference.row_len() {
            return Err(Error::ShapeMismatch(format!(
                "{op}: {name} has {} rows of {} elements, x has {} rows of {}",
                rows.n_rows(),
                rows.row_len(),
                reference.n_rows(),
                reference.row_len()
            )));
        }
    }
    Ok(())
}

/// Per-task row access: hands rows to a kernel as contiguous compute-type slices, directly when
/// the row is contiguous and native, else through scratch buffers reused for every row of the task.
struct RowIo<'v, S: Element, const NI: usize, const NO: usize> {
    inputs: [&'v RowsRef<S>; NI],
    outputs: [&'v RowsMut<S>; NO],
    /// Rows that are one contiguous run (used in place when also native, converted in bulk when not).
    in_contiguous: [bool; NI],
    out_contiguous: [bool; NO],
    in_scratch: [Vec<S::Compute>; NI],
    out_scratch: [Vec<S::Compute>; NO],
    row_len: usize,
}

impl<'v, S: Element, const NI: usize, const NO: usize> RowIo<'v, S, NI, NO> {
    fn new(inputs: [&'v RowsRef<S>; NI], outputs: [&'v RowsMut<S>; NO], row_len: usize) -> Self {
        RowIo {
            inputs,
            outputs,
            in_contiguous: inputs.map(|v| v.rows.inner.single_stride() == Some(1)),
            out_contiguous: outputs.map(|v| v.rows.inner.single_stride() == Some(1)),
            in_scratch: std::array::from_fn(|_| Vec::new()),
            out_scratch: std::array::from_fn(|_| Vec::new()),
            row_len,
        }
    }

    /// Runs `kernel` on row `row`: gathers inputs, calls, scatters outputs.
    ///
    /// # Safety
    /// As [`map_rows`]; `row` is in range and no other task touches this row.
    #[inline(always)]
    unsafe fn run<R>(
        &mut self,
        row: usize,
        kernel: impl FnOnce([&[S::Compute]; NI], [&mut [S::Compute]; NO]) -> R,
    ) -> R {
        let row_len = self.row_len;
        let in_ptrs = self
            .inputs
            .map(|v| v.ptr.wrapping_offset(v.rows.row_offset(row)));
        let out_ptrs = self
            .outputs
            .map(|v| v.ptr.wrapping_offset(v.rows.row_offset(row)));
        let out_direct = self.out_contiguous.map(|c| S::NATIVE && c);
        // An input read in place while its own memory is a direct output would be overwritten
        // mid-kernel: such rows are copied first.
        let in_direct: [bool; NI] = std::array::from_fn(|i| {
            S::NATIVE
                && self.in_contiguous[i]
                && !(0..NO).any(|o| out_direct[o] && out_ptrs[o].cast_const() == in_ptrs[i])
        });
        for i in 0..NI {
            if !in_direct[i] {
                let buf = &mut self.in_scratch[i];
                buf.resize(row_len, <S::Compute as crate::Float>::ZERO);
                let base = in_ptrs[i];
                if self.in_contiguous[i] {
                    // SAFETY: a contiguous row inside the view (caller's contract).
                    S::load_slice(unsafe { std::slice::from_raw_parts(base, row_len) }, buf);
                } else {
                    // SAFETY: offsets stay inside the view (caller's contract).
                    self.inputs[i].rows.inner.for_each_offset(|k, off| {
                        buf[k] = unsafe { *base.offset(off) }.load();
                    });
                }
            }
        }
        for (o, buf) in self.out_scratch.iter_mut().enumerate() {
            if !out_direct[o] {
                buf.resize(row_len, <S::Compute as crate::Float>::ZERO);
            }
        }
        let result = {
            let mut i = 0;
            let ins = self.in_scratch.each_ref().map(|buf| {
                let slice: &[S::Compute] = if in_direct[i] {
                    // SAFETY: NATIVE means S == S::Compute; the row is contiguous.
                    unsafe { std::slice::from_raw_parts(in_ptrs[i].cast(), row_len) }
                } else {
                    buf
                };
                i += 1;
                slice
            });
            let mut o = 0;
            let outs = self.out_scratch.each_mut().map(|buf| {
                let slice: &mut [S::Compute] = if out_direct[o] {
                    // SAFETY: as above; rows of one output are disjoint.
                    unsafe { std::slice::from_raw_parts_mut(out_ptrs[o].cast(), row_len) }
                } else {
                    buf
                };
                o += 1;
                slice
            });
            kernel(ins, outs)
        };
        for o in 0..NO {
            if !out_direct[o] {
                let base = out_ptrs[o];
                let buf = &self.out_scratch[o];
                if self.out_contiguous[o] {
                    // SAFETY: a contiguous row inside the view; one task per row.
                    S::store_slice(buf, unsafe {
                        std::slice::from_raw_parts_mut(base, row_len)
                    });
                } else {
                    self.outputs[o].rows.inner.for_each_offset(|k, off| {
                        // SAFETY: offsets stay inside the view (caller's contract).
                        unsafe { *base.offset(off) = S::store(buf[k]) };
                    });
                }
            }
        }
        result
    }
}

fn shape_of<S, const NI: usize, const NO: usize>(
    inputs: &[&RowsRef<S>; NI],
    outputs: &[&RowsMut<S>; NO],
) -> Option<(usize, usize)> {
    let reference = inputs
        .first()
        .map(|v| &v.rows)
        .or(outputs.first().map(|v| &v.rows))?;
    Some((reference.n_rows(), reference.row_len()))
}

/// Calls `kernel(row, inputs, outputs)` for each row (mark it `#[inline(always)]` so it is compiled
/// for the SIMD level [`simd::for_each_range`] picks) and stores its result in `results[row]`
/// (`results` empty: results dropped). Contiguous native rows are passed in place; strided or
/// f16 rows go through per-task scratch (gather before, scatter after).
///
/// # Safety
/// Every view must describe memory valid for its whole layout for the duration of the call
/// (reads for inputs, writes for outputs); all views have the same number of rows and row
/// length. Outputs must not overlap each other or themselves. An input may share memory with
/// an output only as the identical view (in place); any other overlap is the caller's to remove.
pub unsafe fn map_rows<S, R, const NI: usize, const NO: usize>(
    inputs: [&RowsRef<S>; NI],
    outputs: [&RowsMut<S>; NO],
    results: &mut [R],
    kernel: impl Fn(usize, [&[S::Compute]; NI], [&mut [S::Compute]; NO]) -> R + Sync,
) where
    S: Element,
    R: Send,
{
    let Some((n_rows, row_len)) = shape_of(&inputs, &outputs) else {
        return;
    };
    if row_len == 0 && results.is_empty() {
        // Billions of empty rows hold nothing to read or write: done at once.
        return;
    }
    debug_assert!(results.is_empty() || results.len() == n_rows);
    let keep_results = !results.is_empty();
    let results = SharedMut(results.as_mut_ptr());
    simd::for_each_range(
        n_rows,
        row_len * (NI + NO),
        #[inline(always)]
        |range| {
            let mut io = RowIo::new(inputs, outputs, row_len);
            for row in range {
                // SAFETY: forwarded from the caller; one task per row.
                let result = unsafe {
                    io.run(
                        row,
                        #[inline(always)]
                        |ins, outs| kernel(row, ins, outs),
                    )
                };
                if keep_results {
                    // SAFETY: row < n_rows = results.len(); one writer per row.
                    unsafe { *results.at(row) = result };
                }
            }
        },
    );
}

/// Row access for one group's task in [`map_row_groups`]: each call gathers and scatters one row
/// as [`map_rows`] does, reusing this task's scratch.
pub struct GroupRows<'v, S: Element, const NI: usize, const NO: usize> {
    reader: RowIo<'v, S, NI, 0>,
    writer: RowIo<'v, S, NI, NO>,
}

impl<S: Element, const NI: usize, const NO: usize> GroupRows<'_, S, NI, NO> {
    /// Calls `kernel` on the inputs of row `row` (outputs untouched).
    ///
    /// # Safety
    /// `row` is in range and belongs to the calling task's group.
    #[inline(always)]
    pub unsafe fn read<R>(
        &mut self,
        row: usize,
        kernel: impl FnOnce([&[S::Compute]; NI]) -> R,
    ) -> R {
        // SAFETY: forwarded from the caller.
        unsafe {
            self.reader.run(
                row,
                #[inline(always)]
                |ins, []| kernel(ins),
            )
        }
    }

    /// Calls `kernel` on the inputs and outputs of row `row`.
    ///
    /// # Safety
    /// As [`GroupRows::read`].
    #[inline(always)]
    pub unsafe fn write<R>(
        &mut self,
        row: usize,
        kernel: impl FnOnce([&[S::Compute]; NI], [&mut [S::Compute]; NO]) -> R,
    ) -> R {
        // SAFETY: forwarded from the caller.
        unsafe { self.writer.run(row, kernel) }
    }
}

/// Calls `kernel(first, slots, rows)` for each step of `groups_per_step` consecutive groups
/// (the last step may have fewer) of `rows_per_group` rows, in parallel over steps; `slots` is
/// `results[first..]` for the step's groups, which the kernel fills. The kernel reaches its rows
/// through `rows` ([`GroupRows::read`], [`GroupRows::write`]) and may visit each several times,
/// so a group small enough for cache is read from memory once.
///
/// # Safety
/// As [`map_rows`]; besides, the kernel of group `g` touches only rows no other group touches.
pub unsafe fn map_row_groups<S, R, const NI: usize, const NO: usize>(
    inputs: [&RowsRef<S>; NI],
    outputs: [&RowsMut<S>; NO],
    results: &mut [R],
    rows_per_group: usize,
    groups_per_step: usize,
    kernel: impl Fn(usize, &mut [R], &mut GroupRows<'_, S, NI, NO>) + Sync,
) where
    S: Element,
    R: Send,
{
    let Some((_, row_len)) = shape_of(&inputs, &outputs) else {
        return;
    };
    let n_groups = results.len();
    let per_step = groups_per_step.max(1);
    let slots = SharedMut(results.as_mut_ptr());
    let work = per_step * rows_per_group * row_len * (NI + NO);
    simd::for_each_range(
        n_groups.div_ceil(per_step),
        work,
        #[inline(always)]
        |range| {
            let mut rows = GroupRows {
                reader: RowIo::new(inputs, [], row_len),
                writer: RowIo::new(inputs, outputs, row_len),
            };
            for step in range {
                let first = step * per_step;
                // SAFETY: in range of `results`; each step's slots belong to its task alone.
                let step_slots = unsafe {
                    std::slice::from_raw_parts_mut(slots.at(first), per_step.min(n_groups - first))
                };
                kernel(first, step_slots, &mut rows);
            }
        },
    );
}

/// Rows per block of [`map_row_blocks`]: at most 64 blocks (so per-block accumulators stay few
/// and cheap to fold) of at least [`MIN_BLOCK_VALUES`] values, fixed by the shape alone so block
/// sums are the same for every thread count.
pub fn block_rows(n_rows: usize, row_len: usize) -> usize {
    n_rows
        .div_ceil(64)
        .max(MIN_BLOCK_VALUES.div_ceil(row_len.max(1)))
        .max(1)
}

/// A block's accumulators are typically as long as a row (column sums): blocks of one short row
/// spent more on allocating (page faults) and folding them than on the row. LayerNorm backward
/// with parameter gradients at (64, 768): 75–450 µs -> 18 µs. 64K rather than 16K: NHWC
/// BatchNorm statistics of (32, 7, 7, 512) (49 blocks of 32 rows, each with 512-column
/// accumulators to allocate, flush and fold) ran 20% faster on one thread with 13 blocks.
const MIN_BLOCK_VALUES: usize = 64 * 1024;

/// Like [`map_rows`], but rows are grouped in fixed blocks of `per_block` rows (usually
/// [`block_rows`]); each block starts from `init()` and its kernel calls accumulate into that
/// value (e.g. partial column sums for parameter gradients). Returns the block accumulators in
/// block order, so folding them in order gives results independent of the thread count.
///
/// # Safety
/// As [`map_rows`].
pub unsafe fn map_row_blocks<S, A, const NI: usize, const NO: usize>(
    inputs: [&RowsRef<S>; NI],
    outputs: [&RowsMut<S>; NO],
    per_block: usize,
    init: impl Fn() -> A + Sync,
    kernel: impl Fn(&mut A, usize, [&[S::Compute]; NI], [&mut [S::Compute]; NO]) + Sync,
) -> Vec<A>
where
    S: Element,
    A: Send,
{
    let Some((n_rows, row_len)) = shape_of(&inputs, &outputs) else {
        return Vec::new();
    };
    let per_block = per_block.max(1);
    let n_blocks = n_rows.div_ceil(per_block);
    let mut blocks: Vec<Option<A>> = (0..n_blocks).map(|_| None).collect();
    let slots = SharedMut(blocks.as_mut_ptr());
    simd::for_each_range(
        n_blocks,
        per_block * row_len * (NI + NO),
        #[inline(always)]
        |range| {
            let mut io = RowIo::new(inputs, outputs, row_len);
            for block in range {
                let mut acc = init();
                for row in block * per_block..((block + 1) * per_block).min(n_rows) {
                    // SAFETY: forwarded from the caller; one task per block.
                    unsafe {
                        io.run(
                            row,
                            #[inline(always)]
                            |ins, outs| kernel(&mut acc, row, ins, outs),
                        );
                    }
                }
                // SAFETY: block < n_blocks; one writer per block.
                unsafe { *slots.at(block) = Some(acc) };
            }
        },
    );
    blocks
        .into_iter()
        .map(|b| b.expect("every block is computed"))
        .collect()
}

/// Memory a kernel may prefetch while it works on a row: the next row's input, so that its load
/// from DRAM overlaps this row's arithmetic instead of following it.
#[derive(Clone, Copy, Debug)]
pub struct Ahead {
    ptr: *const u8,
    bytes: usize,
}

impl Ahead {
    pub const NONE: Ahead = Ahead {
        ptr: std::ptr::null(),
        bytes: 0,
    };

    /// Bytes per prefetch: one cache line.
    pub const LINE: usize = 64;

    /// Rows shorter than this are not prefetch targets: the hardware prefetcher follows
    /// such rows anyway, and the prefetch's setup cost more than it saved (BatchNorm eval on
    /// 7×7 rows 15% faster without it, LayerNorm on 49-value rows 6%).
    pub const MIN_ROW_BYTES: usize = 1024;

    /// The `len` values from `ptr` (any address: prefetches never fault).
    #[inline(always)]
    pub fn of<T>(ptr: *const T, len: usize) -> Ahead {
        Ahead {
            ptr: ptr.cast(),
            bytes: len * std::mem::size_of::<T>(),
        }
    }

    /// Prefetches the line at `offset` bytes (ignored past the end). Prefetches never fault.
    #[inline(always)]
    pub fn touch(self, offset: usize) {
        if offset < self.bytes {
            let at = self.ptr.wrapping_add(offset);
            #[cfg(target_arch = "x86_64")]
            // SAFETY: a prefetch is a hint; it does not fault on any address.
            unsafe {
                std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at.cast());
            }
            #[cfg(target_arch = "aarch64")]
            // SAFETY: as above (`_prefetch` in std::arch is not stable yet, the instruction is).
            unsafe {
                std::arch::asm!("prfm pldl1keep, [{0}]", in(reg) at, options(nostack, readonly, preserves_flags));
            }
            #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
            let _ = at;
        }
    }

    /// Prefetches the lines of `len` bytes from `offset`.
    #[inline(always)]
    pub fn touch_span(self, offset: usize, len: usize) {
        let mut at = offset;
        while at < offset + len {
            self.touch(at);
            at += Self::LINE;
        }
    }

    pub fn bytes(self) -> usize {
        self.bytes
    }
}

impl<S> RowsRef<S> {
    /// The row after `row` as prefetch target (see [`RowsRef::prefetch_target`]).
    #[inline(always)]
    pub fn ahead(&self, row: usize) -> Ahead {
        self.prefetch_target(row + 1)
    }

    /// Row `row` as prefetch target: nothing when out of range, not a contiguous run, or
    /// shorter than [`Ahead::MIN_ROW_BYTES`].
    #[inline(always)]
    pub fn prefetch_target(&self, row: usize) -> Ahead {
        if row >= self.rows.n_rows()
            || self.rows.inner.single_stride() != Some(1)
            || self.rows.row_len() * std::mem::size_of::<S>() < Ahead::MIN_ROW_BYTES
        {
            return Ahead::NONE;
        }
        Ahead::of(
            self.ptr.wrapping_offset(self.rows.row_offset(row)),
            self.rows.row_len(),
        )
    }
}
