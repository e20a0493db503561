//! Bindings of the backward passes. Each takes grad_out plus what the forward returned with
//! `return_stats=True` and returns PyTorch's autograd gradients (None for a parameter not given).

use crate::dispatch::{
    array_mut, array_ref, as_ndarray, channel_param, f64_array, float_array, output, param,
    param_slice, resolve_axis, rows_mut, rows_ref, same_as_x, shape_str, unaliased,
    with_float_array, Storage,
};
use crate::errors::{compute, compute_sized, type_error, value_error, Result};
use numpy::{PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rsnorm_core::norm::backward as bw;
use rsnorm_core::norm::channels::backward::ChannelStats;
use rsnorm_core::norm::lp_normalize as lp;
use rsnorm_core::rows::{ArrayMut, ArrayRef};

/// Forward statistics (mean, rstd) as f64, `expected` values in any shape with that many elements.
fn stats_values(op: &str, name: &str, obj: &Bound<'_, PyAny>, expected: usize) -> Result<Vec<f64>> {
    let arr = as_ndarray(obj)?;
    if arr.dtype().kind() != b'f' {
        return Err(type_error(format!(
            "{op}: {name} has dtype {}; expected a floating dtype",
            arr.dtype()
        )));
    }
    if arr.len() != expected {
        return Err(value_error(format!(
            "{op}: {name} has {} values (shape {}), expected {expected}: statistics from another shape?",
            arr.len(),
            shape_str(arr.shape())
        )));
    }
    if let Some(values) = crate::dispatch::native_f64_values::<numpy::IxDyn>(obj) {
        return Ok(values);
    }
    let flat = arr
        .call_method1("astype", (numpy::dtype::<f64>(obj.py()),))?
        .call_method1("ravel", ())?;
    Ok(flat.cast_into::<PyArrayDyn<f64>>()?.to_vec()?)
}

fn tuple<'py>(py: Python<'py>, items: Vec<Option<Bound<'py, PyAny>>>) -> Result<Bound<'py, PyAny>> {
    let items: Vec<Bound<'py, PyAny>> = items
        .into_iter()
        .map(|i| i.unwrap_or_else(|| py.None().into_bound(py)))
        .collect();
    Ok(PyTuple::new(py, items)?.into_any())
}

/// A backward's `out=`: None, or (as NumPy's ufuncs with several outputs take it) a tuple with one
/// entry per result, each an array to write that result into or None.
pub(crate) fn out_entries<'py, const N: usize>(
    op: &str,
    out: Option<&Bound<'py, PyAny>>,
    results: [&str; N],
) -> Result<[Option<Bound<'py, PyAny>>; N]> {
    let Some(out) = out else {
        return Ok(std::array::from_fn(|_| None));
    };
    let Ok(entries) = out.cast::<PyTuple>() else {
        return Err(type_error(format!(
            "{op}: out must be a tuple of {N} arrays or None ({}), got {}",
            results.join(", "),
            out.get_type().name()?
        )));
    };
    if entries.len() != N {
        return Err(value_error(format!(
            "{op}: out has {} entries, expected {N}: one per result ({})",
            entries.len(),
            results.join(", ")
        )));
    }
    Ok(std::array::from_fn(|i| {
        let entry = entries.get_item(i).ok();
        entry.filter(|e| !e.is_none())
    }))
}

/// The error of an `out=` entry given for the gradient of a parameter that was None.
pub(crate) fn not_computed(op: &str, index: usize, parameter: &str) -> crate::errors::Error {
    value_error(format!(
        "{op}: out[{index}] is given, but that gradient is not computed ({parameter} is None)"
    ))
}

/// A fused add's dx and dresidual are one array: `out[0]` or `out[1]`, or both the same array.
pub(crate) fn one_sum_gradient<'py>(
    op: &str,
    dx: Option<Bound<'py, PyAny>>,
    dresidual: Option<Bound<'py, PyAny>>,
) -> Result<(Option<Bound<'py, PyAny>>, usize)> {
    match (dx, dresidual) {
        (Some(a), Some(b)) if !a.is(&b) => Err(value_error(format!(
            "{op}: out[0] and out[1] are different arrays, but dx and dresidual are one array: \
             give one of them, or the same array twice"
        ))),
        (Some(a), _) => Ok((Some(a), 0)),
        (None, Some(b)) => Ok((Some(b), 1)),
        (None, None) => Ok((None, 0)),
    }
}

