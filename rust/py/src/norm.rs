//! Bindings of the row-wise normalizations: layer_norm, rms_norm and their fused residual adds.

use crate::dispatch::{
    detached, float_array, memory_overlaps, output, param, param_slice, rows_mut, rows_ref,
    same_as_x, shape_str, unaliased, with_float_array, Storage,
};
use crate::errors::{compute_sized, value_error, Result};
use numpy::{PyArray, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rsnorm_core::layout::DimVec;
use rsnorm_core::norm::{self, RowStats};
use rsnorm_core::Float;

/// Number of trailing dims `normalized_shape` names, after checking they are x's last dims.
/// `None` means the last dim.
pub(crate) fn normalized_ndim(
    op: &str,
    x_shape: &[usize],
    normalized_shape: Option<&Bound<'_, PyAny>>,
) -> Result<usize> {
    // Inline (no allocation): this runs on every LayerNorm and RMSNorm call.
    let dims: DimVec<i64> = match normalized_shape {
        None => match x_shape.last() {
            Some(&n) => DimVec::from_elem(n as i64, 1),
            None => {
                return Err(value_error(format!(
                    "{op}: x is 0-dimensional; it needs a dim to normalize over"
                )))
            }
        },
        Some(obj) => match obj.extract::<i64>() {
            Ok(n) => DimVec::from_elem(n, 1),
            Err(_) => DimVec::from_vec(obj.extract::<Vec<i64>>().map_err(|_| {
                value_error(format!(
                    "{op}: normalized_shape must be an int or a sequence of ints, got {obj}"
                ))
            })?),
        },
    };
    let matches = !dims.is_empty()
        && dims.len() <= x_shape.len()
        && dims
            .iter()
            .zip(&x_shape[x_shape.len() - dims.len()..])
            .all(|(&d, &s)| d >= 0 && d as usize == s);
    if !matches {
        return Err(value_error(format!(
            "{op}: normalized_shape {:?} does not match the last dims of x, whose shape is {}",
            dims,
            shape_str(x_shape)
        )));
    }
    Ok(dims.len())
}

/// Shape of per-row statistics as PyTorch returns them: x's outer dims, then 1 per normalized dim.
pub(crate) fn stats_shape(x_shape: &[usize], inner_ndim: usize) -> Vec<usize> {
    let cut = x_shape.len() - inner_ndim;
    x_shape[..cut]
        .iter()
        .copied()
        .chain(std::iter::repeat_n(1, inner_ndim))
        .collect()
}

fn stats_array<'py, S: Storage>(
    py: Python<'py>,
    values: impl Iterator<Item = f64>,
    shape: &[usize],
) -> Result<Bound<'py, PyArrayDyn<S::Compute>>> {
    let data: Vec<S::Compute> = values.map(<S::Compute as Float>::from_f64).collect();
    Ok(PyArray::from_vec(py, data).reshape(shape)?)
}

fn no_overlap<S: Storage>(
    op: &str,
    a: &Bound<'_, PyArrayDyn<S>>,
    b: &Bound<'_, PyArrayDyn<S>>,
) -> Result<()> {
    let disjoint = !memory_overlaps(a, b);
    if disjoint {
        Ok(())
    } else {
        Err(value_error(format!(
            "{op}: out and residual_out share memory"
        )))
    }
}

/// LayerNorm over the last `len(normalized_shape)` dims (None: the last dim), as
/// torch.nn.functional.layer_norm: (x − mean) / sqrt(var + eps) · weight + bias, biased variance.
/// `out` may be x (in place). `return_stats=True` returns (y, mean, rstd) shaped like x's outer
/// dims followed by ones (torch.native_layer_norm).
#[pyfunction]
#[pyo3(signature = (x, normalized_shape=None, weight=None, bias=None, eps=1e-5, out=None, return_stats=false))]
pub(crate) fn layer_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array("layer_norm", "x", x)?, x => {
        layer_norm_typed(py, x, normalized_shape, weight, bias, eps, out, return_stats)
    })
}

