//! Bindings of softmax, the information measures, cross-entropy with logits and Wasserstein-1.

use crate::dispatch::{
    element_strides, f64_array_like, float_array, output, permuted, resolve_axis, rows_ref_as,
    shape_str, unaliased, with_float_array, Storage,
};
use crate::errors::{compute, type_error, value_error};

use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rsnorm_core::information::{row_measure, Measure};
use rsnorm_core::rows::{RowsMut, RowsRef};
use rsnorm_core::softmax::{self as sm, LogitTarget};
use rsnorm_core::wasserstein::wasserstein_1d as wasserstein;

/// `arr` as rows along `axis` (that dim moved innermost, the others in order).
fn rows_along<S: Storage>(arr: &Bound<'_, PyArrayDyn<S>>, axis: usize) -> RowsRef<S> {
    let shape = arr.shape().to_vec();
    let leading: Vec<usize> = (0..shape.len()).filter(|&d| d != axis).collect();
    let (ps, pst) = permuted(&shape, &element_strides(arr.as_untyped()), &leading);
    rows_ref_as(arr, &ps, &pst, 1)
}

fn rows_along_mut<S: Storage>(arr: &Bound<'_, PyArrayDyn<S>>, axis: usize) -> RowsMut<S> {
    let view = rows_along(arr, axis);
    RowsMut {
        ptr: arr.data(),
        rows: view.rows,
    }
}

fn axis_of(op: &str, shape: &[usize], axis: i64) -> PyResult<usize> {
    if shape.is_empty() {
        return Err(value_error(format!(
            "{op}: the input is 0-dimensional; it needs an axis"
        )));
    }
    resolve_axis(op, axis, shape.len())
}

fn softmax_impl<'py>(
    py: Python<'py>,
    op: &str,
    x: &Bound<'py, PyAny>,
    axis: i64,
    out: Option<&Bound<'py, PyAny>>,
    log: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let x = float_array(op, "x", x)?;
    if with_float_array!(&x, a => a.ndim() == 0) {
        // A 0-d input is one value along axis 0 (or -1), as torch.softmax takes it: softmax 1,
        // log_softmax 0, returned 0-d.
        if axis != 0 && axis != -1 {
            return Err(value_error(format!(
                "{op}: axis {axis} is out of range for a 0-dimensional input (0 or -1)"
            )));
        }
        let one = with_float_array!(x, a => a.reshape([1usize])?.into_any());
        // A non-array `out` goes on as it is, for `output` to reject.
        let out_one = out
            .map(|o| match o.cast::<PyUntypedArray>() {
                Ok(arr) if arr.ndim() == 0 => o.call_method1("reshape", (1,)),
                _ => Ok(o.clone()),
            })
            .transpose()?;
        let y = softmax_impl(py, op, &one, 0, out_one.as_ref(), log)?;
        return match out {
            Some(o) => Ok(o.clone()),
            None => y.call_method1("reshape", (PyTuple::empty(py),)),
        };
    }
    with_float_array!(x, x => {
        let shape = x.shape().to_vec();
        let axis = axis_of(op, &shape, axis)?;
        let y = output(py, op, "out", out, &shape)?;
        let x = unaliased(x, &[&y])?;
        let (xv, yv) = (rows_along(&x, axis), rows_along_mut(&y, axis));
        // SAFETY: views of live arrays; `y` is `x` or disjoint from it.
        compute(py, || unsafe { sm::softmax(&xv, &yv, log) })?;
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
) -> PyResult<Bound<'py, PyAny>> {
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
) -> PyResult<Bound<'py, PyAny>> {
    softmax_impl(py, "log_softmax", x, axis, out, true)
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
    measure: &str,
    p: &Bound<'py, PyAny>,
    q: Option<&Bound<'py, PyAny>>,
    axis: i64,
    base: Option<f64>,
) -> PyResult<Bound<'py, PyAny>> {
    let kind = match measure {
        "entropy" => Measure::Entropy,
        "kl_div" => Measure::KlDivergence,
        "cross_entropy" => Measure::CrossEntropy,
        "js_divergence" | "js_distance" => Measure::JsDivergence,
        other => {
            return Err(value_error(format!(
                "unknown information measure {other:?}"
            )))
        }
    };
    if let Some(b) = base {
        // ln(base) divides every result: it must be finite and non-zero (base 1 is not a base).
        if !(b > 0.0 && b.is_finite() && b.ln().abs() > 0.0) {
            return Err(value_error(format!(
                "{measure}: base must be positive, finite and not 1, got {b}"
            )));
        }
    }
    with_float_array!(float_array(measure, "p", p)?, p => {
        let shape = p.shape().to_vec();
        let axis = axis_of(measure, &shape, axis)?;
        let q = match q {
            None => None,
            Some(q) => {
                let q = with_float_array!(float_array(measure, "q", q)?, a => a.into_any());
                let Ok(q) = q.cast_into::<PyArrayDyn<_>>() else {
                    return Err(value_error(format!("{measure}: q must have the dtype of p")));
                };
                if q.shape() != shape.as_slice() {
                    return Err(value_error(format!(
                        "{measure}: q has shape {}, p has {}", shape_str(q.shape()), shape_str(&shape))));
                }
                Some(q)
            }
        };
        let pv = rows_along(&p, axis);
        let qv = q.as_ref().map(|q| rows_along(q, axis));
        // SAFETY: views of live arrays, only read.
        let rows = compute(py, || unsafe { row_measure(kind, &pv, qv.as_ref()) })?;
        let scale = base.map_or(1.0, f64::ln);
        let values: Vec<f64> = rows
            .iter()
            .map(|r| r.map(|v| if measure == "js_distance" { (v.max(0.0) / scale).sqrt() } else { v / scale }))
            .collect::<Option<_>>()
            .ok_or_else(|| value_error(format!("{measure}: probabilities must be non-negative")))?;
        let out_shape: Vec<usize> = shape.iter().enumerate().filter(|&(d, _)| d != axis).map(|(_, &n)| n).collect();
        f64_array_like(py, &p, &values, &out_shape)
    })
}