/// The array a parameter's gradient is written into: `out[index]` checked (before any work), or
/// None for a fresh array; a gradient not computed (its parameter None) takes no `out` entry.
fn param_out<'py, S: Storage>(
    like: &Bound<'py, PyArrayDyn<S>>,
    op: &str,
    (out, index): (Option<&Bound<'py, PyAny>>, usize),
    (computed, parameter): (bool, &str),
    shape: &[usize],
) -> Result<Option<Bound<'py, PyArrayDyn<S>>>> {
    let Some(out) = out else {
        return Ok(None);
    };
    if !computed {
        return Err(not_computed(op, index, parameter));
    }
    output::<S>(like.py(), op, &format!("out[{index}]"), Some(out), shape).map(Some)
}

/// A parameter's gradient (f64 sums) in x's dtype: written into `into` when given, else fresh.
fn param_grad<'py, S: Storage>(
    py: Python<'py>,
    into: Option<Bound<'py, PyArrayDyn<S>>>,
    values: &[f64],
    shape: &[usize],
) -> Result<Bound<'py, PyAny>> {
    let fresh = f64_array::<S>(py, values, shape)?;
    let Some(into) = into else {
        return Ok(fresh);
    };
    into.call_method1("__setitem__", (py.Ellipsis(), fresh))?;
    Ok(into.into_any())
}

/// Trailing dims named by normalized_shape (None: last dim), checked against x.
fn trailing_dims(
    op: &str,
    shape: &[usize],
    normalized_shape: Option<&Bound<'_, PyAny>>,
) -> Result<usize> {
    crate::norm::normalized_ndim(op, shape, normalized_shape)
}

/// Shared by layer_norm_backward / rms_norm_backward and their fused-add forms.
struct RowBackward<'a, 'py> {
    op: &'a str,
    grad_out: &'a Bound<'py, PyAny>,
    mean: Option<&'a Bound<'py, PyAny>>,
    rstd: &'a Bound<'py, PyAny>,
    weight: Option<&'a Bound<'py, PyAny>>,
    bias: Option<&'a Bound<'py, PyAny>>,
    normalized_shape: Option<&'a Bound<'py, PyAny>>,
    grad_sum: Option<&'a Bound<'py, PyAny>>,
    /// `out=` entries for (dx, dweight, dbias), each with its index in the public tuple.
    out: [(Option<Bound<'py, PyAny>>, usize); 3],
}

/// (dx, dweight, dbias) of a row norm; a parameter gradient is None when the parameter was.
type RowGrads<'py> = (
    Bound<'py, PyAny>,
    Option<Bound<'py, PyAny>>,
    Option<Bound<'py, PyAny>>,
);

/// Returns (dx, dweight, dbias) as PyTorch does for the row norms.
fn row_backward_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    a: &RowBackward<'_, 'py>,
) -> Result<RowGrads<'py>> {
    let op = a.op;
    let shape = x.shape().to_vec();
    let k = trailing_dims(op, &shape, a.normalized_shape)?;
    let norm_shape = shape[shape.len() - k..].to_vec();
    let go = same_as_x::<S>(op, "grad_out", a.grad_out, &shape)?;
    let n_rows = rows_ref(&x, k).rows().n_rows();
    let mean = (a.mean.map(|m| stats_values(op, "mean", m, n_rows))).transpose()?;
    let rstd = stats_values(op, "rstd", a.rstd, n_rows)?;
    let weight = param::<S>(py, op, "weight", a.weight, &norm_shape)?;
    // The bias is only checked: its gradient does not depend on its values.
    let bias_given = param::<S>(py, op, "bias", a.bias, &norm_shape)?.is_some();
    let extra = a
        .grad_sum
        .map(|g| same_as_x::<S>(op, "grad_residual_out", g, &shape));
    let extra = extra.transpose()?;
    let [(dx_out, dx_index), (dw_out, dw_index), (db_out, db_index)] = &a.out;
    let dx = output::<S>(py, op, &format!("out[{dx_index}]"), dx_out.as_ref(), &shape)?;
    let dw = (dw_out.as_ref(), *dw_index);
    let dw_out = param_out(&dx, op, dw, (weight.is_some(), "weight"), &norm_shape)?;
    let db_out = param_out(
        &dx,
        op,
        (db_out.as_ref(), *db_index),
        (bias_given, "bias"),
        &norm_shape,
    )?;
    // dx may be one of its inputs (in place); an input overlapping it otherwise is read from a copy.
    let (x, go) = (unaliased(x, &[&dx])?, unaliased(go, &[&dx])?);
    let extra = extra.map(|e| unaliased(e, &[&dx])).transpose()?;
    let extra = extra.as_ref().map(|e| rows_ref(e, k));
    let (xv, gv, dv) = (rows_ref(&x, k), rows_ref(&go, k), rows_mut(&dx, k));
    let w = param_slice(weight.as_ref());
    let want_params = weight.is_some() || bias_given;
    let sums = compute(py, || {
        let (mean, extra) = (mean.as_deref(), extra.as_ref());
        bw::row_norm_backward(&gv, &xv, &dv, mean, &rstd, w, want_params, extra)
    })?;
    let dweight = (weight.is_some())
        .then(|| param_grad::<S>(py, dw_out, &sums.dweight, &norm_shape))
        .transpose()?;
    let dbias = bias_given
        .then(|| param_grad::<S>(py, db_out, &sums.dbias, &norm_shape))
        .transpose()?;
    Ok((dx.into_any(), dweight, dbias))
}

