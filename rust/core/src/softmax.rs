//! Softmax and log-softmax over rows or down columns, and cross-entropy of logits. The row
//! maximum is subtracted, so logits of 1e4 never overflow; exp runs in the row's type and its
//! sum in f64 block totals.

use crate::element::{Element, Float};
use crate::error::{reduction_axis, shape_str, Error, Result};
use crate::reduce::{sum_pairs, BLOCK, LANES};
use crate::rows::{
    check_same_rows, map_rows, without_axis, ArrayMut, ArrayRef, Reduced, RowsMut, RowsRef,
};

/// The larger of a running maximum and `v`, NaN winning (a max that propagates NaN).
#[inline(always)]
fn keep<T: Float>(best: T, v: T) -> T {
    if v > best || v.partial_cmp(&v).is_none() {
        v
    } else {
        best
    }
}

/// Largest element of a row (NaN if any is NaN, as a max that propagates), over independent
/// lanes so the comparisons vectorize instead of forming one serial chain.
#[inline(always)]
fn row_max<T: Float>(x: &[T]) -> T {
    let mut lanes = [x[0]; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for j in 0..LANES {
            lanes[j] = keep(lanes[j], chunk[j]);
        }
    }
    let mut best = tail.iter().fold(x[0], |b, &v| keep(b, v));
    for &lane in &lanes {
        best = keep(best, lane);
    }
    best
}

/// log Σ exp(x) of a non-empty row, stable for any magnitude: max + ln Σ exp(x − max), the
/// exponentials summed in lanes of the row's type with f64 block totals (as softmax sums them).
#[inline(always)]
pub fn logsumexp<T: Float>(x: &[T]) -> f64 {
    let max = row_max(x);
    max.to_f64() + crate::reduce::sum_map(x, |v| (v - max).exp_nonpositive()).ln()
}

/// What [`cross_entropy_with_logits`] compares each row of logits with.
pub enum LogitTarget<'a, S> {
    /// One class index per row; rows whose index is `ignore` give no loss (None).
    Classes { index: &'a [i64], ignore: i64 },
    /// Class probabilities, rows like the logits'.
    Probabilities(&'a RowsRef<'a, S>),
}

/// The first class index that is neither `ignore` nor a class, as the error PyTorch raises.
fn check_classes(op: &str, index: &[i64], ignore: i64, classes: usize) -> Result<()> {
    match index
        .iter()
        .find(|&&t| t != ignore && !(0..classes as i64).contains(&t))
    {
        Some(bad) => Err(Error::InvalidArgument(format!(
            "{op}: target {bad} is out of range for {classes} classes"
        ))),
        None => Ok(()),
    }
}

/// A class-weight vector's length must be the class count (`F.cross_entropy`'s `weight`).
fn check_weight(op: &str, weight: Option<&[f64]>, classes: usize) -> Result<()> {
    match weight {
        Some(w) if w.len() != classes => Err(Error::InvalidArgument(format!(
            "{op}: weight has {} values for {classes} classes",
            w.len()
        ))),
        _ => Ok(()),
    }
}

/// Σ weight·x over a row, in f64.
#[inline(always)]
fn weighted_sum<T: Float>(x: &[T], weight: &[f64]) -> f64 {
    x.iter().zip(weight).map(|(&v, &w)| w * v.to_f64()).sum()
}

