//! Softmax and log-softmax over rows or down columns, and cross-entropy of logits. The row
//! maximum is subtracted, so logits of 1e4 never overflow; exp runs in the row's type and its
//! sum in f64 block totals.

use crate::element::{Element, Float};
use crate::error::{reduction_axis, shape_str, Error, Result};
use crate::fastmath::MulAdd;
use crate::reduce::{sum_pairs, BLOCK, LANES};
use crate::rows::{
    check_same_rows, map_rows, without_axis, ArrayMut, ArrayRef, Reduced, RowsMut, RowsRef,
};

/// The larger of a running maximum and `v` (one `max` instruction). A NaN is not tracked:
/// every caller sums a function of each element (exp(v − max), v − max), which carries the NaN
/// into the row's result anyway, and tracking it cost three more instructions per vector of a
/// pass that is a tenth of a softmax row.
#[inline(always)]
fn larger<T: Float>(best: T, v: T) -> T {
    if v > best {
        v
    } else {
        best
    }
}

/// Largest element of a row (NaN elements skipped unless the first is NaN; see [`larger`]).
/// Four vectors of lanes in the main loop, since one `max` chain per vector waited on the
/// instruction's latency; the lanes then meet by a halving tree, not a serial fold of 32
/// dependent steps. Rows shorter than a chunk are one serial fold.
#[inline(always)]
fn row_max<T: Float>(x: &[T]) -> T {
    const WAYS: usize = 4;
    if x.len() < LANES {
        return x.iter().fold(x[0], |b, &v| larger(b, v));
    }
    let mut ways = [[x[0]; LANES]; WAYS];
    let wide = x.chunks_exact(WAYS * LANES);
    let rest = wide.remainder();
    for chunk in wide {
        for (lanes, part) in ways.iter_mut().zip(chunk.chunks_exact(LANES)) {
            for j in 0..LANES {
                lanes[j] = larger(lanes[j], part[j]);
            }
        }
    }
    let [mut lanes, others @ ..] = ways;
    for other in &others {
        for j in 0..LANES {
            lanes[j] = larger(lanes[j], other[j]);
        }
    }
    let narrow = rest.chunks_exact(LANES);
    let tail = narrow.remainder();
    let best = tail.iter().fold(x[0], |b, &v| larger(b, v));
    for chunk in narrow {
        for j in 0..LANES {
            lanes[j] = larger(lanes[j], chunk[j]);
        }
    }
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for j in 0..width {
            lanes[j] = larger(lanes[j], lanes[j + width]);
        }
    }
    larger(lanes[0], best)
}

/// log Σ exp(x) of a non-empty row, stable for any magnitude: max + ln Σ exp(x − max), the
/// exponentials summed in lanes of the row's type with f64 block totals (as softmax sums them).
#[inline(always)]
pub fn logsumexp<T: Float, M: MulAdd>(x: &[T]) -> f64 {
    let max = row_max(x);
    max.to_f64() + crate::reduce::sum_map(x, |v| (v - max).exp_nonpositive::<M>()).ln()
}

/// The mean of a non-empty row, as its maximum plus the mean deviation below it: the lanes of
/// the row's type sum deviations, which an offset (1e4 + noise) would otherwise swamp (in f32,
/// 7 logits near 1e4 lost 2e-4 of a smoothed cross-entropy).
#[inline(always)]
fn row_mean<T: Float>(x: &[T]) -> f64 {
    let max = row_max(x);
    max.to_f64() + crate::reduce::sum_map(x, |v| v - max) / x.len() as f64
}

/// What [`cross_entropy_with_logits`] compares each row of logits with.
pub enum LogitTarget<'a, S> {
    /// One class index per row; rows whose index is `ignore` give no loss (None).
    Classes { index: &'a [i64], ignore: i64 },
    /// Class probabilities, rows like the logits'.
    Probabilities(&'a RowsRef<'a, S>),
}