/// LayerNorm backward: (dx, dweight, dbias) from grad_out, x and the forward's mean/rstd
/// (`layer_norm(..., return_stats=True)`); dweight/dbias are None when weight/bias is None.
#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight=None, bias=None, normalized_shape=None, out=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn layer_norm_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "layer_norm_backward";
    let [dx, dw, db] = out_entries(op, out, ["dx", "dweight", "dbias"])?;
    let args = RowBackward {
        out: [(dx, 0), (dw, 1), (db, 2)],
        op,
        grad_out,
        mean: Some(mean),
        rstd,
        weight,
        bias,
        normalized_shape,
        grad_sum: None,
    };
    let (dx, dw, db) =
        with_float_array!(float_array(op, "x", x)?, x => row_backward_typed(py, x, &args))?;
    tuple(py, vec![Some(dx), dw, db])
}

/// RMSNorm backward: (dx, dweight) from grad_out, x and the forward's rstd.
#[pyfunction]
#[pyo3(signature = (grad_out, x, rstd, weight=None, normalized_shape=None, out=None))]
pub(crate) fn rms_norm_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "rms_norm_backward";
    let [dx, dw] = out_entries(op, out, ["dx", "dweight"])?;
    let args = RowBackward {
        out: [(dx, 0), (dw, 1), (None, 2)],
        op,
        grad_out,
        mean: None,
        rstd,
        weight,
        bias: None,
        normalized_shape,
        grad_sum: None,
    };
    let (dx, dw, _) =
        with_float_array!(float_array(op, "x", x)?, x => row_backward_typed(py, x, &args))?;
    tuple(py, vec![Some(dx), dw])
}

/// Backward of add_layer_norm: from grad_out (of the normalized output), the forward's
/// `x + residual` output, mean and rstd, and optionally grad_residual_out (gradient reaching the
/// sum output), returns (dx, dresidual, dweight, dbias); dx and dresidual are equal (one array).
#[pyfunction]
#[pyo3(signature = (grad_out, residual_sum, mean, rstd, weight=None, bias=None, grad_residual_out=None,
                    normalized_shape=None, out=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_layer_norm_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    residual_sum: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    grad_residual_out: Option<&Bound<'py, PyAny>>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "add_layer_norm_backward";
    let names = ["dx", "dresidual", "dweight", "dbias"];
    let [dx, dr, dw, db] = out_entries(op, out, names)?;
    let args = RowBackward {
        out: [one_sum_gradient(op, dx, dr)?, (dw, 2), (db, 3)],
        op,
        grad_out,
        mean: Some(mean),
        rstd,
        weight,
        bias,
        normalized_shape,
        grad_sum: grad_residual_out,
    };
    let (dx, dw, db) = with_float_array!(float_array(op, "residual_sum", residual_sum)?, s => row_backward_typed(py, s, &args))?;
    tuple(py, vec![Some(dx.clone()), Some(dx), dw, db])
}

