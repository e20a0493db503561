//! Bindings of the remaining forward ops: selu, local_response_norm, weight_norm, normalize,
//! l2_normalize,
//! the mergeable statistics moments / merge_moments, and the AIC / BIC criteria.

use crate::dispatch::{
    aligned_copy, array_mut, array_ref, float_array, output, param, param_slice, resolve_axis,
    rows_mut, rows_ref, shape_str, unaliased, with_float_array, Storage,
};
use crate::errors::{compute, compute_sized, value_error, Result};
use numpy::{PyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rsnorm_core::layout::Values;
use rsnorm_core::norm::channels::RowAffine;
use rsnorm_core::norm::lp_normalize as lp;
use rsnorm_core::norm::lrn::{self, Lrn};
use rsnorm_core::norm::weight_norm as wn;
use rsnorm_core::reduce::{merge_columns, Moments};
use rsnorm_core::selection;
use rsnorm_core::statistics;
use rsnorm_core::Float;

/// SELU, elementwise: λ·x for x > 0, λ·α·(eˣ − 1) otherwise (torch.nn.functional.selu).
#[pyfunction]
#[pyo3(signature = (x, out=None))]
pub(crate) fn selu<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array("selu", "x", x)?, x => selu_typed(py, x, out))
}

fn selu_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let shape = x.shape().to_vec();
    let y = output::<S>(py, "selu", "out", out, &shape)?;
    let x = unaliased(x, &[&y])?;
    let inner = usize::from(!shape.is_empty());
    let (xv, yv) = (rows_ref(&x, inner), rows_mut(&y, inner));
    compute_sized(py, x.len(), || rsnorm_core::act::selu(&xv, &yv))?;
    Ok(y.into_any())
}

/// Local response normalization across channels of (N, C, ...) input, PyTorch's convention:
/// y = x / (k + alpha/size · Σ x²)^beta over `size` neighbouring channels. TensorFlow/AlexNet's
/// alpha omits the 1/size: pass alpha_tf · size to reproduce them.
#[pyfunction]
#[pyo3(signature = (x, size, alpha=1e-4, beta=0.75, k=1.0, out=None))]
pub(crate) fn local_response_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    size: i64,
    alpha: f64,
    beta: f64,
    k: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let params = Lrn::new(size, alpha, beta, k)?;
    with_float_array!(float_array("local_response_norm", "x", x)?, x => lrn_typed(py, x, params, out))
}

fn lrn_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    params: Lrn,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "local_response_norm";
    let shape = x.shape().to_vec();
    if shape.len() < 3 {
        return Err(value_error(format!(
            "{OP}: x must be (N, C, d1, ...) with 3 or more dims, got shape {}",
            shape_str(&shape)
        )));
    }
    let y = output::<S>(py, OP, "out", out, &shape)?;
    if shape.contains(&0) {
        return Ok(y.into_any());
    }
    let x = unaliased(x, &[&y])?;
    let inner = shape.len() - 2;
    let (xv, yv) = (rows_ref(&x, inner), rows_mut(&y, inner));
    let channels = shape[1];
    compute(py, || lrn::local_response_norm(&xv, &yv, channels, params))?;
    Ok(y.into_any())
}

/// Weight normalization: w = g · v / ‖v‖, the norm over every dim but `dim` (None: over all of v).
/// g has `v.shape[dim]` elements, shaped (out,) or PyTorch's (out, 1, ...).
#[pyfunction]
#[pyo3(signature = (v, g, dim=Some(0), out=None))]
#[pyo3(text_signature = "(v, g, dim=0, out=None)")]
pub(crate) fn weight_norm<'py>(
    py: Python<'py>,
    v: &Bound<'py, PyAny>,
    g: &Bound<'py, PyAny>,
    dim: Option<i64>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array("weight_norm", "v", v)?, v => weight_norm_typed(py, v, g, dim, out))
}