/// torch.nn.functional.cross_entropy of each row of logits (reduction 'none'): the cross-entropy
/// of softmax(x) against the target smoothed to (1 − ε)·target + ε/classes. With a class index t,
/// lse − (1 − ε)·x_t − ε·mean(x); with probabilities s, Σ s·(lse − x) in f64. Class weights w
/// scale each class's term as PyTorch does: (1 − ε)·w_t·(lse − x_t) + ε/C·Σ w_c·(lse − x_c), and
/// Σ w_c·s_c·(lse − x_c).
pub fn cross_entropy_with_logits<S: Element>(
    x: &RowsRef<S>,
    target: &LogitTarget<'_, S>,
    label_smoothing: f64,
    weight: Option<&[f64]>,
) -> Result<Vec<Option<f64>>> {
    const OP: &str = "cross_entropy_with_logits";
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::InvalidArgument(format!(
            "{OP}: label_smoothing must be in [0, 1], got {label_smoothing}"
        )));
    }
    let (n_rows, classes) = (x.rows().n_rows(), x.rows().row_len());
    if classes == 0 && n_rows > 0 {
        return Err(Error::EmptyReduction(format!(
            "{OP}: the class axis has zero elements"
        )));
    }
    check_weight(OP, weight, classes)?;
    let eps = label_smoothing;
    let mut out = vec![None; n_rows];
    let outputs: [&RowsMut<S>; 0] = [];
    match *target {
        LogitTarget::Classes { index, ignore } => {
            if index.len() != n_rows {
                return Err(Error::ShapeMismatch(format!(
                    "{OP}: {} class indices for {n_rows} rows",
                    index.len()
                )));
            }
            check_classes(OP, index, ignore, classes)?;
            if let Some(w) = weight {
                let total: f64 = w.iter().sum();
                map_rows(
                    [x],
                    outputs,
                    &mut out,
                    #[inline(always)]
                    |row, [x], []| {
                        let t = index[row];
                        if t == ignore {
                            return None;
                        }
                        let lse = logsumexp(x);
                        let t = t as usize;
                        let picked = w[t] * (lse - x[t].to_f64());
                        if eps == 0.0 {
                            // No smoothing: the weighted row sum is not needed (it cost 45%).
                            return Some(picked);
                        }
                        let smooth = (lse * total - weighted_sum(x, w)) / classes as f64;
                        Some((1.0 - eps) * picked + eps * smooth)
                    },
                );
                return Ok(out);
            }
            map_rows(
                [x],
                outputs,
                &mut out,
                #[inline(always)]
                |row, [x], []| {
                    // Not `bool::then`: its closure would be compiled outside the SIMD
                    // dispatch (without the target features), as a plain call.
                    let t = index[row];
                    if t == ignore {
                        return None;
                    }
                    let mean = crate::reduce::sum(x) / classes as f64;
                    Some(logsumexp(x) - (1.0 - eps) * x[t as usize].to_f64() - eps * mean)
                },
            );
        }
        LogitTarget::Probabilities(probs) => {
            check_same_rows(OP, x.rows(), &[("target", probs.rows())])?;
            let uniform = eps / classes as f64;
            if let Some(w) = weight {
                map_rows(
                    [x, probs],
                    outputs,
                    &mut out,
                    #[inline(always)]
                    |_, [x, t], []| {
                        let lse = logsumexp(x);
                        let terms = x.iter().zip(t.iter()).zip(w);
                        Some(
                            terms
                                .map(|((&xv, &tv), &wc)| {
                                    wc * (tv.to_f64() * (1.0 - eps) + uniform) * (lse - xv.to_f64())
                                })
                                .sum(),
                        )
                    },
                );
                return Ok(out);
            }
            map_rows(
                [x, probs],
                outputs,
                &mut out,
                #[inline(always)]
                |_, [x, t], []| {
                    let lse = logsumexp(x);
                    Some(sum_pairs(
                        x,
                        t,
                        #[inline(always)]
                        |xv, tv| (tv * (1.0 - eps) + uniform) * (lse - xv),
                    ))
                },
            );
        }
    }
    Ok(out)
}

/// How [`cross_entropy`] reduces the per-row losses, as PyTorch's `reduction`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// One loss per row (ignored rows give 0).
    None,
    /// The mean over the rows not ignored.
    Mean,
    /// The sum over the rows not ignored.
    Sum,
}

/// PyTorch's names: 'none', 'mean', 'sum'.
impl std::str::FromStr for Reduction {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self> {
        match name {
            "none" => Ok(Reduction::None),
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            _ => Err(Error::InvalidArgument(format!(
                "reduction must be 'none', 'mean' or 'sum', got '{name}'"
            ))),
        }
    }
}

/// What [`cross_entropy`] compares the logits with, as the caller's arrays.
pub enum Target<'a, S> {
    /// Class indices, shaped like the logits without the class axis (`shape`); rows whose index
    /// is `ignore` leave the loss.
    Classes {
        index: &'a [i64],
        shape: &'a [usize],
        ignore: i64,
    },
    /// Class probabilities, shaped like the logits.
    Probabilities(&'a ArrayRef<'a, S>),
}

