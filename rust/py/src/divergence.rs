//! Bindings of softmax, the information measures, cross-entropy with logits and Wasserstein-1.

use crate::args::Choice;
use crate::dispatch::{
    array_mut, array_ref, f64_array_like, float_array, output, shape_str, unaliased,
    with_float_array, Storage,
};
use crate::errors::{compute, compute_sized, type_error, value_error, Result};

use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use rsnorm_core::information::{self as info, Measure};
use rsnorm_core::softmax::{self as sm, Reduction, Target};
use rsnorm_core::wasserstein::wasserstein_1d as wasserstein;

fn softmax_impl<'py>(
    py: Python<'py>,
    op: &str,
    x: &Bound<'py, PyAny>,
    axis: i64,
    out: Option<&Bound<'py, PyAny>>,
    log: bool,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array(op, "x", x)?, x => {
        let y = output(py, op, "out", out, x.shape())?;
        let x = unaliased(x, &[&y])?;
        let (xv, yv) = (array_ref(&x), array_mut(&y));
        compute_sized(py, x.len(), || sm::softmax_along(&xv, &yv, axis, log))?;
        Ok(y.into_any())
    })
}

/// Softmax along `axis` (max-subtracted: logits of 1e4 never overflow), as torch.softmax.
#[pyfunction]
#[pyo3(signature = (x, axis=-1, out=None), text_signature = "(x, axis=-1, out=None)")]
pub(crate) fn softmax<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    axis: i64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    softmax_impl(py, "softmax", x, axis, out, false)
}

/// log-softmax along `axis`: x − max − log Σ exp(x − max), as torch.log_softmax.
#[pyfunction]
#[pyo3(signature = (x, axis=-1, out=None), text_signature = "(x, axis=-1, out=None)")]
pub(crate) fn log_softmax<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    axis: i64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    softmax_impl(py, "log_softmax", x, axis, out, true)
}

/// The gradient of softmax (`log`: log_softmax) along `axis` from grad_out and the forward's
/// output `y`, as torch's _softmax_backward_data.
#[pyfunction]
#[pyo3(
    signature = (grad_out, y, axis=-1, log=false, out=None),
    text_signature = "(grad_out, y, axis=-1, log=False, out=None)"
)]
pub(crate) fn softmax_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    axis: i64,
    log: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = sm::backward_name(log);
    with_float_array!(float_array(op, "y", y)?, y => {
        let g = same_dtype(op, "grad_out", grad_out, "grad_out must have the dtype of y")?;
        let dx = output(py, op, "out", out, y.shape())?;
        let (g, y) = (unaliased(g, &[&dx])?, unaliased(y, &[&dx])?);
        let (gv, yv, dv) = (array_ref(&g), array_ref(&y), array_mut(&dx));
        compute_sized(py, y.len(), || sm::softmax_backward_along(&gv, &yv, &dv, axis, log))?;
        Ok(dx.into_any())
    })
}

/// Argument `name` as an array of the first array's dtype; `mismatch` is the message otherwise.
fn same_dtype<'py, S: Storage>(
    op: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
    mismatch: &str,
) -> Result<Bound<'py, PyArrayDyn<S>>> {
    let arr = with_float_array!(float_array(op, name, obj)?, a => a.into_any());
    arr.cast_into::<PyArrayDyn<S>>()
        .map_err(|_| value_error(format!("{op}: {mismatch}")))
}

/// An information measure of p (and q) along `axis`: "entropy", "kl_div", "cross_entropy",
/// "js_divergence" or "js_distance"; `base` divides by ln(base) (js_distance: of the divergence).
#[pyfunction]
#[pyo3(
    signature = (measure, p, q=None, axis=-1, base=None),
    text_signature = "(measure, p, q=None, axis=-1, base=None)"
)]
pub(crate) fn information<'py>(
    py: Python<'py>,
    measure: Choice<Measure>,
    p: &Bound<'py, PyAny>,
    q: Option<&Bound<'py, PyAny>>,
    axis: i64,
    base: Option<f64>,
) -> Result<Bound<'py, PyAny>> {
    let Choice(measure) = measure;
    let op = measure.name();
    with_float_array!(float_array(op, "p", p)?, p => {
        let q = q.map(|q| same_dtype(op, "q", q, "q must have the dtype of p")).transpose()?;
        let (pv, qv) = (array_ref(&p), q.as_ref().map(array_ref));
        let r = compute(py, || info::information(measure, &pv, qv.as_ref(), axis, base))?;
        f64_array_like(py, &p, &r.values, &r.shape)
    })
}