fn weight_norm_typed<'py, S: Storage>(
    py: Python<'py>,
    v: Bound<'py, PyArrayDyn<S>>,
    g: &Bound<'py, PyAny>,
    dim: Option<i64>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "weight_norm";
    let shape = v.shape().to_vec();
    let dim = dim.map(|d| resolve_axis(OP, d, shape.len())).transpose()?;
    let slices = dim.map_or(1, |d| shape[d]);
    let g_arr = crate::dispatch::as_ndarray(g)?;
    if g_arr.len() != slices {
        return Err(value_error(format!(
            "{OP}: g has shape {} ({} elements), expected {slices} (v.shape[dim] for v of shape {})",
            shape_str(g_arr.shape()),
            g_arr.len(),
            shape_str(&shape)
        )));
    }
    // A 1-D g as it is: the reshape call cost ~0.3 µs of a 4 µs (64, 768) call.
    let flat_g = if g_arr.shape() == [slices] {
        g_arr.into_any()
    } else {
        g_arr.call_method1("reshape", (slices,))?
    };
    let g_param = param::<S>(py, OP, "g", Some(&flat_g), &[slices])?;
    let g_values: Vec<f64> = param_slice(g_param.as_ref())
        .unwrap_or_default()
        .iter()
        .map(|v| v.to_f64())
        .collect();
    let w = output::<S>(py, OP, "out", out, &shape)?;
    let v = unaliased(v, &[&w])?;
    let leading: Vec<usize> = dim.into_iter().collect();
    let inner = shape.len() - leading.len();
    let vv = array_ref(&v).with_leading(&leading).rows(inner);
    let wv = array_mut(&w).with_leading(&leading).into_rows(inner);
    compute(py, || wn::weight_norm(&vv, &wv, &g_values))?;
    Ok(w.into_any())
}

/// Each row (last dim) divided by max(‖row‖₂, eps): torch.nn.functional.normalize(x, dim=-1).
#[pyfunction]
#[pyo3(signature = (x, eps=1e-12, out=None))]
pub(crate) fn l2_normalize<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array("l2_normalize", "x", x)?, x => {
        let shape = x.shape().to_vec();
        if shape.is_empty() {
            return Err(value_error("l2_normalize: x is 0-dimensional; it needs a dim to normalize over"));
        }
        let y = output(py, "l2_normalize", "out", out, &shape)?;
        let x = unaliased(x, &[&y])?;
        let (xv, yv) = (rows_ref(&x, 1), rows_mut(&y, 1));
        compute(py, || lp::l2_normalize(&xv, &yv, eps))?;
        Ok(y.into_any())
    })
}

/// Each slice along `axis` divided by max(‖slice‖_p, eps): torch.nn.functional.normalize(x, p, dim,
/// eps); eps = 0 is ONNX's LpNormalization.
#[pyfunction]
#[pyo3(
    signature = (x, p=2.0, axis=-1, eps=1e-12, out=None),
    text_signature = "(x, p=2.0, axis=-1, eps=1e-12, out=None)"
)]
pub(crate) fn normalize<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    p: f64,
    axis: i64,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array("normalize", "x", x)?, x => {
        let y = output(py, "normalize", "out", out, x.shape())?;
        let x = unaliased(x, &[&y])?;
        let (xv, yv) = (array_ref(&x), array_mut(&y));
        compute(py, || lp::normalize(&xv, &yv, p, axis, eps))?;
        Ok(y.into_any())
    })
}

/// `axis` of the statistics functions: None, an int or a sequence of ints.
fn stat_axes(op: &str, axis: Option<&Bound<'_, PyAny>>) -> Result<Option<Vec<i64>>> {
    axis.map(|a| {
        a.extract::<i64>()
            .map(|v| vec![v])
            .or_else(|_| a.extract::<Vec<i64>>())
            .map_err(|_| {
                value_error(format!(
                    "{op}: axis must be None, an int or a sequence of ints, got {a}"
                ))
            })
    })
    .transpose()
}