/// Cross-entropy of logits against class indices (integer array, the logits' shape without
/// `axis`) or class probabilities (the logits' shape), as torch.nn.functional.cross_entropy:
/// `reduction` 'none' | 'mean' | 'sum', `label_smoothing` in [0, 1], `ignore_index` for index
/// targets (ignored rows give 0 and leave the mean).
#[pyfunction]
#[pyo3(
    signature = (logits, target, axis=-1, reduction="mean", label_smoothing=0.0, ignore_index=-100),
    text_signature = "(logits, target, axis=-1, reduction='mean', label_smoothing=0.0, ignore_index=-100)"
)]
pub(crate) fn cross_entropy_with_logits<'py>(
    py: Python<'py>,
    logits: &Bound<'py, PyAny>,
    target: &Bound<'py, PyAny>,
    axis: i64,
    reduction: &str,
    label_smoothing: f64,
    ignore_index: i64,
) -> PyResult<Bound<'py, PyAny>> {
    const OP: &str = "cross_entropy_with_logits";
    if !matches!(reduction, "none" | "mean" | "sum") {
        return Err(value_error(format!(
            "{OP}: reduction must be 'none', 'mean' or 'sum', got {reduction:?}"
        )));
    }
    with_float_array!(float_array(OP, "logits", logits)?, x => {
        let shape = x.shape().to_vec();
        let axis = axis_of(OP, &shape, axis)?;
        let row_shape: Vec<usize> = shape.iter().enumerate().filter(|&(d, _)| d != axis).map(|(_, &n)| n).collect();
        let xv = rows_along(&x, axis);
        let target_arr = crate::dispatch::as_ndarray(target)?;
        let losses = if target_arr.dtype().kind() == b'i' || target_arr.dtype().kind() == b'u' {
            if target_arr.shape() != row_shape.as_slice() {
                return Err(value_error(format!(
                    "{OP}: class-index target has shape {}, expected {} (logits without the class axis)",
                    shape_str(target_arr.shape()), shape_str(&row_shape))));
            }
            let index: Vec<i64> = target_arr.call_method1("astype", (numpy::dtype::<i64>(py),))?
                .call_method0("ravel")?.cast_into::<PyArrayDyn<i64>>()?.to_vec()?;
            let target = LogitTarget::Classes { index: &index, ignore: ignore_index };
            // SAFETY: `xv` describes the live logits, only read.
            compute(py, || unsafe { sm::cross_entropy_with_logits(&xv, &target, label_smoothing) })?
        } else {
            let probs = with_float_array!(float_array(OP, "target", target)?, a => a.into_any());
            let Ok(probs) = probs.cast_into::<PyArrayDyn<_>>() else {
                return Err(value_error(format!("{OP}: probability target must have the dtype of logits")));
            };
            if probs.shape() != shape.as_slice() {
                return Err(value_error(format!(
                    "{OP}: probability target has shape {}, logits have {}", shape_str(probs.shape()), shape_str(&shape))));
            }
            let tv = rows_along(&probs, axis);
            let target = LogitTarget::Probabilities(&tv);
            // SAFETY: views of live arrays, only read.
            compute(py, || unsafe { sm::cross_entropy_with_logits(&xv, &target, label_smoothing) })?
        };
        let kept: Vec<f64> = losses.iter().flatten().copied().collect();
        match reduction {
            "none" => f64_array_like(py, &x, &losses.iter().map(|l| l.unwrap_or(0.0)).collect::<Vec<_>>(), &row_shape),
            "sum" => f64_array_like(py, &x, &[kept.iter().sum()], &[]),
            _ => f64_array_like(py, &x, &[kept.iter().sum::<f64>() / kept.len() as f64], &[]),
        }
    })
}