fn layer_norm_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "layer_norm";
    let shape = x.shape().to_vec();
    let k = normalized_ndim(OP, &shape, normalized_shape)?;
    let norm_shape = &shape[shape.len() - k..];
    let weight = param::<S>(py, OP, "weight", weight, norm_shape)?;
    let bias = param::<S>(py, OP, "bias", bias, norm_shape)?;
    let y = output::<S>(py, OP, "out", out, &shape)?;
    let outputs = [y.as_untyped()];
    let (weight, bias) = (detached(weight, &outputs)?, detached(bias, &outputs)?);
    let x = unaliased(x, &[&y])?;
    let (xv, yv) = (rows_ref(&x, k), rows_mut(&y, k));
    let (w, b) = (param_slice(weight.as_ref()), param_slice(bias.as_ref()));
    let mut stats = vec![RowStats::default(); if return_stats { xv.rows().n_rows() } else { 0 }];
    compute_sized(py, x.len(), || {
        norm::layer_norm(&xv, &yv, w, b, eps, &mut stats)
    })?;
    if !return_stats {
        return Ok(y.into_any());
    }
    let sshape = stats_shape(&shape, k);
    let mean = stats_array::<S>(py, stats.iter().map(|s| s.mean), &sshape)?;
    let rstd = stats_array::<S>(py, stats.iter().map(|s| s.rstd), &sshape)?;
    Ok(PyTuple::new(py, [y.into_any(), mean.into_any(), rstd.into_any()])?.into_any())
}

/// RMSNorm over the last `len(normalized_shape)` dims, as torch.nn.functional.rms_norm:
/// x / sqrt(mean(x²) + eps) · weight; eps None is the input dtype's machine epsilon.
/// `return_stats=True` returns (y, rstd).
#[pyfunction]
#[pyo3(signature = (x, normalized_shape=None, weight=None, eps=None, out=None, return_stats=false))]
pub(crate) fn rms_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
    eps: Option<f64>,
    out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array("rms_norm", "x", x)?, x => {
        rms_norm_typed(py, x, normalized_shape, weight, eps, out, return_stats)
    })
}

fn rms_norm_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
    eps: Option<f64>,
    out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "rms_norm";
    let eps = eps.unwrap_or(S::EPSILON);
    let shape = x.shape().to_vec();
    let k = normalized_ndim(OP, &shape, normalized_shape)?;
    let weight = param::<S>(py, OP, "weight", weight, &shape[shape.len() - k..])?;
    let y = output::<S>(py, OP, "out", out, &shape)?;
    let weight = detached(weight, &[y.as_untyped()])?;
    let x = unaliased(x, &[&y])?;
    let (xv, yv) = (rows_ref(&x, k), rows_mut(&y, k));
    let w = param_slice(weight.as_ref());
    let mut rstd = vec![0.0f64; if return_stats { xv.rows().n_rows() } else { 0 }];
    compute_sized(py, x.len(), || norm::rms_norm(&xv, &yv, w, eps, &mut rstd))?;
    if !return_stats {
        return Ok(y.into_any());
    }
    let rstd = stats_array::<S>(py, rstd.into_iter(), &stats_shape(&shape, k))?;
    Ok(PyTuple::new(py, [y.into_any(), rstd.into_any()])?.into_any())
}

/// Residual add fused with LayerNorm in one pass over memory: returns (layer_norm(x + residual),
/// x + residual); with `return_stats=True` also mean and rstd. `out` may be x and `residual_out`
/// may be residual (in place).
#[pyfunction]
#[pyo3(signature = (x, residual, weight=None, bias=None, eps=1e-5, normalized_shape=None, out=None,
                    residual_out=None, return_stats=false))]
pub(crate) fn add_layer_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    residual: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    eps: f64,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
    residual_out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let (params, eps) = ((weight, bias), Some(eps));
    let fused = Fused {
        residual,
        params,
        eps,
        normalized_shape,
        out,
        residual_out,
        return_stats,
    };
    with_float_array!(float_array("add_layer_norm", "x", x)?, x => {
        add_norm_typed(py, AddNorm::Layer, x, fused)
    })
}

/// Residual add fused with RMSNorm in one pass over memory: returns (rms_norm(x + residual),
/// x + residual); with `return_stats=True` also rstd.
#[pyfunction]
#[pyo3(signature = (x, residual, weight=None, eps=None, normalized_shape=None, out=None,
                    residual_out=None, return_stats=false))]
pub(crate) fn add_rms_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    residual: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    eps: Option<f64>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
    residual_out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let params = (weight, None);
    let fused = Fused {
        residual,
        params,
        eps,
        normalized_shape,
        out,
        residual_out,
        return_stats,
    };
    with_float_array!(float_array("add_rms_norm", "x", x)?, x => {
        add_norm_typed(py, AddNorm::Rms, x, fused)
    })
}