/// (count, mean, M2) over `axis` (None: all), in float64: mergeable partial statistics (Chan et
/// al.). `count` is an int64 array shaped like `mean`. With `mean_lo`, a fourth array: the
/// rounding error of `mean` (see `partial_moments`).
#[pyfunction]
#[pyo3(signature = (x, axis=None, mean_lo=false))]
pub(crate) fn moments<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    axis: Option<&Bound<'py, PyAny>>,
    mean_lo: bool,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "moments";
    let axes = stat_axes(OP, axis)?;
    // Float32 and float16 values are read as f64 by the core (no f64 copy of the array).
    let r = with_float_array!(float_array(OP, "x", x)?, x => {
        let xv = array_ref(&x);
        compute(py, || statistics::moments(&xv, axes.as_deref()))?
    });
    let counts = vec![r.count as i64; r.moments.len()];
    let mean = r.moments.iter().map(|m| m.mean).collect();
    let m2 = r.moments.iter().map(Moments::m2).collect();
    let triple = moments_tuple(py, (counts, mean, m2), &r.shape)?;
    if !mean_lo {
        return Ok(triple);
    }
    let lo = r.moments.iter().map(|m| m.mean_lo).collect();
    let lo = PyArray::from_vec(py, lo)
        .reshape(r.shape.as_slice())?
        .into_any();
    Ok(triple.add(PyTuple::new(py, [lo])?)?)
}

/// The union of many partials at once: `count`, `mean`, `m2`, `mean_lo` are (parts, positions)
/// arrays, merged over the parts as one tree per position in Rust (no Python loop).
#[pyfunction]
pub(crate) fn merge_partials<'py>(
    py: Python<'py>,
    count: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    m2: &Bound<'py, PyAny>,
    mean_lo: &Bound<'py, PyAny>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "merge_moments";
    let mut shape: Option<Vec<usize>> = None;
    let mut fields = Vec::with_capacity(4);
    for (name, arr) in [
        ("count", count),
        ("mean", mean),
        ("m2", m2),
        ("mean_lo", mean_lo),
    ] {
        let arr = aligned_copy(arr, numpy::dtype::<f64>(py).as_any())
            .map_err(|_| value_error(format!("{OP}: {name} must be an array of numbers")))?
            .cast_into::<PyArrayDyn<f64>>()?;
        let this = arr.shape().to_vec();
        if this.len() != 2 || shape.as_ref().is_some_and(|s| *s != this) {
            return Err(value_error(format!(
                "{OP}: {name} has shape {}, expected (parts, positions) like count",
                shape_str(&this)
            )));
        }
        shape = Some(this);
        fields.push(arr.to_vec()?);
    }
    let columns = shape.map_or(0, |s| s[1]);
    let parts: Vec<Moments> = (0..fields[0].len())
        .map(|i| Moments {
            mean_lo: fields[3][i],
            ..Moments::new(fields[0][i], fields[1][i], fields[2][i])
        })
        .collect();
    let merged = compute(py, || statistics::merge_parts(&parts, columns))?;
    let counts = merged.iter().map(|m| m.count as i64).collect();
    let mean = merged.iter().map(|m| m.mean).collect();
    let m2 = merged.iter().map(Moments::m2).collect();
    let lo = merged.iter().map(|m| m.mean_lo).collect();
    let triple = moments_tuple(py, (counts, mean, m2), &[columns])?;
    Ok(triple.add(PyTuple::new(py, [PyArray::from_vec(py, lo).into_any()])?)?)
}