/// Backward of add_rms_norm: (dx, dresidual, dweight), see add_layer_norm_backward.
#[pyfunction]
#[pyo3(signature = (grad_out, residual_sum, rstd, weight=None, grad_residual_out=None, normalized_shape=None,
                    out=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn add_rms_norm_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    residual_sum: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    grad_residual_out: Option<&Bound<'py, PyAny>>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "add_rms_norm_backward";
    let [dx, dr, dw] = out_entries(op, out, ["dx", "dresidual", "dweight"])?;
    let args = RowBackward {
        out: [one_sum_gradient(op, dx, dr)?, (dw, 2), (None, 3)],
        op,
        grad_out,
        mean: None,
        rstd,
        weight,
        bias: None,
        normalized_shape,
        grad_sum: grad_residual_out,
    };
    let (dx, dw, _) = with_float_array!(float_array(op, "residual_sum", residual_sum)?, s => row_backward_typed(py, s, &args))?;
    tuple(py, vec![Some(dx.clone()), Some(dx), dw])
}

/// Parses a channel-wise backward's arguments (statistics laid out as `stats` says), calls
/// `core_call` and returns (dx, dweight, dbias).
#[allow(clippy::too_many_arguments)]
fn channel_backward_typed<'py, S: Storage>(
    py: Python<'py>,
    op: &str,
    x: Bound<'py, PyArrayDyn<S>>,
    (grad_out, mean, rstd): (&Bound<'py, PyAny>, &Bound<'py, PyAny>, &Bound<'py, PyAny>),
    weight: Option<&Bound<'py, PyAny>>,
    stats: ChannelStats,
    out: Option<&Bound<'py, PyAny>>,
    // The op's core entry, given (grad_out, x, dx, (mean, rstd), weight).
    core_call: impl FnOnce(
            &ArrayRef<S>,
            &ArrayRef<S>,
            &ArrayMut<S>,
            (&[f64], &[f64]),
            Option<&[f64]>,
        ) -> rsnorm_core::Result<(Vec<f64>, Vec<f64>)>
        + Send,
) -> Result<Bound<'py, PyAny>> {
    let shape = x.shape().to_vec();
    let (channels, n_stats) = stats.counts(op, &shape)?;
    let go = same_as_x::<S>(op, "grad_out", grad_out, &shape)?;
    let mean = stats_values(op, "mean", mean, n_stats)?;
    let rstd = stats_values(op, "rstd", rstd, n_stats)?;
    let weight = channel_param::<S>(py, op, "weight", weight, channels)?;
    let [dx_out, dw_out, db_out] = out_entries(op, out, ["dx", "dweight", "dbias"])?;
    let dx = output::<S>(py, op, "out[0]", dx_out.as_ref(), &shape)?;
    let computed = (weight.is_some(), "weight");
    let dw_out = param_out(&dx, op, (dw_out.as_ref(), 1), computed, &[channels])?;
    let db_out = param_out(&dx, op, (db_out.as_ref(), 2), (true, "bias"), &[channels])?;
    // dx may be one of its inputs (in place); an input overlapping it otherwise is read from a copy.
    let (x, go) = (unaliased(x, &[&dx])?, unaliased(go, &[&dx])?);
    let (xv, gv, dv) = (array_ref(&x), array_ref(&go), array_mut(&dx));
    let w = weight.as_deref();
    let (dweight, dbias) = compute(py, || core_call(&gv, &xv, &dv, (&mean, &rstd), w))?;
    let dweight = weight
        .is_some()
        .then(|| param_grad::<S>(py, dw_out, &dweight, &[channels]))
        .transpose()?;
    let dbias = param_grad::<S>(py, db_out, &dbias, &[channels])?;
    tuple(py, vec![Some(dx.into_any()), dweight, Some(dbias)])
}