/// Arguments the two fused residual-add norms share.
struct Fused<'a, 'py> {
    residual: &'a Bound<'py, PyAny>,
    /// weight and bias (always None for RMSNorm)
    params: (Option<&'a Bound<'py, PyAny>>, Option<&'a Bound<'py, PyAny>>),
    /// None: the dtype's machine epsilon (RMSNorm's default)
    eps: Option<f64>,
    normalized_shape: Option<&'a Bound<'py, PyAny>>,
    out: Option<&'a Bound<'py, PyAny>>,
    residual_out: Option<&'a Bound<'py, PyAny>>,
    return_stats: bool,
}

/// The norm a fused residual add applies.
#[derive(Clone, Copy, PartialEq)]
enum AddNorm {
    Layer,
    Rms,
}

impl AddNorm {
    fn op(self) -> &'static str {
        match self {
            AddNorm::Layer => "add_layer_norm",
            AddNorm::Rms => "add_rms_norm",
        }
    }

    /// The statistics the norm returns: (mean, rstd) for LayerNorm, rstd for RMSNorm.
    fn stat_columns(self, stats: &[RowStats], rstd: Vec<f64>) -> Vec<Vec<f64>> {
        match self {
            AddNorm::Layer => vec![
                stats.iter().map(|s| s.mean).collect(),
                stats.iter().map(|s| s.rstd).collect(),
            ],
            AddNorm::Rms => vec![rstd],
        }
    }
}

/// Both fused adds.
fn add_norm_typed<'py, S: Storage>(
    py: Python<'py>,
    kind: AddNorm,
    x: Bound<'py, PyArrayDyn<S>>,
    fused: Fused<'_, 'py>,
) -> Result<Bound<'py, PyAny>> {
    let (op, eps, (weight, bias)) = (kind.op(), fused.eps.unwrap_or(S::EPSILON), fused.params);
    let shape = x.shape().to_vec();
    let k = normalized_ndim(op, &shape, fused.normalized_shape)?;
    let norm_shape = &shape[shape.len() - k..];
    let residual = same_as_x::<S>(op, "residual", fused.residual, &shape)?;
    let weight = param::<S>(py, op, "weight", weight, norm_shape)?;
    let bias = param::<S>(py, op, "bias", bias, norm_shape)?;
    let y = output::<S>(py, op, "out", fused.out, &shape)?;
    let sum = output::<S>(py, op, "residual_out", fused.residual_out, &shape)?;
    no_overlap(op, &y, &sum)?;
    let outputs = [y.as_untyped(), sum.as_untyped()];
    let (weight, bias) = (detached(weight, &outputs)?, detached(bias, &outputs)?);
    let x = unaliased(x, &[&y, &sum])?;
    let residual = unaliased(residual, &[&y, &sum])?;
    let (xv, rv) = (rows_ref(&x, k), rows_ref(&residual, k));
    let (yv, sv) = (rows_mut(&y, k), rows_mut(&sum, k));
    let (w, b) = (param_slice(weight.as_ref()), param_slice(bias.as_ref()));
    let n_stats = usize::from(fused.return_stats) * xv.rows().n_rows();
    let (mut stats, mut rstd) = (vec![RowStats::default(); n_stats], vec![0.0f64; n_stats]);
    compute_sized(py, x.len(), || match kind {
        AddNorm::Layer => norm::add_layer_norm(&xv, &rv, &yv, &sv, w, b, eps, &mut stats),
        AddNorm::Rms => norm::add_rms_norm(&xv, &rv, &yv, &sv, w, eps, &mut rstd),
    })?;
    let mut result = vec![y.into_any(), sum.into_any()];
    if fused.return_stats {
        let columns = kind.stat_columns(&stats, rstd);
        result.extend(stats_arrays::<S>(py, columns, &stats_shape(&shape, k))?);
    }
    Ok(PyTuple::new(py, result)?.into_any())
}

/// Per-row statistics (each a column of values) as arrays of the compute type.
fn stats_arrays<'py, S: Storage>(
    py: Python<'py>,
    columns: Vec<Vec<f64>>,
    shape: &[usize],
) -> Result<Vec<Bound<'py, PyAny>>> {
    let array = |values: Vec<f64>| Ok(stats_array::<S>(py, values.into_iter(), shape)?.into_any());
    columns.into_iter().map(array).collect()
}