/// The first class index that is neither `ignore` nor a class, as the error PyTorch raises.
// `&`, not `&&`: without the branch the check is vector compares.
#[allow(clippy::needless_bitwise_bool)]
fn check_classes(op: &str, index: &[i64], ignore: i64, classes: usize) -> Result<()> {
    // A negative index is a huge u64. One pass without an early exit (vector compares), then a
    // search only for the message: `find` had been a scalar loop, 1.3 µs of nll_loss at 4096.
    let out = |t: i64| (t != ignore) & (t as u64 >= classes as u64);
    let any_out = crate::simd::dispatch(
        #[inline(always)]
        || index.iter().fold(false, |any, &t| any | out(t)),
    );
    if !any_out {
        return Ok(());
    }
    match index.iter().find(|&&t| out(t)) {
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

/// The rules [`cross_entropy_with_logits`] and its backward share: label_smoothing in [0, 1], a
/// class axis with elements, a weight per class, one class index per row (each a class or
/// `ignore`) or probabilities shaped like the logits.
fn check_logit_target<S: Element>(
    op: &str,
    x: &RowsRef<S>,
    target: &LogitTarget<'_, S>,
    label_smoothing: f64,
    weight: Option<&[f64]>,
) -> Result<()> {
    let (n_rows, classes) = (x.rows().n_rows(), x.rows().row_len());
    match *target {
        LogitTarget::Classes { index, ignore } => {
            let index = Some((index, ignore));
            check_class_args(op, n_rows, classes, index, label_smoothing, weight)
        }
        LogitTarget::Probabilities(probs) => {
            check_class_args(op, n_rows, classes, None, label_smoothing, weight)?;
            check_same_rows(op, x.rows(), &[("target", probs.rows())])
        }
    }
}

/// The rules of cross-entropy's arguments over `n_rows` rows of `classes` logits: label_smoothing
/// in [0, 1], a class axis with elements, a weight per class, and (`index`: the class indices
/// and ignore_index) one index per row, each a class or ignore_index.
pub fn check_class_args(
    op: &str,
    n_rows: usize,
    classes: usize,
    index: Option<(&[i64], i64)>,
    label_smoothing: f64,
    weight: Option<&[f64]>,
) -> Result<()> {
    if !(0.0..=1.0).contains(&label_smoothing) {
        return Err(Error::InvalidArgument(format!(
            "{op}: label_smoothing must be in [0, 1], got {label_smoothing}"
        )));
    }
    if classes == 0 && n_rows > 0 {
        return Err(Error::EmptyReduction(format!(
            "{op}: the class axis has zero elements"
        )));
    }
    check_weight(op, weight, classes)?;
    let Some((index, ignore)) = index else {
        return Ok(());
    };
    if index.len() != n_rows {
        return Err(Error::ShapeMismatch(format!(
            "{op}: {} class indices for {n_rows} rows",
            index.len()
        )));
    }
    check_classes(op, index, ignore, classes)
}

/// What the mean of cross-entropy divides by (PyTorch's): with class indices the weights of the
/// targets not ignored (their count without weights), with probabilities the rows.
pub fn mean_denominator(
    index: Option<(&[i64], i64)>,
    n_rows: usize,
    weight: Option<&[f64]>,
) -> f64 {
    match (index, weight) {
        (Some((index, ignore)), Some(w)) => target_weights(index, ignore, w),
        (Some((index, ignore)), None) => crate::simd::dispatch(
            #[inline(always)]
            || index.iter().filter(|&&t| t != ignore).count(),
        ) as f64,
        (None, _) => n_rows as f64,
    }
}

/// The loss's gradient has the loss's shape: 0-d for 'mean' and 'sum', `loss_rows` for 'none'.
pub fn check_loss_grad(
    op: &str,
    grad_shape: &[usize],
    reduction: Reduction,
    loss_rows: &[usize],
) -> Result<()> {
    let loss_shape: &[usize] = if reduction == Reduction::None {
        loss_rows
    } else {
        &[]
    };
    if grad_shape == loss_shape {
        return Ok(());
    }
    Err(Error::ShapeMismatch(format!(
        "{op}: grad_out has shape {}, the loss (reduction '{}') has {}",
        shape_str(grad_shape),
        reduction.name(),
        shape_str(loss_shape)
    )))
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
    check_logit_target(OP, x, target, label_smoothing, weight)?;
    crate::fastmath::with_mul_add!(M => Ok(logit_losses::<S, M>(x, target, label_smoothing, weight)))
}

/// [`cross_entropy_with_logits`] on checked arguments.
fn logit_losses<S: Element, M: MulAdd>(
    x: &RowsRef<S>,
    target: &LogitTarget<'_, S>,
    label_smoothing: f64,
    weight: Option<&[f64]>,
) -> Vec<Option<f64>> {
    let (n_rows, classes) = (x.rows().n_rows(), x.rows().row_len());
    let eps = label_smoothing;
    let mut out = vec![None; n_rows];
    let outputs: [&RowsMut<S>; 0] = [];
    match *target {
        LogitTarget::Classes { index, ignore } => {
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
                        let lse = logsumexp::<_, M>(x);
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
                return out;
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
                    let lse = logsumexp::<_, M>(x);
                    let picked = lse - x[t as usize].to_f64();
                    if eps == 0.0 {
                        return Some(picked);
                    }
                    Some((1.0 - eps) * picked + eps * (lse - row_mean(x)))
                },
            );
        }
        LogitTarget::Probabilities(probs) => {
            let uniform = eps / classes as f64;
            if let Some(w) = weight {
                map_rows(
                    [x, probs],
                    outputs,
                    &mut out,
                    #[inline(always)]
                    |_, [x, t], []| {
                        let lse = logsumexp::<_, M>(x);
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
                return out;
            }
            map_rows(
                [x, probs],
                outputs,
                &mut out,
                #[inline(always)]
                |_, [x, t], []| {
                    let lse = logsumexp::<_, M>(x);
                    // sum_pairs pads its tail with (0, 0), so the smoothing's ε/C on every
                    // class is summed apart: folded into the pairs, each padding slot added
                    // ε/C·lse (7 classes, ε = 0.2: 2.24 for 2.19).
                    let pairs = sum_pairs(
                        x,
                        t,
                        #[inline(always)]
                        |xv, tv| tv * (lse - xv),
                    );
                    if eps == 0.0 {
                        return Some(pairs);
                    }
                    Some((1.0 - eps) * pairs + eps * (lse - row_mean(x)))
                },
            );
        }
    }
    out
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

impl Reduction {
    /// PyTorch's name of it.
    pub fn name(self) -> &'static str {
        match self {
            Reduction::None => "none",
            Reduction::Mean => "mean",
            Reduction::Sum => "sum",
        }
    }
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
    let (axis, row_shape) = target_axis(OP, logits, &target, axis)?;
    let x = logits.rows_along(axis);
    let (losses, index) = match target {
        Target::Classes { index, ignore, .. } => {
            let target = LogitTarget::Classes { index, ignore };
            let losses = cross_entropy_with_logits(&x, &target, label_smoothing, weight)?;
            (losses, Some((index, ignore)))
        }
        Target::Probabilities(probs) => {
            let t = probs.rows_along(axis);
            let target = LogitTarget::Probabilities(&t);
            (
                cross_entropy_with_logits(&x, &target, label_smoothing, weight)?,
                None,
            )
        }
    };
    let denominator = mean_denominator(index, losses.len(), weight);
    Ok(reduce_losses(&losses, denominator, reduction, row_shape))
}

/// The class axis of `logits` and the losses' shape (the logits' without it), once the target's
/// shape is checked against them.
fn target_axis<S: Element>(
    op: &str,
    logits: &ArrayRef<S>,
    target: &Target<'_, S>,
    axis: i64,
) -> Result<(usize, Vec<usize>)> {
    let shape = match *target {
        Target::Classes { shape, .. } => TargetShape::Classes(shape),
        Target::Probabilities(probs) => TargetShape::Probabilities(probs.shape()),
    };
    class_axis(op, logits.shape(), shape, axis)
}

/// The shape of what cross-entropy compares the logits with.
#[derive(Clone, Copy, Debug)]
pub enum TargetShape<'a> {
    /// Class indices: the logits' shape without the class axis.
    Classes(&'a [usize]),
    /// Probabilities: the logits' shape.
    Probabilities(&'a [usize]),
}

/// The class axis of logits of shape `logits` and the losses' shape (the logits' without it),
/// once the target's shape is checked against them.
pub fn class_axis(
    op: &str,
    logits: &[usize],
    target: TargetShape<'_>,
    axis: i64,
) -> Result<(usize, Vec<usize>)> {
    let axis = reduction_axis(op, logits, axis)?;
    let row_shape = without_axis(logits, axis);
    match target {
        TargetShape::Classes(shape) if shape != row_shape => Err(Error::InvalidArgument(format!(
            "{op}: class-index target has shape {}, expected {} (logits without the class axis)",
            shape_str(shape),
            shape_str(&row_shape)
        ))),
        TargetShape::Probabilities(shape) if shape != logits => {
            Err(Error::InvalidArgument(format!(
                "{op}: probability target has shape {}, logits have {}",
                shape_str(shape),
                shape_str(logits)
            )))
        }
        _ => Ok((axis, row_shape)),
    }
}

/// The gradient of [`cross_entropy`] with respect to the logits, into `dx` (the logits' shape),
/// given the loss's gradient `grad` of shape `grad_shape` (0-d for 'mean' and 'sum', the losses'
/// shape for 'none').
/// With p = softmax(x), a class index t and weights w (1 without), a row's loss
/// (1 − ε)·w_t·(lse − x_t) + ε/C·Σ w_c·(lse − x_c) has the gradient
/// p·((1 − ε)·w_t + ε/C·Σw) − ε/C·w − (1 − ε)·w_t·[j = t]; with probabilities s smoothed to
/// q = (1 − ε)·s + ε/C, p·Σ w·q − w·q. Each row is scaled by its loss's gradient (the mean's
/// divided by the mean's denominator); ignored rows get 0. Coefficients in f64, the elements in
/// the row's compute type.
#[allow(clippy::too_many_arguments)] // PyTorch's arguments, each needed
pub fn cross_entropy_backward<S: Element>(
    grad: &[f64],
    grad_shape: &[usize],
    logits: &ArrayRef<S>,
    target: Target<'_, S>,
    dx: &ArrayMut<S>,
    axis: i64,
    reduction: Reduction,
    label_smoothing: f64,
    weight: Option<&[f64]>,
) -> Result<()> {
    const OP: &str = "cross_entropy_with_logits_backward";
    let (axis, row_shape) = target_axis(OP, logits, &target, axis)?;
    let x = logits.rows_along(axis);
    let d = dx.rows_along(axis);
    check_same_rows(OP, x.rows(), &[("out", d.rows())])?;
    let (n_rows, classes) = (x.rows().n_rows(), x.rows().row_len());
    check_loss_grad(OP, grad_shape, reduction, &row_shape)?;
    assert_eq!(
        grad.len(),
        grad_shape.iter().product::<usize>(),
        "grad_out's values fill its shape"
    );
    let eps = label_smoothing;
    let c = classes as f64;
    let uniform = eps / c;
    crate::fastmath::with_mul_add!(M => match target {
        Target::Classes { index, ignore, .. } => {
            check_logit_target(OP, &x, &LogitTarget::Classes { index, ignore }, eps, weight)?;
            let denominator = mean_denominator(Some((index, ignore)), n_rows, weight);
            let scale = row_scale(grad, reduction, denominator);
            let total = weight.map_or(c, |w| w.iter().sum());
            map_rows(
                [&x],
                [&d],
                &mut [],
                #[inline(always)]
                |row, [x], [d]| {
                    let t = index[row];
                    if t == ignore {
                        d.fill(<S::Compute as Float>::ZERO);
                        return;
                    }
                    let t = t as usize;
                    let s = scale(row);
                    let w_t = weight.map_or(1.0, |w| w[t]);
                    let sum = exp_shifted::<_, M>(x, d);
                    let a = from_f64::<S>(s * ((1.0 - eps) * w_t + uniform * total) / sum);
                    if let Some(w) = weight {
                        for (o, &w_c) in d.iter_mut().zip(w) {
                            *o = *o * a - from_f64::<S>(s * uniform * w_c);
                        }
                    } else {
                        let b = from_f64::<S>(s * uniform);
                        for o in d.iter_mut() {
                            *o = *o * a - b;
                        }
                    }
                    d[t] = d[t] - from_f64::<S>(s * (1.0 - eps) * w_t);
                },
            );
        }
        Target::Probabilities(probs) => {
            let t = probs.rows_along(axis);
            check_logit_target(OP, &x, &LogitTarget::Probabilities(&t), eps, weight)?;
            let scale = row_scale(grad, reduction, mean_denominator(None, n_rows, weight));
            map_rows(
                [&x, &t],
                [&d],
                &mut [],
                #[inline(always)]
                |row, [x, t], [d]| {
                    let s = scale(row);
                    let sum = exp_shifted::<_, M>(x, d);
                    if let Some(w) = weight {
                        let q = |tv: S::Compute| (1.0 - eps) * tv.to_f64() + uniform;
                        let mass: f64 = t.iter().zip(w).map(|(&tv, &w_c)| w_c * q(tv)).sum();
                        let a = from_f64::<S>(s * mass / sum);
                        for ((o, &tv), &w_c) in d.iter_mut().zip(t).zip(w) {
                            *o = *o * a - from_f64::<S>(s * w_c * q(tv));
                        }
                    } else {
                        let mass = (1.0 - eps) * crate::reduce::sum(t) + eps;
                        let a = from_f64::<S>(s * mass / sum);
                        let (keep, u) =
                            (from_f64::<S>(s * (1.0 - eps)), from_f64::<S>(s * uniform));
                        for (o, &tv) in d.iter_mut().zip(t) {
                            *o = *o * a - (tv * keep + u);
                        }
                    }
                },
            );
        }
    });
    Ok(())
}

/// `v` in a row's compute type.
#[inline(always)]
fn from_f64<S: Element>(v: f64) -> S::Compute {
    <S::Compute as Float>::from_f64(v)
}

/// exp(x − max x) into `e`, returning the sum (softmax's numerator and denominator).
#[inline(always)]
fn exp_shifted<T: Float, M: MulAdd>(x: &[T], e: &mut [T]) -> f64 {
    let max = row_max(x);
    crate::reduce::sum_map_into(x, e, |v| (v - max).exp_nonpositive::<M>())
}

/// Each row's factor of the loss's gradient: its own value ('none'), the one value ('sum'), or
/// that divided by the mean's denominator.
fn row_scale(
    grad: &[f64],
    reduction: Reduction,
    denominator: f64,
) -> impl Fn(usize) -> f64 + Sync + '_ {
    move |row| match reduction {
        Reduction::None => grad[row],
        Reduction::Sum => grad[0],
        Reduction::Mean => grad[0] / denominator,
    }
}

/// Σ weight[t] over the class indices not ignored (in range: checked before), in f64 lanes as
/// every sum: one chain of additions a target had taken ~2 µs of a weighted nll_loss over 4096.
fn target_weights(index: &[i64], ignore: i64, weight: &[f64]) -> f64 {
    // `get`, not indexing: the targets were checked, and without a panic path the loop is
    // vector gathers and selects.
    crate::simd::dispatch(
        #[inline(always)]
        || {
            let selected: Vec<f64> = index
                .iter()
                .map(|&t| {
                    let w = weight.get(t as usize).copied().unwrap_or(0.0);
                    if t == ignore {
                        0.0
                    } else {
                        w
                    }
                })
                .collect();
            crate::reduce::sum(&selected)
        },
    )
}

/// Per-row losses (None: an ignored row) reduced as `reduction` says; the mean divides by
/// `denominator` ([`mean_denominator`]).
fn reduce_losses(
    losses: &[Option<f64>],
    denominator: f64,
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
        Reduction::Mean => Reduced {
            values: vec![kept.sum::<f64>() / denominator],
            shape: vec![],
        },
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
    // Rows between a row's prefetch and its load (16 and 32 measured alike, 8 slower).
    const AHEAD: usize = 16;
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
    let row_stride = rows.rows().outer().single_stride();
    let offset = |r: usize, t: i64| {
        row_stride.map_or_else(|| rows.rows().row_offset(r), |s| r as isize * s)
            + t as isize * stride
    };
    // Each row's loss (0 where ignored) first, with the load of the row AHEAD rows on issued as
    // a prefetch: the loads of a cold (4096, 1000) table miss the cache and TLB, and without the
    // prefetches only the misses within the reorder window overlapped (2x the time). Then the
    // sums, over values in the cache. (The targets checked in this loop rather than in a pass
    // before it: 1.2x slower at (4096, 1000), more instructions between its misses.)
    let loss_weight = |t: i64| weight.map_or(1.0, |w| w[t as usize]);
    let mut losses = vec![0.0f64; index.len()];
    for (r, (&t, loss)) in index.iter().zip(&mut losses).enumerate() {
        // (Only where offsets are a multiplication: `row_offset`'s walk would double the work.)
        if let (Some(_), Some(&ahead)) = (row_stride, index.get(r + AHEAD)) {
            if ahead != ignore {
                let at = rows.as_ptr().wrapping_offset(offset(r + AHEAD, ahead));
                crate::simd::prefetch(at.cast());
            }
        }
        if t != ignore {
            // SAFETY: t is a class (checked), so the element lies in row r of the view.
            let v = unsafe { *rows.as_ptr().offset(offset(r, t)) }
                .load()
                .to_f64();
            *loss = -loss_weight(t) * v;
        }
    }
    // The sums after the loads, in f64 lanes as every row sum (ignored rows add their 0): one
    // chain of 4096 additions had taken 2 µs of a 10 µs call.
    let total = || crate::reduce::sum(&losses);
    let mean = || total() / mean_denominator(Some((index, ignore)), index.len(), weight);
    Ok(match reduction {
        Reduction::None => Reduced {
            values: losses,
            shape: row_shape,
        },
        Reduction::Sum => Reduced {
            values: vec![total()],
            shape: vec![],
        },
        Reduction::Mean => Reduced {
            values: vec![mean()],
            shape: vec![],
        },
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
    let axis = softmax_axis(op, x.shape(), axis)?;
    softmax(&x.rows_along(axis), &y.rows_along(axis), log)
}

/// The softmax axis of `shape`: a 0-d array is one value along axis 0 (or -1).
pub fn softmax_axis(op: &str, shape: &[usize], axis: i64) -> Result<usize> {
    if !shape.is_empty() {
        return reduction_axis(op, shape, axis);
    }
    if axis != 0 && axis != -1 {
        return Err(Error::InvalidArgument(format!(
            "{op}: axis {axis} is out of range for a 0-dimensional input (0 or -1)"
        )));
    }
    Ok(0)
}

/// The name of softmax's (`log`: log_softmax's) backward, as errors give it.
pub fn backward_name(log: bool) -> &'static str {
    if log {
        "log_softmax_backward"
    } else {
        "softmax_backward"
    }
}

/// The backward's grad_out must have the shape of the forward's output y.
pub fn check_backward_shapes(op: &str, grad: &[usize], y: &[usize]) -> Result<()> {
    if grad == y {
        return Ok(());
    }
    Err(Error::ShapeMismatch(format!(
        "{op}: grad_out has shape {}, y has {}",
        shape_str(grad),
        shape_str(y)
    )))
}

/// The gradient of softmax (or log_softmax) along `axis` into `dx`, from the loss's gradient
/// `grad` and the forward's output `y` (what PyTorch saves): softmax dx = y·(g − Σ g·y),
/// log_softmax dx = g − exp(y)·Σ g, the row sums in f64.
pub fn softmax_backward_along<S: Element>(
    grad: &ArrayRef<S>,
    y: &ArrayRef<S>,
    dx: &ArrayMut<S>,
    axis: i64,
    log: bool,
) -> Result<()> {
    let op = backward_name(log);
    check_backward_shapes(op, grad.shape(), y.shape())?;
    let axis = softmax_axis(op, y.shape(), axis)?;
    let (g, y, d) = (
        grad.rows_along(axis),
        y.rows_along(axis),
        dx.rows_along(axis),
    );
    check_same_rows(op, y.rows(), &[("out", d.rows())])?;
    crate::fastmath::with_mul_add!(M => map_rows(
        [&g, &y],
        [&d],
        &mut [],
        #[inline(always)]
        |_, [g, y], [d]| {
            if !log {
                let dot = from_f64::<S>(crate::reduce::dot::<_, M>(g, y));
                for ((o, &gv), &yv) in d.iter_mut().zip(g).zip(y) {
                    *o = yv * (gv - dot);
                }
                return;
            }
            let total = from_f64::<S>(crate::reduce::sum(g));
            // A log-probability is ≤ 0, where the vectorized exp holds; anything else (or NaN)
            // takes the exact one. `&`, not `&&`: without the branch the test vectorizes.
            let zero = <S::Compute as Float>::ZERO;
            #[allow(clippy::needless_bitwise_bool)]
            if y.iter().fold(true, |all, &v| all & (v <= zero)) {
                for ((o, &gv), &yv) in d.iter_mut().zip(g).zip(y) {
                    *o = gv - yv.exp_nonpositive::<M>() * total;
                }
            } else {
                for ((o, &gv), &yv) in d.iter_mut().zip(g).zip(y) {
                    *o = gv - from_f64::<S>(yv.to_f64().exp()) * total;
                }
            }
        },
    ));
    Ok(())
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
        unsafe {
            crate::fastmath::with_mul_add!(M => softmax_columns::<S, M>(x, y, &columns, log));
        }
        return Ok(());
    }
    crate::fastmath::with_mul_add!(M => map_rows(
        [x],
        [y],
        &mut [],
        #[inline(always)]
        |row, [x_row], [y_row]| {
            // The next row's x and y (their first 32 KB, within L1) stream in a chunk at a time
            // beside this row's exponentials, the pass with arithmetic to hide them behind: the
            // max pass would wait on x, the stores on y's lines. One burst of prefetches at the
            // row's start stalled on the line-fill buffers instead (log_softmax (4096, 1024),
            // one thread: no prefetch 2.8 ms, x in a burst 3.0, x and y spread 2.2).
            let next = x.ahead(row).and(y.ahead(row)).capped(32 << 10);
            let chunk_bytes = LANES * std::mem::size_of::<S>();
            let prefetch = |at: usize| next.touch_span(at * std::mem::size_of::<S>(), chunk_bytes);
            let (x, y) = (x_row, y_row);
            let max = row_max(x);
            // Positive terms: the lane sum in the row's type with f64 block totals is exact enough.
            let exp = |v: S::Compute| (v - max).exp_nonpositive::<M>();
            if log {
                // Only the sum is needed: y is written once, by the last pass.
                let sum = crate::reduce::sum_map_hooked(x, exp, prefetch);
                let shift = <S::Compute as Float>::from_f64(sum.ln());
                for (o, &v) in y.iter_mut().zip(x) {
                    *o = (v - max) - shift;
                }
            } else {
                let sum = crate::reduce::sum_map_into_hooked(x, y, exp, prefetch);
                let inv = <S::Compute as Float>::from_f64(1.0 / sum);
                for o in y.iter_mut() {
                    *o = *o * inv;
                }
            }
        },
    ));
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
unsafe fn softmax_columns<S: Element, M: MulAdd>(
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
                unsafe { column_block::<_, M>(n, width, x_at, y_at, log, &mut lanes) };
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
unsafe fn column_block<T: Float, M: MulAdd>(
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
            *m = larger(*m, v);
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
                    *s = *s + (v - m).exp_nonpositive::<M>();
                }
            } else {
                // y holds the exponentials until they are scaled.
                let x = readable(x_row(k), &mut copy, in_place);
                for (((s, o), &v), &m) in lane.iter_mut().zip(y_row(k)).zip(x).zip(&*max) {
                    *o = (v - m).exp_nonpositive::<M>();
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
    crate::reduce::halving_tree(active, |j, k| {
        let (low, high) = lanes.split_at_mut(k);
        for (a, &b) in low[j][..width].iter_mut().zip(&high[0][..width]) {
            *a = *a + b;
        }
    });
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
        assert!(
            (logsumexp::<_, crate::fastmath::Fused>(&[1e4f32, 1e4])
                - (1e4 + std::f64::consts::LN_2))
                .abs()
                < 1e-9
        );
    }
}