/// Class indices of any integer dtype as i64, with their shape; a uint64 index beyond i64 is the
/// out-of-range error it is (not a wrapped negative number).
fn class_indices(
    py: Python<'_>,
    op: &str,
    target: &Bound<'_, PyUntypedArray>,
    classes: Option<usize>,
) -> Result<(Vec<i64>, Vec<usize>)> {
    let shape = target.shape().to_vec();
    let out_of_range = |bad: u64| {
        let of = classes.map_or(String::new(), |c| format!(" for {c} classes"));
        value_error(format!("{op}: target {bad} is out of range{of}"))
    };
    // Native integer arrays are read in place, in C order (the ravel order): the astype/ravel
    // round trip through Python had cost more than nll_loss's whole kernel on 4096 samples.
    macro_rules! native {
        ($($t:ty),*) => {$(
            if let Ok(typed) = target.cast::<PyArrayDyn<$t>>() {
                let view = typed.readonly();
                // Only a uint64 beyond i64 fails: reported with its own value, not wrapped.
                let wide = |t: $t| {
                    i64::try_from(t).map_err(|_| out_of_range(u64::try_from(t).unwrap_or(u64::MAX)))
                };
                // Checked first, then converted at a known length: collected as `Result`s, the
                // vector had grown by reallocation (1.2 µs of nll_loss at 4096 samples).
                let convert = |values: &[$t]| -> Result<Vec<i64>> {
                    if let Some(&bad) = values.iter().find(|&&t| i64::try_from(t).is_err()) {
                        wide(bad)?;
                    }
                    // Every value fits (checked above): the fallback is never taken.
                    Ok(values.iter().map(|&t| i64::try_from(t).unwrap_or(i64::MAX)).collect())
                };
                // A C-contiguous target as a slice: ndarray's n-d iterator cost ~4 ns a value.
                let index = match crate::dispatch::c_order_slice(&view) {
                    Some(values) => convert(values)?,
                    None => convert(&view.as_array().iter().copied().collect::<Vec<_>>())?,
                };
                return Ok((index, shape));
            }
        )*};
    }
    native!(i64, i32, i16, i8, u64, u32, u16, u8);
    // Other byte orders: through NumPy's conversion.
    if target.dtype().kind() == b'u' && target.dtype().itemsize() == 8 {
        let wide = target
            .call_method0("ravel")?
            .cast_into::<PyArrayDyn<u64>>()?
            .to_vec()?;
        if let Some(&bad) = wide.iter().find(|&&t| t > i64::MAX as u64) {
            return Err(out_of_range(bad));
        }
    }
    let index = target
        .call_method1("astype", (numpy::dtype::<i64>(py),))?
        .call_method0("ravel")?
        .cast_into::<PyArrayDyn<i64>>()?
        .to_vec()?;
    Ok((index, shape))
}

/// A cross-entropy target of an integer dtype as class indices with their shape (for logits of
/// shape `logits` with the classes along `axis`); None for probabilities.
#[allow(clippy::type_complexity)] // the indices and their shape
pub(crate) fn class_target(
    py: Python<'_>,
    op: &str,
    target: &Bound<'_, PyAny>,
    logits: &[usize],
    axis: i64,
) -> Result<Option<(Vec<i64>, Vec<usize>)>> {
    let target = crate::dispatch::as_ndarray(target)?;
    if !matches!(target.dtype().kind(), b'i' | b'u') {
        return Ok(None);
    }
    let classes = class_count(logits, axis);
    class_indices(py, op, &target, classes).map(Some)
}

/// The class count along `axis` of `shape`, where the axis is valid (the core reports it if not).
fn class_count(shape: &[usize], axis: i64) -> Option<usize> {
    let n = shape.len() as i64;
    (-n..n)
        .contains(&axis)
        .then(|| shape[axis.rem_euclid(n.max(1)) as usize])
}

/// A class-weight vector (`F.cross_entropy`'s `weight`) as f64 values.
pub(crate) fn class_weight(
    op: &str,
    weight: Option<&Bound<'_, PyAny>>,
) -> Result<Option<Vec<f64>>> {
    weight.map(|w| f64_vector(op, "weight", w)).transpose()
}