/// BatchNorm backward: (dx, dweight, dbias) from grad_out, x and the statistics the forward used
/// (`batch_norm(..., return_stats=True)`). `training=True` includes the terms through the batch
/// mean and variance; `training=False` treats them as constants (eval mode). `mean_only=True` is
/// the gradient of mean-only BatchNorm (rstd is not read). dweight is None when weight is None.
#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight=None, training=true, axis=1, mean_only=false, out=None))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn batch_norm_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    training: bool,
    axis: i64,
    mean_only: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    use rsnorm_core::norm::batch_norm::{batch_norm_backward as core_call, BACKWARD_OP as OP};
    with_float_array!(float_array(OP, "x", x)?, x => {
        let axis = resolve_axis(OP, axis, x.ndim())?;
        let call = move |go: &ArrayRef<'_, _>, x: &ArrayRef<'_, _>, dx: &ArrayMut<'_, _>, stats: (&[f64], &[f64]), w: Option<&[f64]>| {
            core_call(go, x, dx, stats, w, axis, training, mean_only)
        };
        let stats = ChannelStats::Channel { axis };
        channel_backward_typed(py, OP, x, (grad_out, mean, rstd), weight, stats, out, call)
    })
}

/// InstanceNorm backward: (dx, dweight, dbias); mean/rstd are the forward's (N, C) statistics,
/// constants when the forward had `use_input_stats=False`.
#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight=None, use_input_stats=true, out=None))]
pub(crate) fn instance_norm_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    use_input_stats: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    use rsnorm_core::norm::instance_norm::{
        instance_norm_backward as core_call, BACKWARD_OP as OP,
    };
    with_float_array!(float_array(OP, "x", x)?, x => {
        let call = move |go: &ArrayRef<'_, _>, x: &ArrayRef<'_, _>, dx: &ArrayMut<'_, _>, stats: (&[f64], &[f64]), w: Option<&[f64]>| {
            core_call(go, x, dx, stats, w, use_input_stats)
        };
        let stats = ChannelStats::Instance;
        channel_backward_typed(py, OP, x, (grad_out, mean, rstd), weight, stats, out, call)
    })
}

/// GroupNorm backward: (dx, dweight, dbias); mean/rstd are the forward's (N, G) statistics.
#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight=None, *, num_groups, out=None))]
pub(crate) fn group_norm_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    rstd: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    num_groups: i64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    use rsnorm_core::norm::group_norm::{self as core, BACKWARD_OP as OP};
    with_float_array!(float_array(OP, "x", x)?, x => {
        let stats = core::backward_stats(x.shape(), num_groups)?;
        let call = move |go: &ArrayRef<'_, _>, x: &ArrayRef<'_, _>, dx: &ArrayMut<'_, _>, stats: (&[f64], &[f64]), w: Option<&[f64]>| {
            core::group_norm_backward(go, x, dx, stats, w, num_groups)
        };
        channel_backward_typed(py, OP, x, (grad_out, mean, rstd), weight, stats, out, call)
    })
}