/// torch.nn.functional.cross_entropy of the logits along `axis` (the class axis) against
/// `target`, reduced as `reduction` says (see [`cross_entropy_with_logits`] for the loss).
pub fn cross_entropy<S: Element>(
    logits: &ArrayRef<S>,
    target: Target<'_, S>,
    axis: i64,
    reduction: Reduction,
    label_smoothing: f64,
    weight: Option<&[f64]>,
) -> Result<Reduced> {
    const OP: &str = "cross_entropy_with_logits";
    let axis = reduction_axis(OP, logits.shape(), axis)?;
    let row_shape = without_axis(logits.shape(), axis);
    let x = logits.rows_along(axis);
    // The mean's denominator with index targets and class weights: the weights of the targets
    // not ignored (PyTorch's), instead of their count.
    let mut weight_total = None;
    let losses = match target {
        Target::Classes {
            index,
            shape,
            ignore,
        } => {
            if shape != row_shape {
                return Err(Error::InvalidArgument(format!(
                    "{OP}: class-index target has shape {}, expected {} (logits without the class axis)",
                    shape_str(shape),
                    shape_str(&row_shape)
                )));
            }
            let target = LogitTarget::Classes { index, ignore };
            let losses = cross_entropy_with_logits(&x, &target, label_smoothing, weight)?;
            weight_total = weight.map(|w| target_weights(index, ignore, w));
            losses
        }
        Target::Probabilities(probs) => {
            if probs.shape() != logits.shape() {
                return Err(Error::InvalidArgument(format!(
                    "{OP}: probability target has shape {}, logits have {}",
                    shape_str(probs.shape()),
                    shape_str(logits.shape())
                )));
            }
            let t = probs.rows_along(axis);
            let target = LogitTarget::Probabilities(&t);
            cross_entropy_with_logits(&x, &target, label_smoothing, weight)?
        }
    };
    Ok(reduce_losses(&losses, weight_total, reduction, row_shape))
}

/// Σ weight[t] over the class indices not ignored (in range: checked before).
fn target_weights(index: &[i64], ignore: i64, weight: &[f64]) -> f64 {
    index
        .iter()
        .filter(|&&t| t != ignore)
        .map(|&t| weight[t as usize])
        .sum()
}

/// Per-row losses (None: an ignored row) reduced as `reduction` says; the mean divides by
/// `denominator` where given (the targets' class weights), else by the rows not ignored.
fn reduce_losses(
    losses: &[Option<f64>],
    denominator: Option<f64>,
    reduction: Reduction,
    row_shape: Vec<usize>,
) -> Reduced {
    let kept = losses.iter().flatten();
    match reduction {
        Reduction::None => Reduced {
            values: losses.iter().map(|l| l.unwrap_or(0.0)).collect(),
            shape: row_shape,
        },
        Reduction::Sum => Reduced {
            values: vec![kept.sum()],
            shape: vec![],
        },
        Reduction::Mean => {
            let count = denominator.unwrap_or(kept.clone().count() as f64);
            Reduced {
                values: vec![kept.sum::<f64>() / count],
                shape: vec![],
            }
        }
    }
}

/// torch.nn.functional.nll_loss of log-probabilities with the classes along `axis`: each row's
/// −w_t·x_t (w = 1 without weights), rows whose index is `ignore` leaving the loss; the mean
/// divides by the weights of the targets not ignored. Reads one element per row.
#[allow(clippy::too_many_arguments)] // PyTorch's arguments, each needed
pub fn nll_loss<S: Element>(
    log_probs: &ArrayRef<S>,
    index: &[i64],
    shape: &[usize],
    ignore: i64,
    weight: Option<&[f64]>,
    axis: i64,
    reduction: Reduction,
) -> Result<Reduced> {
    const OP: &str = "nll_loss";
    let axis = reduction_axis(OP, log_probs.shape(), axis)?;
    let row_shape = without_axis(log_probs.shape(), axis);
    if shape != row_shape {
        return Err(Error::InvalidArgument(format!(
            "{OP}: target has shape {}, expected {} (log_probs without the class axis)",
            shape_str(shape),
            shape_str(&row_shape)
        )));
    }
    let classes = log_probs.shape()[axis];
    check_weight(OP, weight, classes)?;
    check_classes(OP, index, ignore, classes)?;
    let rows = log_probs.rows_along(axis);
    let stride = log_probs.strides()[axis];
    // Rows one stride apart (any (N, C) table) take their offset by a multiplication, not by
    // `row_offset`'s walk over the dims.
    let row_stride = rows.rows().outer.single_stride();
    let keep_each = reduction == Reduction::None;
    let mut losses = Vec::with_capacity(if keep_each { index.len() } else { 0 });
    // One pass, summing as it reads (the order `reduce_losses` sums in): the loads of a loss over
    // (4096, 1000) miss the cache, and a vector of per-row options and a second pass had cost
    // a third of its time on top of them.
    // `weights` sums the kept targets' class weights (the weighted mean's denominator) in the
    // same pass and order as `target_weights` would.
    let (mut total, mut kept, mut weights) = (0.0f64, 0usize, 0.0f64);
    for (r, &t) in index.iter().enumerate() {
        if t == ignore {
            if keep_each {
                losses.push(0.0);
            }
            continue;
        }
        let start = row_stride.map_or_else(|| rows.rows().row_offset(r), |s| r as isize * s);
        let at = start + t as isize * stride;
        // SAFETY: t is a class (checked), so the element lies in row r of the view.
        let v = unsafe { *rows.as_ptr().offset(at) }.load().to_f64();
        let w_t = weight.map_or(1.0, |w| w[t as usize]);
        let loss = -w_t * v;
        total += loss;
        kept += 1;
        weights += w_t;
        if keep_each {
            losses.push(loss);
        }
    }
    Ok(match reduction {
        Reduction::None => Reduced {
            values: losses,
            shape: row_shape,
        },
        Reduction::Sum => Reduced {
            values: vec![total],
            shape: vec![],
        },
        Reduction::Mean => {
            let count = if weight.is_some() {
                weights
            } else {
                kept as f64
            };
            Reduced {
                values: vec![total / count],
                shape: vec![],
            }
        }
    })
}