/// y = (x − mean) · scale + shift with float64 statistics per position of the dims `axis` keeps
/// (as `moments(x, axis)` gives them; each broadcast to that shape), in x's dtype.
#[pyfunction]
#[pyo3(signature = (x, mean, scale, shift=None, axis=None, out=None))]
pub(crate) fn apply_statistics<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    mean: &Bound<'py, PyAny>,
    scale: &Bound<'py, PyAny>,
    shift: Option<&Bound<'py, PyAny>>,
    axis: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "apply_statistics";
    let axes = stat_axes(OP, axis)?;
    with_float_array!(float_array(OP, "x", x)?, x => {
        let shape = x.shape().to_vec();
        let kept = statistics::kept_shape(OP, &shape, axes.as_deref())?;
        let mut values = Vec::with_capacity(3);
        for (name, v) in [("mean", Some(mean)), ("scale", Some(scale)), ("shift", shift)] {
            values.push(match v {
                None => vec![0.0; kept.iter().product()],
                Some(v) => stat_values(py, OP, name, v, &kept)?,
            });
        }
        let params: Vec<RowAffine> = (0..values[0].len())
            .map(|k| RowAffine { mean: values[0][k], scale: values[1][k], shift: values[2][k] })
            .collect();
        let y = output(py, OP, "out", out, &shape)?;
        let x = unaliased(x, &[&y])?;
        let (xv, yv) = (array_ref(&x), array_mut(&y));
        compute_sized(py, x.len(), || statistics::apply_statistics(&xv, yv, axes.as_deref(), &params))?;
        Ok(y.into_any())
    })
}

/// A statistic of `apply_statistics` as float64 values of the kept shape (broadcast to it). A
/// native C-contiguous float64 or float32 array of that shape is read in place and a Python float
/// repeated: through NumPy (`broadcast_to`, a cast, a copy out) each statistic had cost ~2 µs, and
/// a (8, 16) call 7.3 µs where NumPy's `(x - mean) * scale` takes 1.5.
fn stat_values(
    py: Python<'_>,
    op: &str,
    name: &str,
    v: &Bound<'_, PyAny>,
    kept: &[usize],
) -> Result<Vec<f64>> {
    if v.is_exact_instance_of::<pyo3::types::PyFloat>() {
        return Ok(vec![v.extract::<f64>()?; kept.iter().product()]);
    }
    let arr = crate::dispatch::as_ndarray(v)?;
    if arr.shape() == kept {
        if let Some(values) = crate::dispatch::native_f64_values::<numpy::IxDyn>(v) {
            return Ok(values);
        }
    }
    if !matches!(arr.dtype().kind(), b'f' | b'i' | b'u') {
        return Err(crate::errors::type_error(format!(
            "{op}: {name} must hold real numbers, got dtype {}",
            arr.dtype()
        )));
    }
    let wide = py
        .import("numpy")?
        .call_method1("broadcast_to", (arr.as_any(), PyTuple::new(py, kept)?))
        .map_err(|_| {
            value_error(format!(
                "{op}: {name} has shape {}, which does not broadcast to {} (x's shape without axis)",
                shape_str(arr.shape()),
                shape_str(kept)
            ))
        })?;
    let wide = aligned_copy(&wide, numpy::dtype::<f64>(py).as_any())?;
    Ok(wide.cast_into::<PyArrayDyn<f64>>()?.to_vec()?)
}

/// (count, mean, M2) as NumPy arrays of `shape`: counts as int64, as `moments` returns them.
fn moments_tuple<'py>(
    py: Python<'py>,
    (counts, mean, m2): (Vec<i64>, Vec<f64>, Vec<f64>),
    shape: &[usize],
) -> Result<Bound<'py, PyAny>> {
    let counts = PyArray::from_vec(py, counts).reshape(shape)?.into_any();
    let mean = PyArray::from_vec(py, mean).reshape(shape)?.into_any();
    let m2 = PyArray::from_vec(py, m2).reshape(shape)?.into_any();
    Ok(PyTuple::new(py, [counts, mean, m2])?.into_any())
}

/// One argument of `merge_moments`: a (count, mean, m2) triple of array-likes.
pub(crate) struct Triple<'py>([Bound<'py, PyAny>; 3]);

impl<'a, 'py> FromPyObject<'a, 'py> for Triple<'py> {
    type Error = crate::errors::Error;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> Result<Self> {
        let (c, m, q) = obj.extract().map_err(|_| {
            value_error("merge_moments: each argument must be a (count, mean, m2) triple")
        })?;
        Ok(Triple([c, m, q]))
    }
}