/// Weight-norm backward: (dv, dg) from grad_w (gradient of w = g·v/‖v‖), v and g; dg has g's shape.
#[pyfunction]
#[pyo3(signature = (grad_w, v, g, dim=Some(0), out=None))]
#[pyo3(text_signature = "(grad_w, v, g, dim=0, out=None)")]
pub(crate) fn weight_norm_backward<'py>(
    py: Python<'py>,
    grad_w: &Bound<'py, PyAny>,
    v: &Bound<'py, PyAny>,
    g: &Bound<'py, PyAny>,
    dim: Option<i64>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "weight_norm_backward";
    with_float_array!(float_array(op, "v", v)?, v => {
        let shape = v.shape().to_vec();
        let dim = dim.map(|d| resolve_axis(op, d, shape.len())).transpose()?;
        let slices = dim.map_or(1, |d| shape[d]);
        let g_arr = as_ndarray(g)?;
        let g_values = stats_values(op, "g", g, slices)?;
        let gw = same_as_x(op, "grad_w", grad_w, &shape)?;
        let [dv_out, dg_out] = out_entries(op, out, ["dv", "dg"])?;
        let dv = output(py, op, "out[0]", dv_out.as_ref(), &shape)?;
        let g_shape = g_arr.shape().to_vec();
        let dg_out = param_out(&dv, op, (dg_out.as_ref(), 1), (true, "g"), &g_shape)?;
        let (v, gw) = (unaliased(v, &[&dv])?, unaliased(gw, &[&dv])?);
        let leading: Vec<usize> = dim.into_iter().collect();
        let inner = shape.len() - leading.len();
        let vv = array_ref(&v).with_leading(&leading).rows(inner);
        let gv = array_ref(&gw).with_leading(&leading).rows(inner);
        let dvv = array_mut(&dv).with_leading(&leading).into_rows(inner);
        let dg = compute(py, || bw::weight_norm_backward(&gv, &vv, &dvv, &g_values))?;
        tuple(py, vec![Some(dv.into_any()), Some(param_grad(py, dg_out, &dg, &g_shape)?)])
    })
}

/// Backward of l2_normalize (rows over the last dim): dx from the output gradient and x.
#[pyfunction]
#[pyo3(signature = (grad, x, eps=1e-12, out=None))]
pub(crate) fn l2_normalize_backward<'py>(
    py: Python<'py>,
    grad: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "l2_normalize_backward";
    with_float_array!(float_array(op, "x", x)?, x => {
        let shape = x.shape().to_vec();
        if shape.is_empty() {
            return Err(value_error(format!("{op}: x is 0-dimensional")));
        }
        let gy = same_as_x(op, "grad", grad, &shape)?;
        let dx = output(py, op, "out", out, &shape)?;
        let (x, gy) = (unaliased(x, &[&dx])?, unaliased(gy, &[&dx])?);
        let (gv, xv, dv) = (rows_ref(&gy, 1), rows_ref(&x, 1), rows_mut(&dx, 1));
        compute(py, || lp::l2_normalize_backward(&gv, &xv, &dv, eps))?;
        Ok(dx.into_any())
    })
}

/// Backward of normalize along `axis`: dx from the output gradient and x.
#[pyfunction]
#[pyo3(
    signature = (grad, x, p=2.0, axis=-1, eps=1e-12, out=None),
    text_signature = "(grad, x, p=2.0, axis=-1, eps=1e-12, out=None)"
)]
pub(crate) fn normalize_backward<'py>(
    py: Python<'py>,
    grad: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    p: f64,
    axis: i64,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "normalize_backward";
    with_float_array!(float_array(op, "x", x)?, x => {
        let shape = x.shape().to_vec();
        let gy = same_as_x(op, "grad", grad, &shape)?;
        let dx = output(py, op, "out", out, &shape)?;
        let (x, gy) = (unaliased(x, &[&dx])?, unaliased(gy, &[&dx])?);
        let (gv, xv, dv) = (array_ref(&gy), array_ref(&x), array_mut(&dx));
        compute(py, || lp::normalize_backward(&gv, &xv, &dv, p, axis, eps))?;
        Ok(dx.into_any())
    })
}

/// SELU backward: dx = grad_out·λ for x > 0, grad_out·λ·α·eˣ otherwise.
#[pyfunction]
#[pyo3(signature = (grad_out, x, out=None))]
pub(crate) fn selu_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    x: &Bound<'py, PyAny>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "selu_backward";
    with_float_array!(float_array(op, "x", x)?, x => {
        let shape = x.shape().to_vec();
        let go = same_as_x(op, "grad_out", grad_out, &shape)?;
        let dx = output(py, op, "out", out, &shape)?;
        let (x, go) = (unaliased(x, &[&dx])?, unaliased(go, &[&dx])?);
        let inner = usize::from(!shape.is_empty());
        let (gv, xv, dv) = (rows_ref(&go, inner), rows_ref(&x, inner), rows_mut(&dx, inner));
        compute_sized(py, x.len(), || rsnorm_core::act::selu_backward(&gv, &xv, &dv))?;
        Ok(dx.into_any())
    })
}