/// softmax (or log_softmax) of `x` along `axis` into `y`. A 0-d array is one value along axis 0
/// (or -1), as torch.softmax takes it: softmax 1, log_softmax 0.
pub fn softmax_along<S: Element>(
    x: &ArrayRef<S>,
    y: &ArrayMut<S>,
    axis: i64,
    log: bool,
) -> Result<()> {
    let op = if log { "log_softmax" } else { "softmax" };
    if x.shape().is_empty() {
        if axis != 0 && axis != -1 {
            return Err(Error::InvalidArgument(format!(
                "{op}: axis {axis} is out of range for a 0-dimensional input (0 or -1)"
            )));
        }
        return softmax(&x.rows_along(0), &y.rows_along(0), log);
    }
    let axis = reduction_axis(op, x.shape(), axis)?;
    softmax(&x.rows_along(axis), &y.rows_along(axis), log)
}

/// Rows of softmax need an element each: an empty axis with other elements has no softmax.
pub fn check_axis_len(n_rows: usize, row_len: usize) -> Result<()> {
    if row_len == 0 && n_rows > 0 {
        return Err(Error::EmptyReduction(
            "softmax: the axis has zero elements".into(),
        ));
    }
    Ok(())
}

/// softmax (or log_softmax) of each row into `y`.
pub fn softmax<S: Element>(x: &RowsRef<S>, y: &RowsMut<S>, log: bool) -> Result<()> {
    check_same_rows("softmax", x.rows(), &[("out", y.rows())])?;
    check_axis_len(x.rows().n_rows(), x.rows().row_len())?;
    if let Some(columns) = ColumnLayout::of(x, y) {
        // SAFETY: the layout was made from these views just now, so it reaches only their
        // elements (the views' invariant); `of` took y only as x itself or apart from it.
        unsafe { softmax_columns(x, y, &columns, log) };
        return Ok(());
    }
    map_rows(
        [x],
        [y],
        &mut [],
        #[inline(always)]
        |row, [x_row], [y]| {
            // The next row (its first 32 KB, within L1) streams in while this one's
            // exponentials are computed; its max pass would otherwise wait on memory with
            // nothing to overlap. (4096, 1000) one thread: 1.13x.
            let next = x.ahead(row);
            next.touch_span(0, next.bytes().min(32 << 10));
            let x = x_row;
            let max = row_max(x);
            // Positive terms: the lane sum in the row's type with f64 block totals is exact enough.
            let sum = crate::reduce::sum_map_into(x, y, |v| (v - max).exp_nonpositive());
            if log {
                let shift = <S::Compute as Float>::from_f64(sum.ln());
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = (v - max) - shift;
                }
            } else {
                let inv = <S::Compute as Float>::from_f64(1.0 / sum);
                for o in y.iter_mut() {
                    *o = *o * inv;
                }
            }
        },
    );
    Ok(())
}