/// The six arrays read in place when they already agree: one shape, C order, aligned, native
/// float64 or int64 (what `moments` returns). None sends the call through `broadcast_f64`
/// (broadcasting, conversions): those NumPy calls had cost ~10 µs, 3× NumPy's whole merge of 64
/// positions.
fn same_shape<'py>(parts: &[Bound<'py, PyAny>]) -> Option<(Vec<usize>, Vec<Column<'py>>)> {
    let mut shape: Option<Vec<usize>> = None;
    let mut columns = Vec::with_capacity(parts.len());
    for part in parts {
        let column = Column::of(part)?;
        let s = column.shape();
        if shape.as_ref().is_some_and(|known| known.as_slice() != s) {
            return None;
        }
        shape = Some(s.to_vec());
        columns.push(column);
    }
    Some((shape?, columns))
}

/// The six arrays of two triples broadcast together, as float64 values, and their shape.
fn broadcast_f64(
    py: Python<'_>,
    parts: &[Bound<'_, PyAny>],
) -> Result<(Vec<usize>, Vec<Vec<f64>>)> {
    let broadcast = py
        .import("numpy")?
        .call_method1("broadcast_arrays", PyTuple::new(py, parts)?)?;
    let mut shape = Vec::new();
    let mut values = Vec::with_capacity(parts.len());
    for arr in broadcast.try_iter()? {
        let arr = aligned_copy(&arr?, numpy::dtype::<f64>(py).as_any())?;
        let arr = arr.cast_into::<PyArrayDyn<f64>>()?;
        shape = arr.shape().to_vec();
        values.push(arr.to_vec()?);
    }
    Ok((shape, values))
}

/// Merges two (count, mean, M2) triples elementwise (Chan, Golub & LeVeque): the statistics of
/// the union of the two sets. Shapes broadcast.
#[pyfunction]
pub(crate) fn merge_moments<'py>(
    py: Python<'py>,
    a: Triple<'py>,
    b: Triple<'py>,
) -> Result<Bound<'py, PyAny>> {
    let parts: Vec<Bound<'py, PyAny>> = a.0.into_iter().chain(b.0).collect();
    let copies;
    let columns;
    let (shape, values): (Vec<usize>, Vec<Values<'_>>) =
        if let Some((shape, read)) = same_shape(&parts) {
            columns = read;
            let values = columns.iter().map(Column::values).collect::<Result<_>>()?;
            (shape, values)
        } else {
            let (shape, broadcast) = broadcast_f64(py, &parts)?;
            copies = broadcast;
            (shape, copies.iter().map(|v| Values::F64(v)).collect())
        };
    let [na, ma, qa, nb, mb, qb] = values[..] else {
        unreachable!("two triples are six arrays")
    };
    // SAFETY: the kernel writes every element before the arrays are returned; on an error they
    // are dropped unread.
    let (count, mean, m2) = unsafe {
        (
            PyArrayDyn::<i64>::new(py, shape.as_slice(), false),
            PyArrayDyn::<f64>::new(py, shape.as_slice(), false),
            PyArrayDyn::<f64>::new(py, shape.as_slice(), false),
        )
    };
    {
        let (mut c, mut m, mut q) = (count.readwrite(), mean.readwrite(), m2.readwrite());
        let out = (c.as_slice_mut()?, m.as_slice_mut()?, q.as_slice_mut()?);
        compute(py, || merge_columns([na, ma, qa], [nb, mb, qb], out))?;
    }
    Ok(PyTuple::new(py, [count.into_any(), mean.into_any(), m2.into_any()])?.into_any())
}