/// Cross-entropy of logits against class indices (integer array of any integer dtype, the logits'
/// shape without `axis`) or class probabilities (the logits' shape), as
/// torch.nn.functional.cross_entropy: `reduction` 'none' | 'mean' | 'sum', `label_smoothing` in
/// [0, 1], `ignore_index` for index targets (ignored rows give 0 and leave the mean), `weight` a
/// per-class scale (the mean then divides by the targets' weights).
#[pyfunction]
#[pyo3(
    signature = (logits, target, axis=-1, reduction=Choice(Reduction::Mean), label_smoothing=0.0, ignore_index=-100, weight=None),
    text_signature = "(logits, target, axis=-1, reduction='mean', label_smoothing=0.0, ignore_index=-100, weight=None)"
)]
#[allow(clippy::too_many_arguments)] // PyTorch's arguments, each needed
pub(crate) fn cross_entropy_with_logits<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    axis: i64,
    reduction: Choice<Reduction>,
    label_smoothing: f64,
    ignore_index: i64,
    weight: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "cross_entropy_with_logits";
    let Choice(reduction) = reduction;
    let weight = class_weight(OP, weight)?;
    with_float_array!(float_array(OP, "logits", logits)?, x => {
        let xv = array_ref(&x);
        let w = weight.as_deref();
        let r = if let Some((index, shape)) = class_target(py, OP, target, x.shape(), axis)? {
            let target = Target::Classes { index: &index, shape: &shape, ignore: ignore_index };
            compute(py, || sm::cross_entropy(&xv, target, axis, reduction, label_smoothing, w))?
        } else {
            let probs = same_dtype(OP, "target", target, "probability target must have the dtype of logits")?;
            let tv = array_ref(&probs);
            let target = Target::Probabilities(&tv);
            compute(py, || sm::cross_entropy(&xv, target, axis, reduction, label_smoothing, w))?
        };
        f64_array_like(py, &x, &r.values, &r.shape)
    })
}

/// The gradient of [`cross_entropy_with_logits`] with respect to the logits, given the loss's
/// gradient `grad_out` (a number for 'mean' and 'sum', the losses' shape for 'none').
#[pyfunction]
#[pyo3(
    signature = (grad_out, logits, target, axis=-1, reduction=Choice(Reduction::Mean), label_smoothing=0.0, ignore_index=-100, weight=None, out=None),
    text_signature = "(grad_out, logits, target, axis=-1, reduction='mean', label_smoothing=0.0, ignore_index=-100, weight=None, out=None)"
)]
#[allow(clippy::too_many_arguments)] // PyTorch's arguments, each needed
pub(crate) fn cross_entropy_with_logits_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    axis: i64,
    reduction: Choice<Reduction>,
    label_smoothing: f64,
    ignore_index: i64,
    weight: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "cross_entropy_with_logits_backward";
    let Choice(reduction) = reduction;
    let weight = class_weight(OP, weight)?;
    let (grad, grad_shape) = real_values(OP, "grad_out", grad_out)?;
    with_float_array!(float_array(OP, "logits", logits)?, x => {
        let dx = output(py, OP, "out", out, x.shape())?;
        let x = unaliased(x, &[&dx])?;
        let (xv, dv) = (array_ref(&x), array_mut(&dx));
        let w = weight.as_deref();
        let grad = (grad.as_slice(), grad_shape.as_slice());
        let run = |target| {
            sm::cross_entropy_backward(grad.0, grad.1, &xv, target, &dv, axis, reduction, label_smoothing, w)
        };
        if let Some((index, shape)) = class_target(py, OP, target, x.shape(), axis)? {
            compute(py, || run(Target::Classes { index: &index, shape: &shape, ignore: ignore_index }))?;
        } else {
            let probs = same_dtype(OP, "target", target, "probability target must have the dtype of logits")?;
            let probs = unaliased(probs, &[&dx])?;
            let tv = array_ref(&probs);
            compute(py, || run(Target::Probabilities(&tv)))?;
        }
        Ok(dx.into_any())
    })
}

/// torch.nn.functional.nll_loss: −w_t·log_probs_t per sample (classes along `axis`), class indices
/// of any integer dtype, `ignore_index` rows leaving the loss, reduced as `reduction` says.
#[pyfunction]
#[pyo3(
    signature = (log_probs, target, weight=None, axis=-1, reduction=Choice(Reduction::Mean), ignore_index=-100),
    text_signature = "(log_probs, target, weight=None, axis=-1, reduction='mean', ignore_index=-100)"
)]
pub(crate) fn nll_loss<'py>(
    py: Python<'py>,
    log_probs: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    axis: i64,
    reduction: Choice<Reduction>,
    ignore_index: i64,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "nll_loss";
    let Choice(reduction) = reduction;
    let weight = class_weight(OP, weight)?;
    let target_arr = crate::dispatch::as_ndarray(target)?;
    if !matches!(target_arr.dtype().kind(), b'i' | b'u') {
        return Err(type_error(format!(
            "{OP}: target has dtype {}; expected class indices (an integer dtype)",
            target_arr.dtype()
        )));
    }
    with_float_array!(float_array(OP, "log_probs", log_probs)?, x => {
        let xv = array_ref(&x);
        let (index, shape) = class_indices(py, OP, &target_arr, class_count(x.shape(), axis))?;
        let w = weight.as_deref();
        let r = compute(py, || sm::nll_loss(&xv, &index, &shape, ignore_index, w, axis, reduction))?;
        f64_array_like(py, &x, &r.values, &r.shape)
    })
}