/// Columns per task of [`softmax_columns`]: with the usual few dozen classes, a block's rows
/// stay in L1 through the three passes.
const COLUMN_BLOCK: usize = 256;

/// A softmax axis that is not innermost, with a contiguous run of `width` values (other
/// positions) beside it in both x and y: softmax over the channels of NCHW, or axis 0 of a table.
/// Gathering each strided row was 10× slower than the last axis; down columns, every pass reads
/// contiguous runs.
struct ColumnLayout {
    /// Values along the axis, and its stride in x and in y.
    axis_len: usize,
    axis_stride: (isize, isize),
    /// Contiguous positions per run.
    width: usize,
    /// The remaining outer dims (runs of `width`) in x and in y.
    runs: (crate::layout::Dims, crate::layout::Dims),
}

impl ColumnLayout {
    /// Worth it from runs of 8 values; native types only (no conversion buffers).
    const MIN_WIDTH: usize = 8;

    fn of<S: Element>(x: &RowsRef<S>, y: &RowsMut<S>) -> Option<Self> {
        if !S::NATIVE {
            return None;
        }
        let split = |rows: &crate::layout::Rows| {
            crate::rows::column_runs(rows)
                .map(|(stride, width, runs)| (rows.row_len(), stride, width, runs))
        };
        if !crate::rows::same_or_apart(x, y) {
            return None; // left to the row driver, which refuses it
        }
        let (n, sx, width, runs_x) = split(x.rows())?;
        let (ny, sy, width_y, runs_y) = split(y.rows())?;
        (n == ny && width == width_y && width >= Self::MIN_WIDTH && runs_x.shape == runs_y.shape)
            .then_some(ColumnLayout {
                axis_len: n,
                axis_stride: (sx, sy),
                width,
                runs: (runs_x, runs_y),
            })
    }
}

/// Softmax down columns ([`ColumnLayout`]): per block of columns, the column maxima, then
/// exp(x − max) with f64 column sums, then the scaling, as the row form computes them.
///
/// # Safety
/// As [`softmax`]; the layout comes from [`ColumnLayout::of`] for these views.
unsafe fn softmax_columns<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    layout: &ColumnLayout,
    log: bool,
) {
    let blocks_per_run = layout.width.div_ceil(COLUMN_BLOCK);
    let n_runs = layout.runs.0.len();
    let n = layout.axis_len;
    let (xp, yp) = (x.as_ptr() as usize, y.as_mut_ptr() as usize);
    crate::simd::for_each_range(
        n_runs * blocks_per_run,
        n * COLUMN_BLOCK * 3,
        #[inline(always)]
        |tasks| {
            // The column sums' lanes, on the heap and zeroed once a range: 32–64 KB, which in
            // `column_block`'s frame had been zeroed (and its stack pages probed) every block.
            let mut lanes = vec![[<S::Compute as Float>::ZERO; COLUMN_BLOCK]; LANES];
            for task in tasks {
                let (run, block) = (task / blocks_per_run, task % blocks_per_run);
                let first = block * COLUMN_BLOCK;
                let width = COLUMN_BLOCK.min(layout.width - first);
                let at = |base: usize, dims: &crate::layout::Dims, stride: isize, k: usize| {
                    (base as *mut S::Compute)
                        .wrapping_offset(dims.offset(run) + k as isize * stride)
                        .wrapping_add(first)
                };
                let x_at = |k: usize| at(xp, &layout.runs.0, layout.axis_stride.0, k);
                let y_at = |k: usize| at(yp, &layout.runs.1, layout.axis_stride.1, k);
                // SAFETY: NATIVE (S is the compute type); `width` contiguous values from
                // each position are inside the views; a task's columns are its own; y is x
                // itself or disjoint from it.
                unsafe { column_block(n, width, x_at, y_at, log, &mut lanes) };
            }
        },
    );
}

/// `row`, or (in place, where y is x) a copy of it in `copy`, so reading it does not alias the
/// y row being written.
#[inline(always)]
fn readable<'a, T: Copy>(row: &'a [T], copy: &'a mut [T], in_place: bool) -> &'a [T] {
    if in_place {
        copy[..row.len()].copy_from_slice(row);
        &copy[..row.len()]
    } else {
        row
    }
}

