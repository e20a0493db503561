//! Rows along an axis that is not innermost, taken a tile of neighbouring rows at a time.
//!
//! When each row's elements lie `stride` apart and row r + 1 starts one element after row r
//! (normalize over axis 0 of a table, a measure over the classes of (N, C, H, W)), gathering one
//! row alone reads a cache line per element and uses one value of it; the line is evicted long
//! before the neighbouring rows need it. A tile of rows gathered together uses every value of each
//! line it reads. The kernel still sees each row alone, as contiguous compute-type slices with the
//! same values, so results are bit-identical to the row-at-a-time path.

use super::{RowsMut, RowsRef, SharedMut};
use crate::element::{Element, Float};
use crate::layout::{Dims, Rows};
use crate::simd;

/// Scratch a task may hold for its tile, all views together.
const TILE_BYTES: usize = 2 << 20;

/// [`super::column_runs`] of a view whose rows are strided (contiguous rows need no tiles).
fn columns(rows: &Rows) -> Option<(isize, usize, Dims)> {
    super::column_runs(rows).filter(|&(stride, _, _)| stride != 1)
}

/// [`super::map_rows`]'s work on tiles, if every view's rows lie in runs of neighbours (the same
/// runs in each view); returns false, having done nothing, otherwise.
///
/// # Safety
/// The views passed `check_views`.
#[inline(always)]
pub(super) unsafe fn map_row_tiles<S, R, const NI: usize, const NO: usize>(
    inputs: [&RowsRef<S>; NI],
    outputs: [&RowsMut<S>; NO],
    results: &mut [R],
    n_rows: usize,
    row_len: usize,
    kernel: &(impl Fn(usize, [&[S::Compute]; NI], [&mut [S::Compute]; NO]) -> R + Sync),
) -> bool
where
    S: Element,
    R: Send,
{
    // Enough rows that a tile reads whole 64-byte lines, fewer if long rows would outgrow the
    // scratch; tiles of fewer than 2 rows gain nothing.
    let views = NI + NO;
    let line_rows = (64 / std::mem::size_of::<S>()).max(1);
    let per_row = row_len * views * std::mem::size_of::<S::Compute>();
    let tile = line_rows.min(TILE_BYTES / per_row.max(1));
    if tile < 2 || row_len < 2 || n_rows < 2 {
        return false;
    }
    let in_cols = inputs.map(|v| columns(v.rows()));
    let out_cols = outputs.map(|v| columns(v.rows()));
    let Some((_, width, runs)) = in_cols.iter().chain(&out_cols).next().cloned().flatten() else {
        return false;
    };
    let same = |c: &Option<(isize, usize, Dims)>| {
        c.as_ref()
            .is_some_and(|(_, w, r)| *w == width && r.shape == runs.shape)
    };
    if !in_cols.iter().all(same) || !out_cols.iter().all(same) || width < 2 {
        return false;
    }
    let unpack = |c: &Option<(isize, usize, Dims)>| c.clone().expect("checked above");
    let in_cols = in_cols.map(|c| unpack(&c));
    let out_cols = out_cols.map(|c| unpack(&c));
    let in_ptrs = inputs.map(|v| SharedMut(v.as_ptr().cast_mut()));
    let out_ptrs = outputs.map(|v| SharedMut(v.as_mut_ptr()));
    let keep_results = !results.is_empty();
    let results = SharedMut(results.as_mut_ptr());
    let tiles_per_run = width.div_ceil(tile);
    let n_runs = runs.len();
    simd::for_each_range(
        n_runs * tiles_per_run,
        tile * row_len * views,
        #[inline(always)]
        |range| {
            let zero = <S::Compute as Float>::ZERO;
            let mut in_buf: [Vec<S::Compute>; NI] =
                std::array::from_fn(|_| vec![zero; tile * row_len]);
            let mut out_buf: [Vec<S::Compute>; NO] =
                std::array::from_fn(|_| vec![zero; tile * row_len]);
            for task in range {
                let (run, first) = (task / tiles_per_run, task % tiles_per_run * tile);
                let n = tile.min(width - first);
                for (i, buf) in in_buf.iter_mut().enumerate() {
                    let (stride, _, dims) = &in_cols[i];
                    let base = in_ptrs[i]
                        .at(0)
                        .wrapping_offset(dims.offset(run))
                        .wrapping_add(first);
                    let dst = buf.as_mut_ptr();
                    for k in 0..row_len {
                        let at = base.wrapping_offset(k as isize * stride);
                        for r in 0..n {
                            // SAFETY: element k of row (run, first + r), inside the view's memory
                            // (its invariant), first + r < width; r·row_len + k < tile·row_len,
                            // the buffer's length (raw: bounds checks had slowed the gather).
                            unsafe { *dst.add(r * row_len + k) = (*at.add(r)).load() };
                        }
                    }
                }
                for r in 0..n {
                    let row = run * width + first + r;
                    let span = r * row_len..(r + 1) * row_len;
                    let ins = in_buf.each_ref().map(|b| &b[span.clone()]);
                    let outs = out_buf.each_mut().map(|b| &mut b[span.clone()]);
                    let result = kernel(row, ins, outs);
                    if keep_results {
                        // SAFETY: row < n_rows = results.len(); each row is in one tile.
                        unsafe { *results.at(row) = result };
                    }
                }
                for (o, buf) in out_buf.iter().enumerate() {
                    let (stride, _, dims) = &out_cols[o];
                    let base = out_ptrs[o]
                        .at(0)
                        .wrapping_offset(dims.offset(run))
                        .wrapping_add(first);
                    let src = buf.as_ptr();
                    for k in 0..row_len {
                        let at = base.wrapping_offset(k as isize * stride);
                        for r in 0..n {
                            // SAFETY: as for the inputs; this task alone owns the tile's rows
                            // (an input that is this output was gathered before).
                            unsafe { *at.add(r) = S::store(*src.add(r * row_len + k)) };
                        }
                    }
                }
            }
        },
    );
    true
}