/// A 1-D array of real values as f64. A native, contiguous float64 or float32 vector is read
/// directly, as one slice: the conversion through NumPy (`astype`, then a copy out) took ~2 µs,
/// more than an nll_loss of 64 samples, and ndarray's iterator ~0.4 µs over 1000 classes.
pub(crate) fn f64_vector(op: &str, name: &str, obj: &Bound<'_, PyAny>) -> Result<Vec<f64>> {
    if let Some(values) = crate::dispatch::native_f64_values::<numpy::Ix1>(obj) {
        return Ok(values);
    }
    Ok(f64_vector_array(op, name, obj)?.to_vec()?)
}

/// A 1-D array of real values as a float64 NumPy array ([`real_array`]).
fn f64_vector_array<'py>(
    op: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyArrayDyn<f64>>> {
    let arr = real_array(op, name, obj)?;
    if arr.ndim() != 1 {
        return Err(value_error(format!(
            "{op}: {name} must be 1-D, got shape {}",
            shape_str(arr.shape())
        )));
    }
    Ok(arr)
}

/// An array (or number) of real values as a native, aligned, C-contiguous float64 NumPy array:
/// itself when it is one (read in place, one memcpy to copy), else converted.
fn real_array<'py>(
    op: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyArrayDyn<f64>>> {
    let arr: Bound<'py, PyUntypedArray> = crate::dispatch::as_ndarray(obj)?;
    if !matches!(arr.dtype().kind(), b'f' | b'i' | b'u') {
        return Err(type_error(format!(
            "{op}: {name} has dtype {}; expected real numbers",
            arr.dtype()
        )));
    }
    let f64_dtype = numpy::dtype::<f64>(obj.py()).into_any();
    Ok(crate::dispatch::aligned_copy(arr.as_any(), &f64_dtype)?.cast_into::<PyArrayDyn<f64>>()?)
}

/// An array (or number) of real values as f64 in C order, with its shape.
pub(crate) fn real_values(
    op: &str,
    name: &str,
    obj: &Bound<'_, PyAny>,
) -> Result<(Vec<f64>, Vec<usize>)> {
    // A Python float (a loss's 1.0, NumPy's float64 scalars too) as the 0-d value it is: the
    // conversion through an array took 1.5 µs of a 2.7 µs cross-entropy backward of 2 rows.
    if let Ok(number) = obj.cast::<pyo3::types::PyFloat>() {
        return Ok((vec![number.value()], Vec::new()));
    }
    let arr = real_array(op, name, obj)?;
    Ok((arr.to_vec()?, arr.shape().to_vec()))
}

/// scipy.stats.wasserstein_distance: the 1-D earth mover's distance between two samples, with
/// optional non-negative weights (a positive sum each). Radix-sorted samples, one per thread.
#[pyfunction]
#[pyo3(signature = (u_values, v_values, u_weights=None, v_weights=None))]
pub(crate) fn wasserstein_1d(
    py: Python<'_>,
    u_values: &Bound<'_, PyAny>,
    v_values: &Bound<'_, PyAny>,
    u_weights: Option<&Bound<'_, PyAny>>,
    v_weights: Option<&Bound<'_, PyAny>>,
) -> Result<f64> {
    const OP: &str = "wasserstein_1d";
    let arrays = [
        Some(("u_values", u_values)),
        Some(("v_values", v_values)),
        u_weights.map(|w| ("u_weights", w)),
        v_weights.map(|w| ("v_weights", w)),
    ];
    let arrays = arrays
        .iter()
        .map(|a| {
            a.map(|(name, obj)| f64_vector_array(OP, name, obj))
                .transpose()
        })
        .collect::<Result<Vec<_>>>()?;
    let views = arrays
        .iter()
        .map(|a| a.as_ref().map(PyArrayMethods::readonly))
        .collect::<Vec<_>>();
    // The samples are read in place (C-contiguous float64): a copy of each (and its fresh pages)
    // had cost more than a fifth of a million-value distance.
    let values = views
        .iter()
        .map(|v| v.as_ref().map(|v| v.as_slice()).transpose())
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let [Some(u), Some(v), uw, vw] = values[..] else {
        unreachable!("u_values and v_values are always given")
    };
    compute(py, || wasserstein(u, v, uw, vw))
}