/// The three passes of [`softmax_columns`] over one block of `width` ≤ `COLUMN_BLOCK` columns,
/// whose row k starts at `x_at(k)` and `y_at(k)`; `lanes` holds `LANES` zeroed lane arrays (and is
/// left so).
///
/// # Safety
/// Each row has `width` valid values; y rows are x rows themselves or disjoint from all x rows.
#[inline(always)]
unsafe fn column_block<T: Float>(
    n: usize,
    width: usize,
    x_at: impl Fn(usize) -> *mut T,
    y_at: impl Fn(usize) -> *mut T,
    log: bool,
    lanes: &mut [[T; COLUMN_BLOCK]],
) {
    // SAFETY (both): the caller's contract; a row of x is only read while no row of y is borrowed.
    let x_row = |k: usize| unsafe { std::slice::from_raw_parts(x_at(k).cast_const(), width) };
    let y_row = |k: usize| unsafe { std::slice::from_raw_parts_mut(y_at(k), width) };
    // In place, the passes that read x while writing y read a copy of the row ([`readable`]).
    let in_place = x_at(0) == y_at(0);
    let mut copy = [T::ZERO; COLUMN_BLOCK];
    let mut max = [T::ZERO; COLUMN_BLOCK];
    let max = &mut max[..width];
    max.copy_from_slice(x_row(0));
    for k in 1..n {
        for (m, &v) in max.iter_mut().zip(x_row(k)) {
            *m = keep(*m, v);
        }
    }
    // Each column summed as `sum_map_into` sums a row, so a column gives the bits its row would
    // (the contract: results do not depend on the layout): value k into lane k % LANES in T,
    // the lanes folded by the same halving tree into an f64 total every BLOCK values.
    let mut sums = [0.0f64; COLUMN_BLOCK];
    let sums = &mut sums[..width];
    for start in (0..n).step_by(BLOCK) {
        let len = BLOCK.min(n - start);
        for k in start..start + len {
            let lane = &mut lanes[k % LANES][..width];
            if log {
                for ((s, &v), &m) in lane.iter_mut().zip(x_row(k)).zip(&*max) {
                    *s = *s + (v - m).exp_nonpositive();
                }
            } else {
                // y holds the exponentials until they are scaled.
                let x = readable(x_row(k), &mut copy, in_place);
                for (((s, o), &v), &m) in lane.iter_mut().zip(y_row(k)).zip(x).zip(&*max) {
                    *o = (v - m).exp_nonpositive();
                    *s = *s + *o;
                }
            }
        }
        fold_columns(lanes, len.min(LANES), sums);
    }
    let mut factor = [T::ZERO; COLUMN_BLOCK];
    let factor = &mut factor[..width];
    for (f, &s) in factor.iter_mut().zip(&*sums) {
        *f = T::from_f64(if log { s.ln() } else { 1.0 / s });
    }
    for k in 0..n {
        if log {
            let x = readable(x_row(k), &mut copy, in_place);
            for (((o, &v), &m), &shift) in y_row(k).iter_mut().zip(x).zip(&*max).zip(&*factor) {
                *o = (v - m) - shift;
            }
        } else {
            for (o, &inv) in y_row(k).iter_mut().zip(&*factor) {
                *o = *o * inv;
            }
        }
    }
}

/// Adds each column's `LANES` lanes (the first `active` hold values, the rest zeros) into `sums`
/// by [`crate::reduce`]'s halving tree, lane j taking lane j + width at each level, and empties
/// them. Zero lanes are skipped: adding +0 to a sum of exponentials changes no bit, and a
/// 10-class softmax would otherwise fold 32 lanes for 10 values.
#[inline(always)]
fn fold_columns<T: Float>(lanes: &mut [[T; COLUMN_BLOCK]], active: usize, sums: &mut [f64]) {
    let width = sums.len();
    let mut half = LANES;
    while half > 1 {
        half /= 2;
        for j in 0..half.min(active.saturating_sub(half)) {
            let (low, high) = lanes.split_at_mut(half);
            for (a, &b) in low[j][..width].iter_mut().zip(&high[j][..width]) {
                *a = *a + b;
            }
        }
    }
    for (s, &lane) in sums.iter_mut().zip(&lanes[0][..width]) {
        *s += lane.to_f64();
    }
    for lane in &mut lanes[..active] {
        lane[..width].fill(T::ZERO);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_of_huge_logits_is_finite() {
        assert!((logsumexp(&[1e4f32, 1e4]) - (1e4 + std::f64::consts::LN_2)).abs() < 1e-9);
    }
}