/// An array read in place as one operand of an elementwise kernel: C-contiguous, aligned, native
/// float64 or int64.
enum Column<'py> {
    F64(numpy::PyReadonlyArrayDyn<'py, f64>),
    I64(numpy::PyReadonlyArrayDyn<'py, i64>),
}

impl<'py> Column<'py> {
    /// `obj` when it is such an array (None: another dtype or layout, or written elsewhere now).
    fn of(obj: &Bound<'py, PyAny>) -> Option<Self> {
        fn read<'py, T: numpy::Element>(
            obj: &Bound<'py, PyAny>,
        ) -> Option<numpy::PyReadonlyArrayDyn<'py, T>> {
            let arr = obj.cast::<PyArrayDyn<T>>().ok()?;
            let usable = arr.is_c_contiguous() && arr.as_untyped().is_aligned();
            usable.then(|| arr.try_readonly().ok())?
        }
        read::<f64>(obj)
            .map(Column::F64)
            .or_else(|| read::<i64>(obj).map(Column::I64))
    }

    fn shape(&self) -> &[usize] {
        match self {
            Column::F64(a) => a.shape(),
            Column::I64(a) => a.shape(),
        }
    }

    fn values(&self) -> Result<Values<'_>> {
        Ok(match self {
            Column::F64(a) => Values::F64(a.as_slice()?),
            Column::I64(a) => Values::I64(a.as_slice()?),
        })
    }
}

/// An operand of a model-selection criterion: a 1-D int64 or float64 array read in place, or a
/// plain Python number (one model's value, without NumPy's array round trip: a scalar AIC had
/// taken 5.8 µs, where NumPy's formula on a float takes 1.3).
enum Operand<'py> {
    Array(Column<'py>),
    F64(f64),
    I64(i64),
}

impl Operand<'_> {
    /// The values of an array (None: a number, one value that broadcasts).
    fn models(&self) -> Option<usize> {
        match self {
            Operand::Array(column) => Some(column.shape()[0]),
            Operand::F64(_) | Operand::I64(_) => None,
        }
    }

    fn values(&self) -> Result<Values<'_>> {
        Ok(match self {
            Operand::Array(column) => column.values()?,
            Operand::F64(v) => Values::F64(std::slice::from_ref(v)),
            Operand::I64(v) => Values::I64(std::slice::from_ref(v)),
        })
    }
}

/// `obj` as an operand when it is a Python `float` or `int` (exactly those types: a bool is
/// refused, as NumPy's bool dtype is), else None. An int beyond int64 is read as NumPy reads it:
/// a uint64 as float64, anything larger refused as the object dtype it becomes.
fn number_operand<'py>(
    op: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> Result<Option<Operand<'py>>> {
    if obj.is_exact_instance_of::<pyo3::types::PyFloat>() {
        return Ok(Some(Operand::F64(obj.extract()?)));
    }
    if !obj.is_exact_instance_of::<pyo3::types::PyInt>() {
        return Ok(None);
    }
    if let Ok(v) = obj.extract::<i64>() {
        return Ok(Some(Operand::I64(v)));
    }
    if let Ok(v) = obj.extract::<u64>() {
        return Ok(Some(Operand::F64(v as f64)));
    }
    Err(crate::errors::type_error(format!(
        "{op}: {name} has dtype object; expected real numbers"
    )))
}

/// `obj` as an operand read as it is: a Python number or a 1-D int64 or float64 array (None:
/// anything else, which the Python layer converts).
fn direct_operand<'py>(
    op: &str,
    name: &str,
    obj: &Bound<'py, PyAny>,
) -> Result<Option<Operand<'py>>> {
    if let Some(number) = number_operand(op, name, obj)? {
        return Ok(Some(number));
    }
    Ok(Column::of(obj)
        .filter(|column| column.shape().len() == 1)
        .map(Operand::Array))
}

/// `obj` as an operand: a 1-D int64 or float64 array, or a Python number.
fn criterion_operand<'py>(op: &str, name: &str, obj: &Bound<'py, PyAny>) -> Result<Operand<'py>> {
    direct_operand(op, name, obj)?.ok_or_else(|| {
        crate::errors::type_error(format!(
            "{op}: {name} must be a 1-D int64 or float64 array, or a Python float or int"
        ))
    })
}