fn f64_vector(op: &str, name: &str, obj: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    let arr: Bound<'_, PyUntypedArray> = crate::dispatch::as_ndarray(obj)?;
    let kind = arr.dtype().kind();
    if !matches!(kind, b'f' | b'i' | b'u') {
        return Err(type_error(format!(
            "{op}: {name} has dtype {}; expected real numbers",
            arr.dtype()
        )));
    }
    if arr.ndim() != 1 {
        return Err(value_error(format!(
            "{op}: {name} must be 1-D, got shape {}",
            shape_str(arr.shape())
        )));
    }
    let as_f64 = arr.call_method1("astype", (numpy::dtype::<f64>(obj.py()),))?;
    Ok(as_f64.cast_into::<PyArrayDyn<f64>>()?.to_vec()?)
}

/// scipy.stats.wasserstein_distance: the 1-D earth mover's distance between two samples, with
/// optional non-negative weights (a positive sum each). O(n log n), parallel sort.
#[pyfunction]
#[pyo3(signature = (u_values, v_values, u_weights=None, v_weights=None))]
pub(crate) fn wasserstein_1d(
    py: Python<'_>,
    u_values: &Bound<'_, PyAny>,
    v_values: &Bound<'_, PyAny>,
    u_weights: Option<&Bound<'_, PyAny>>,
    v_weights: Option<&Bound<'_, PyAny>>,
) -> PyResult<f64> {
    const OP: &str = "wasserstein_1d";
    let u = f64_vector(OP, "u_values", u_values)?;
    let v = f64_vector(OP, "v_values", v_values)?;
    let uw = u_weights
        .map(|w| f64_vector(OP, "u_weights", w))
        .transpose()?;
    let vw = v_weights
        .map(|w| f64_vector(OP, "v_weights", w))
        .transpose()?;
    compute(py, || wasserstein(&u, &v, uw.as_deref(), vw.as_deref()))
}