/// AIC (without `n`) or BIC of `models` models. The operands are flat C-contiguous int64 or
/// float64 arrays of one value or one per model, or Python numbers (one value): the Python layer
/// checks dtypes and broadcasts.
#[pyfunction]
#[pyo3(signature = (log_likelihood, k, n, models))]
pub(crate) fn information_criterion<'py>(
    py: Python<'py>,
    log_likelihood: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    n: Option<&Bound<'py, PyAny>>,
    models: usize,
) -> Result<Bound<'py, numpy::PyArray1<f64>>> {
    let op = if n.is_some() { "bic" } else { "aic" };
    let ll = criterion_operand(op, "log_likelihood", log_likelihood)?;
    let k = criterion_operand(op, "k", k)?;
    let n = n.map(|n| criterion_operand(op, "n", n)).transpose()?;
    criteria_array(py, (&ll, &k, n.as_ref()), models)
}

/// AIC (without `n`) or BIC where the operands need no conversion: a float when all are Python
/// numbers, an array of the models when they are numbers and 1-D int64 or float64 arrays of one
/// value or one per model; None otherwise (the Python layer converts and broadcasts them). A
/// scalar AIC had taken 5.8 µs through NumPy's conversions (NumPy's formula on a float: 1.3),
/// one over three models 9 µs.
#[pyfunction]
#[pyo3(signature = (log_likelihood, k, n))]
pub(crate) fn information_criterion_direct<'py>(
    py: Python<'py>,
    log_likelihood: &Bound<'py, PyAny>,
    k: &Bound<'py, PyAny>,
    n: Option<&Bound<'py, PyAny>>,
) -> Result<Option<Bound<'py, PyAny>>> {
    let op = if n.is_some() { "bic" } else { "aic" };
    let Some(ll) = direct_operand(op, "log_likelihood", log_likelihood)? else {
        return Ok(None);
    };
    let Some(k) = direct_operand(op, "k", k)? else {
        return Ok(None);
    };
    let n = match n {
        Some(n) => match direct_operand(op, "n", n)? {
            Some(n) => Some(n),
            None => return Ok(None),
        },
        None => None,
    };
    let operands = (&ll, &k, n.as_ref());
    let lens: Vec<usize> = [Some(&ll), Some(&k), n.as_ref()]
        .into_iter()
        .flatten()
        .filter_map(Operand::models)
        .collect();
    let models = lens.iter().copied().max();
    let Some(models) = models else {
        // Numbers only: one model, returned as a number.
        let mut out = [0.0];
        criteria(py, operands, &mut out)?;
        return Ok(Some(pyo3::types::PyFloat::new(py, out[0]).into_any()));
    };
    if lens.iter().any(|&len| len != 1 && len != models) {
        return Ok(None);
    }
    Ok(Some(criteria_array(py, operands, models)?.into_any()))
}

/// The criterion of `models` models as a new array.
fn criteria_array<'py>(
    py: Python<'py>,
    operands: Operands<'_, 'py>,
    models: usize,
) -> Result<Bound<'py, numpy::PyArray1<f64>>> {
    // SAFETY: the kernel writes every element before the array is returned; on an error it is
    // dropped unread.
    let result = unsafe { numpy::PyArray1::<f64>::new(py, models, false) };
    {
        let mut out = result.readwrite();
        criteria(py, operands, out.as_slice_mut()?)?;
    }
    Ok(result)
}

/// A criterion's log_likelihood, k and (BIC's) n.
type Operands<'a, 'py> = (&'a Operand<'py>, &'a Operand<'py>, Option<&'a Operand<'py>>);

/// AIC (without `n`) or BIC of each model into `out`, from operands of one value or one per
/// model.
fn criteria(py: Python<'_>, (ll, k, n): Operands<'_, '_>, out: &mut [f64]) -> Result<()> {
    let (ll, k) = (ll.values()?, k.values()?);
    let n = n.map(Operand::values).transpose()?;
    compute_sized(py, out.len(), || match n {
        None => selection::aic(ll, k, out),
        Some(n) => selection::bic(ll, k, n, out),
    })
}
