//! Bindings of rsnorm-gpu: the device array type and the ops on it. Python's `rsnorm.gpu` checks
//! that arguments are device arrays and calls these positionally; each parses, makes one
//! rsnorm-gpu call with the interpreter detached, and wraps.

use crate::args::Choice;
use crate::backward::out_entries;
use crate::errors::{type_error, Error, Result};
use crate::norm::{normalized_ndim, stats_shape};
use numpy::PyUntypedArrayMethods;
use numpy::{PyArray1, PyArrayMethods};
use pyo3::create_exception;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};
use rsnorm_core::norm::batch_norm::BatchNormOptions;
use rsnorm_core::norm::group_norm::GroupNormOptions;
use rsnorm_core::norm::instance_norm::InstanceNormOptions;
use rsnorm_core::softmax::Reduction;
use rsnorm_gpu::{
    ChannelKind, ClassTarget, CrossEntropy, DType, LossGrad, RowGrads, RowKind, RowNorm,
    RowNormBackward, RowNormOutput, StatsUse, Tensor,
};
use std::panic::{catch_unwind, AssertUnwindSafe};

create_exception!(
    _rsnorm,
    GpuError,
    PyRuntimeError,
    "The GPU refused or lost the work (validation, out of memory, device lost)."
);
create_exception!(
    _rsnorm,
    GpuUnavailableError,
    GpuError,
    "No GPU adapter: no Vulkan, Metal or DX12 driver (or loader) on this machine."
);

impl From<rsnorm_gpu::Error> for Error {
    fn from(err: rsnorm_gpu::Error) -> Self {
        let msg = err.to_string();
        Error::from(match err {
            rsnorm_gpu::Error::Unavailable(_) => GpuUnavailableError::new_err(msg),
            rsnorm_gpu::Error::Unsupported(_) => PyTypeError::new_err(msg),
            rsnorm_gpu::Error::Value(_) => PyValueError::new_err(msg),
            rsnorm_gpu::Error::Device(_) => GpuError::new_err(msg),
        })
    }
}

/// Runs GPU work with the interpreter detached; a panic becomes `GpuError`, never a crash.
fn run<T: Send>(py: Python<'_>, work: impl FnOnce() -> rsnorm_gpu::Result<T> + Send) -> Result<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::from(GpuError::new_err(
            "rsnorm internal error: a GPU call panicked",
        ))),
    }
}

/// An array in GPU memory (C-contiguous). `rsnorm.gpu.Array` wraps it.
#[pyclass(frozen, module = "rsnorm._rsnorm")]
pub(crate) struct GpuArray(Tensor);

fn dtype_of(name: &str) -> Result<DType> {
    match name {
        "float16" => Ok(DType::F16),
        "float32" => Ok(DType::F32),
        "float64" => Ok(DType::F64),
        other => Err(type_error(format!(
            "rsnorm.gpu: dtype {other} is not one the GPU computes with (float16, float32, float64)"
        ))),
    }
}

#[pymethods]
impl GpuArray {
    #[getter]
    fn shape<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyTuple>> {
        Ok(PyTuple::new(py, self.0.shape())?)
    }

    #[getter]
    fn dtype(&self) -> &'static str {
        self.0.dtype().name()
    }

    /// A NumPy array with the values (waits for the work that writes them).
    fn numpy<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyAny>> {
        let tensor = &self.0;
        let bytes = run(py, || tensor.to_bytes())?;
        Ok(PyArray1::from_vec(py, bytes)
            .call_method1("view", (tensor.dtype().name(),))?
            .call_method1("reshape", (PyTuple::new(py, tensor.shape())?,))?)
    }

    /// The same memory with another shape of as many elements.
    fn reshape(&self, shape: Vec<usize>) -> Result<GpuArray> {
        if shape.iter().product::<usize>() != self.0.len() {
            return Err(Error::from(PyValueError::new_err(format!(
                "reshape: cannot reshape an array of {} elements into shape {shape:?}",
                self.0.len()
            ))));
        }
        Ok(GpuArray(self.0.reshape(&shape)))
    }

    /// Copies `src`'s values into this array in place (same dtype and size).
    fn copy_from(&self, py: Python<'_>, src: PyRef<'_, GpuArray>) -> Result<()> {
        let (dst, src) = (&self.0, &src.0);
        run(py, || dst.copy_from(src))
    }

    /// Whether two arrays are the same device memory.
    fn same_memory(&self, other: &GpuArray) -> bool {
        self.0.same_memory(&other.0)
    }
}

/// Whether a GPU adapter can be opened (never raises).
#[pyfunction]
pub(crate) fn gpu_is_available(py: Python<'_>) -> bool {
    py.detach(|| catch_unwind(rsnorm_gpu::is_available).unwrap_or(false))
}

/// The adapter's name, backend, driver, limits and features.
#[pyfunction]
pub(crate) fn gpu_device_info(py: Python<'_>) -> Result<Bound<'_, PyDict>> {
    let pairs = run(py, rsnorm_gpu::device_info)?;
    let dict = PyDict::new(py);
    for (key, value) in pairs {
        dict.set_item(key, value)?;
    }
    Ok(dict)
}

/// A device array holding `data` (a C-contiguous uint8 view of an array of `shape` and `dtype`).
#[pyfunction]
pub(crate) fn gpu_upload(
    py: Python<'_>,
    data: &Bound<'_, PyArray1<u8>>,
    shape: Vec<usize>,
    dtype: &str,
) -> Result<GpuArray> {
    let dtype = dtype_of(dtype)?;
    let data = data.readonly();
    let bytes = data.as_slice()?;
    Ok(GpuArray(run(py, || {
        Tensor::from_bytes(bytes, &shape, dtype)
    })?))
}

/// An uninitialized device array.
#[pyfunction]
pub(crate) fn gpu_empty(py: Python<'_>, shape: Vec<usize>, dtype: &str) -> Result<GpuArray> {
    let dtype = dtype_of(dtype)?;
    Ok(GpuArray(run(py, || Tensor::empty(&shape, dtype))?))
}

/// A copy of `x` converted to `dtype` on the device.
#[pyfunction]
pub(crate) fn gpu_astype(py: Python<'_>, x: PyRef<'_, GpuArray>, dtype: &str) -> Result<GpuArray> {
    let (x, dtype) = (&x.0, dtype_of(dtype)?);
    Ok(GpuArray(run(py, || rsnorm_gpu::repeat(x, 1, dtype))?))
}

/// A point on the device's clock, recorded after the work recorded before it.
#[pyclass(frozen, module = "rsnorm._rsnorm")]
pub(crate) struct GpuTimestamp(rsnorm_gpu::Timestamp);

#[pymethods]
impl GpuTimestamp {
    /// The device's time at the stamp in nanoseconds (waits for the work before it).
    fn nanoseconds(&self, py: Python<'_>) -> Result<f64> {
        let stamp = &self.0;
        run(py, || stamp.nanoseconds())
    }
}

/// A timestamp after the work recorded so far, or None when the adapter has no timestamps.
#[pyfunction]
pub(crate) fn gpu_timestamp(py: Python<'_>) -> Result<Option<GpuTimestamp>> {
    Ok(run(py, rsnorm_gpu::Timestamp::record)?.map(GpuTimestamp))
}

/// Waits until the device has done all recorded work.
#[pyfunction]
pub(crate) fn gpu_synchronize(py: Python<'_>) -> Result<()> {
    run(py, rsnorm_gpu::synchronize)
}

type Arr<'a> = Option<PyRef<'a, GpuArray>>;

fn tensor<'a>(a: &'a Arr<'_>) -> Option<&'a Tensor> {
    a.as_ref().map(|a| &a.0)
}

fn wrap(py: Python<'_>, t: Tensor) -> Result<Bound<'_, PyAny>> {
    Ok(Bound::new(py, GpuArray(t))?.into_any())
}

/// `y`, or the tuple of `y` and the other outputs present.
fn outputs(py: Python<'_>, y: Tensor, rest: Vec<Tensor>) -> Result<Bound<'_, PyAny>> {
    if rest.is_empty() {
        return wrap(py, y);
    }
    let items = std::iter::once(y)
        .chain(rest)
        .map(|t| wrap(py, t))
        .collect::<Result<Vec<_>>>()?;
    Ok(PyTuple::new(py, items)?.into_any())
}

/// The arguments of a row normalization, as the CPU bindings take them.
struct RowArgs<'a, 'py> {
    op: &'static str,
    kind: RowKind,
    x: &'a GpuArray,
    normalized_shape: Option<&'a Bound<'py, PyAny>>,
    residual: Arr<'a>,
    weight: Arr<'a>,
    bias: Arr<'a>,
    eps: f64,
    out: Arr<'a>,
    residual_out: Arr<'a>,
    return_stats: bool,
}

impl RowArgs<'_, '_> {
    /// `(y[, sum][, mean][, rstd])` as the CPU op returns them: stats shaped like x's outer dims
    /// then ones (mean for LayerNorm only).
    fn run<'py>(&self, py: Python<'py>) -> Result<Bound<'py, PyAny>> {
        let op = self.op;
        let shape = self.x.0.shape();
        let inner_ndim = normalized_ndim(op, shape, self.normalized_shape)?;
        let inner = &shape[shape.len() - inner_ndim..];
        check_params(op, [("weight", &self.weight), ("bias", &self.bias)], inner)?;
        let row_len: usize = inner.iter().product();
        let rows: usize = shape[..shape.len() - inner_ndim].iter().product();
        let norm = RowNorm {
            op,
            kind: self.kind,
            x: &self.x.0,
            rows,
            row_len,
            residual: tensor(&self.residual),
            weight: tensor(&self.weight),
            bias: tensor(&self.bias),
            eps: self.eps,
            channels: None,
            out: tensor(&self.out),
            residual_out: tensor(&self.residual_out),
            stats: self.return_stats,
        };
        let RowNormOutput { y, sum, mean, rstd } = run(py, || norm.run())?;
        let stats = stats_shape(shape, inner_ndim);
        let mean = mean.filter(|_| self.kind == RowKind::Layer);
        let rest = sum
            .into_iter()
            .chain(mean.map(|m| m.reshape(&stats)))
            .chain(rstd.map(|r| r.reshape(&stats)))
            .collect();
        outputs(py, y, rest)
    }
}

/// Weight and bias have the normalized shape.
fn check_params(op: &str, params: [(&str, &Arr<'_>); 2], inner: &[usize]) -> Result<()> {
    for (name, p) in params {
        if let Some(p) = tensor(p).filter(|p| p.shape() != inner) {
            return Err(Error::from(PyValueError::new_err(format!(
                "{op}: {name} has shape {}, expected {} (the normalized shape)",
                rsnorm_core::error::shape_str(p.shape()),
                rsnorm_core::error::shape_str(inner)
            ))));
        }
    }
    Ok(())
}

/// eps None: the dtype's machine epsilon (RMSNorm's default, as on the CPU).
fn eps_or_machine(eps: Option<f64>, x: &GpuArray) -> f64 {
    eps.unwrap_or(match x.0.dtype() {
        DType::F16 => f64::from(half::f16::EPSILON),
        DType::F32 => f64::from(f32::EPSILON),
        DType::F64 => f64::EPSILON,
    })
}

#[pyfunction]
#[pyo3(signature = (x, normalized_shape, weight, bias, eps, out, return_stats))]
pub(crate) fn gpu_layer_norm<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    weight: Arr<'_>,
    bias: Arr<'_>,
    eps: f64,
    out: Arr<'_>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let (op, kind) = ("layer_norm", RowKind::Layer);
    let (residual, residual_out) = (None, None);
    RowArgs {
        op,
        kind,
        x: &x,
        normalized_shape,
        residual,
        weight,
        bias,
        eps,
        out,
        residual_out,
        return_stats,
    }
    .run(py)
}

#[pyfunction]
#[pyo3(signature = (x, normalized_shape, weight, eps, out, return_stats))]
pub(crate) fn gpu_rms_norm<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    weight: Arr<'_>,
    eps: Option<f64>,
    out: Arr<'_>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let (op, kind, eps) = ("rms_norm", RowKind::Rms, eps_or_machine(eps, &x));
    let (residual, residual_out, bias) = (None, None, None);
    RowArgs {
        op,
        kind,
        x: &x,
        normalized_shape,
        residual,
        weight,
        bias,
        eps,
        out,
        residual_out,
        return_stats,
    }
    .run(py)
}

#[pyfunction]
#[pyo3(signature = (x, residual, weight, bias, eps, normalized_shape, out, residual_out, return_stats))]
pub(crate) fn gpu_add_layer_norm<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    residual: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    bias: Arr<'_>,
    eps: f64,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Arr<'_>,
    residual_out: Arr<'_>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let (op, kind, residual) = ("add_layer_norm", RowKind::Layer, Some(residual));
    RowArgs {
        op,
        kind,
        x: &x,
        normalized_shape,
        residual,
        weight,
        bias,
        eps,
        out,
        residual_out,
        return_stats,
    }
    .run(py)
}

#[pyfunction]
#[pyo3(signature = (x, residual, weight, eps, normalized_shape, out, residual_out, return_stats))]
pub(crate) fn gpu_add_rms_norm<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    residual: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    eps: Option<f64>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Arr<'_>,
    residual_out: Arr<'_>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let (op, kind, eps) = ("add_rms_norm", RowKind::Rms, eps_or_machine(eps, &x));
    let (residual, bias) = (Some(residual), None);
    RowArgs {
        op,
        kind,
        x: &x,
        normalized_shape,
        residual,
        weight,
        bias,
        eps,
        out,
        residual_out,
        return_stats,
    }
    .run(py)
}

#[pyfunction]
#[pyo3(signature = (x, eps, out))]
pub(crate) fn gpu_l2_normalize<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    eps: f64,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (op, kind, normalized_shape) = ("l2_normalize", RowKind::L2, None);
    let (residual, residual_out, weight, bias, return_stats) = (None, None, None, None, false);
    RowArgs {
        op,
        kind,
        x: &x,
        normalized_shape,
        residual,
        weight,
        bias,
        eps,
        out,
        residual_out,
        return_stats,
    }
    .run(py)
}

#[pyfunction]
#[pyo3(signature = (x, axis, log, out))]
pub(crate) fn gpu_softmax<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    axis: i64,
    log: bool,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (x, out) = (&x.0, tensor(&out));
    let y = run(py, || rsnorm_gpu::softmax(x, axis, log, out))?;
    wrap(py, y)
}

#[pyfunction]
#[pyo3(signature = (grad_out, y, axis, log, out))]
pub(crate) fn gpu_softmax_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    y: PyRef<'_, GpuArray>,
    axis: i64,
    log: bool,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (g, y, out) = (&grad_out.0, &y.0, tensor(&out));
    let dx = run(py, || rsnorm_gpu::softmax_backward(g, y, axis, log, out))?;
    wrap(py, dx)
}

/// Cross-entropy's arguments: the target a device array of probabilities or a host array of
/// class indices (device arrays hold floats), the weights host values.
struct CrossEntropyArgs<'a, 'py> {
    op: &'static str,
    logits: &'a Tensor,
    target: &'a Bound<'py, PyAny>,
    axis: i64,
    reduction: Reduction,
    label_smoothing: f64,
    ignore_index: i64,
    weight: Option<&'a Bound<'py, PyAny>>,
}

impl CrossEntropyArgs<'_, '_> {
    /// Calls `work` with the parsed call (the interpreter detached).
    fn run<T: Send>(
        &self,
        py: Python<'_>,
        work: impl FnOnce(&CrossEntropy<'_>) -> rsnorm_gpu::Result<T> + Send,
    ) -> Result<T> {
        let op = self.op;
        let weight = crate::divergence::class_weight(op, self.weight)?;
        let probs = self
            .target
            .cast::<GpuArray>()
            .ok()
            .map(|t| t.borrow().0.clone());
        let indices = if probs.is_some() {
            None
        } else {
            let shape = self.logits.shape();
            let found = crate::divergence::class_target(py, op, self.target, shape, self.axis)?;
            if found.is_none() {
                return Err(type_error(format!(
                    "{op}: target is a host {} array; with the logits on the GPU, class indices \
                     are a host integer array and probabilities a device array \
                     (rsnorm.gpu.asarray(target))",
                    crate::dispatch::as_ndarray(self.target)?.dtype()
                )));
            }
            found
        };
        let target = match (&probs, &indices) {
            (Some(p), _) => ClassTarget::Probabilities(p),
            (None, Some((index, shape))) => ClassTarget::Indices {
                index,
                shape,
                ignore: self.ignore_index,
            },
            (None, None) => unreachable!("a target is probabilities or indices"),
        };
        let ce = CrossEntropy {
            logits: self.logits,
            target,
            axis: self.axis,
            reduction: self.reduction,
            label_smoothing: self.label_smoothing,
            weight: weight.as_deref(),
        };
        run(py, || work(&ce))
    }
}

#[pyfunction]
#[pyo3(signature = (logits, target, weight, axis, reduction, label_smoothing, ignore_index))]
#[allow(clippy::too_many_arguments)] // PyTorch's arguments, each needed
pub(crate) fn gpu_cross_entropy<'py>(
    py: Python<'py>,
    logits: PyRef<'_, GpuArray>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    axis: i64,
    reduction: Choice<Reduction>,
    label_smoothing: f64,
    ignore_index: i64,
) -> Result<Bound<'py, PyAny>> {
    let args = CrossEntropyArgs {
        op: "cross_entropy_with_logits",
        logits: &logits.0,
        target,
        axis,
        reduction: reduction.0,
        label_smoothing,
        ignore_index,
        weight,
    };
    // A closure, not the method path: that names one lifetime of CrossEntropy, not any.
    #[allow(clippy::redundant_closure_for_method_calls)]
    let loss = args.run(py, |ce| ce.forward())?;
    wrap(py, loss)
}

#[pyfunction]
#[pyo3(signature = (grad_out, logits, target, weight, axis, reduction, label_smoothing, ignore_index, out))]
#[allow(clippy::too_many_arguments)] // PyTorch's arguments, each needed
pub(crate) fn gpu_cross_entropy_backward<'py>(
    py: Python<'py>,
    grad_out: &Bound<'py, PyAny>,
    logits: PyRef<'_, GpuArray>,
    target: &Bound<'py, PyAny>,
    weight: Option<&Bound<'py, PyAny>>,
    axis: i64,
    reduction: Choice<Reduction>,
    label_smoothing: f64,
    ignore_index: i64,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "cross_entropy_with_logits_backward";
    let args = CrossEntropyArgs {
        op: OP,
        logits: &logits.0,
        target,
        axis,
        reduction: reduction.0,
        label_smoothing,
        ignore_index,
        weight,
    };
    let out = tensor(&out);
    let device = grad_out
        .cast::<GpuArray>()
        .ok()
        .map(|g| g.borrow().0.clone());
    let dx = if let Some(g) = device {
        args.run(py, |ce| ce.backward(LossGrad::Device(&g), out))?
    } else {
        let (values, shape) = crate::divergence::real_values(OP, "grad_out", grad_out)?;
        args.run(py, |ce| ce.backward(LossGrad::Host(&values, &shape), out))?
    };
    wrap(py, dx)
}

#[pyfunction]
#[pyo3(signature = (x, out))]
pub(crate) fn gpu_relu<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (x, out) = (&x.0, tensor(&out));
    let y = run(py, || rsnorm_gpu::relu(x, out))?;
    wrap(py, y)
}

#[pyfunction]
#[pyo3(signature = (grad_out, x, out))]
pub(crate) fn gpu_relu_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    x: PyRef<'_, GpuArray>,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (g, x, out) = (&grad_out.0, &x.0, tensor(&out));
    let dx = run(py, || rsnorm_gpu::relu_backward(g, x, out))?;
    wrap(py, dx)
}

#[pyfunction]
#[pyo3(signature = (a, b, bias, transpose_a, transpose_b, out))]
pub(crate) fn gpu_matmul<'py>(
    py: Python<'py>,
    a: PyRef<'_, GpuArray>,
    b: PyRef<'_, GpuArray>,
    bias: Arr<'_>,
    transpose_a: bool,
    transpose_b: bool,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (a, b, bias, out) = (&a.0, &b.0, tensor(&bias), tensor(&out));
    let c = run(py, || {
        rsnorm_gpu::matmul(a, b, bias, (transpose_a, transpose_b), out)
    })?;
    wrap(py, c)
}

#[pyfunction]
#[pyo3(signature = (x, out))]
pub(crate) fn gpu_selu<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (x, out) = (&x.0, tensor(&out));
    let y = run(py, || rsnorm_gpu::selu(x, out))?;
    wrap(py, y)
}

#[pyfunction]
#[pyo3(signature = (grad_out, x, out))]
pub(crate) fn gpu_selu_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    x: PyRef<'_, GpuArray>,
    out: Arr<'_>,
) -> Result<Bound<'py, PyAny>> {
    let (grad_out, x, out) = (&grad_out.0, &x.0, tensor(&out));
    let dx = run(py, || rsnorm_gpu::selu_backward(grad_out, x, out))?;
    wrap(py, dx)
}

/// `y`, or `(y, mean, rstd)` with the statistics shaped `stats`.
fn with_stats<'py>(
    py: Python<'py>,
    result: RowNormOutput,
    stats: &[usize],
) -> Result<Bound<'py, PyAny>> {
    let pair = result.mean.zip(result.rstd);
    let rest = pair.map_or_else(Vec::new, |(m, r)| vec![m.reshape(stats), r.reshape(stats)]);
    outputs(py, result.y, rest)
}

#[pyfunction]
#[pyo3(signature = (x, num_groups, weight, bias, eps, out, return_stats))]
pub(crate) fn gpu_group_norm<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    num_groups: i64,
    weight: Arr<'_>,
    bias: Arr<'_>,
    eps: f64,
    out: Arr<'_>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let options = GroupNormOptions { num_groups, eps };
    let (x, w, b, out) = (&x.0, tensor(&weight), tensor(&bias), tensor(&out));
    let result = run(py, || {
        rsnorm_gpu::group_norm(x, w, b, &options, out, return_stats)
    })?;
    // The call succeeded, so num_groups is a valid count.
    with_stats(py, result, &[x.shape()[0], num_groups as usize])
}

#[pyfunction]
#[pyo3(signature = (x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, out, return_stats))]
pub(crate) fn gpu_instance_norm<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    running_mean: Arr<'_>,
    running_var: Arr<'_>,
    weight: Arr<'_>,
    bias: Arr<'_>,
    use_input_stats: bool,
    momentum: f64,
    eps: f64,
    out: Arr<'_>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let options = InstanceNormOptions {
        use_input_stats,
        momentum,
        eps,
    };
    let (rm, rv) = (tensor(&running_mean), tensor(&running_var));
    let (x, w, b, out) = (&x.0, tensor(&weight), tensor(&bias), tensor(&out));
    let result = run(py, || {
        rsnorm_gpu::instance_norm(x, rm, rv, w, b, &options, out, return_stats)
    })?;
    with_stats(py, result, &x.shape()[..2.min(x.shape().len())])
}

#[pyfunction]
#[pyo3(signature = (x, running_mean, running_var, weight, bias, training, momentum, eps, axis, out,
                    mean_only, num_batches_tracked, return_stats, running_var_correction))]
pub(crate) fn gpu_batch_norm<'py>(
    py: Python<'py>,
    x: PyRef<'_, GpuArray>,
    running_mean: Arr<'_>,
    running_var: Arr<'_>,
    weight: Arr<'_>,
    bias: Arr<'_>,
    training: bool,
    momentum: Option<f64>,
    eps: f64,
    axis: i64,
    out: Arr<'_>,
    mean_only: bool,
    num_batches_tracked: Option<i64>,
    return_stats: bool,
    running_var_correction: i64,
) -> Result<Bound<'py, PyAny>> {
    let options = BatchNormOptions {
        training,
        momentum,
        eps,
        mean_only,
        num_batches_tracked,
        running_var_correction,
    };
    let (rm, rv) = (tensor(&running_mean), tensor(&running_var));
    let (x, w, b, out) = (&x.0, tensor(&weight), tensor(&bias), tensor(&out));
    let result = run(py, || {
        rsnorm_gpu::batch_norm(x, rm, rv, w, b, &options, axis, out, return_stats)
    })?;
    let channels = result.rstd.as_ref().map_or(0, Tensor::len);
    with_stats(py, result, &[channels])
}

/// An `out=` entry as a device array, checked against its result's shape and dtype before any work;
/// `computed` is false (with the parameter's name) for a gradient not computed.
fn device_out<'py>(
    op: &str,
    (entry, index): (Option<&Bound<'py, PyAny>>, usize),
    (computed, parameter): (bool, &str),
    shape: &[usize],
    dtype: DType,
) -> Result<Option<PyRef<'py, GpuArray>>> {
    let Some(entry) = entry else {
        return Ok(None);
    };
    if !computed {
        return Err(crate::backward::not_computed(op, index, parameter));
    }
    let name = format!("out[{index}]");
    let Ok(array) = entry.extract::<PyRef<'py, GpuArray>>() else {
        return Err(type_error(format!(
            "{op}: {name} must be an rsnorm.gpu array, got {}",
            entry.get_type().name()?
        )));
    };
    rsnorm_gpu::check_out(op, &name, &array.0, shape, dtype)?;
    Ok(Some(array))
}

/// A parameter's gradient: copied into its `out=` array when given (a few values), else as it is.
fn param_result<'py>(
    py: Python<'py>,
    grad: Option<Tensor>,
    into: Option<&PyRef<'_, GpuArray>>,
) -> Result<Option<Bound<'py, PyAny>>> {
    let Some(grad) = grad else {
        return Ok(None);
    };
    let Some(into) = into else {
        return wrap(py, grad).map(Some);
    };
    let target = into.0.clone();
    run(py, || target.copy_from(&grad))?;
    wrap(py, into.0.clone()).map(Some)
}

/// The arguments of a row norm's backward, as the CPU bindings take them.
struct RowBackwardArgs<'a, 'py> {
    op: &'static str,
    kind: RowKind,
    grad_out: &'a GpuArray,
    x: &'a GpuArray,
    mean: Arr<'a>,
    rstd: &'a GpuArray,
    weight: Arr<'a>,
    bias: Arr<'a>,
    grad_sum: Arr<'a>,
    normalized_shape: Option<&'a Bound<'py, PyAny>>,
    /// `out=` entries for (dx, dweight, dbias), each with its index in the public tuple.
    out: [(Option<Bound<'py, PyAny>>, usize); 3],
}

impl RowBackwardArgs<'_, '_> {
    /// `(dx, dweight, dbias)`, a parameter's gradient None when the parameter was.
    fn run<'py>(&self, py: Python<'py>) -> Result<Vec<Option<Bound<'py, PyAny>>>> {
        let op = self.op;
        let shape = self.x.0.shape();
        let inner_ndim = normalized_ndim(op, shape, self.normalized_shape)?;
        let inner = &shape[shape.len() - inner_ndim..];
        check_params(op, [("weight", &self.weight), ("bias", &self.bias)], inner)?;
        let dtype = self.x.0.dtype();
        let [(dx, i), (dw, j), (db, k)] = &self.out;
        let dx_out = device_out(op, (dx.as_ref(), *i), (true, "x"), shape, dtype)?;
        let dw = (dw.as_ref(), *j);
        let dw_out = device_out(op, dw, (self.weight.is_some(), "weight"), inner, dtype)?;
        let db_out = device_out(
            op,
            (db.as_ref(), *k),
            (self.bias.is_some(), "bias"),
            inner,
            dtype,
        )?;
        let backward = RowNormBackward {
            op,
            kind: self.kind,
            grad_out: &self.grad_out.0,
            x: &self.x.0,
            rows: shape[..shape.len() - inner_ndim].iter().product(),
            row_len: inner.iter().product(),
            mean: tensor(&self.mean),
            rstd: &self.rstd.0,
            weight: tensor(&self.weight),
            dweight: self.weight.is_some(),
            dbias: self.bias.is_some(),
            grad_sum: tensor(&self.grad_sum),
            out: tensor(&dx_out),
        };
        let RowGrads { dx, dweight, dbias } = run(py, || backward.run())?;
        let shaped = |t: Option<Tensor>| t.map(|t| t.reshape(inner));
        Ok(vec![
            Some(wrap(py, dx)?),
            param_result(py, shaped(dweight), dw_out.as_ref())?,
            param_result(py, shaped(dbias), db_out.as_ref())?,
        ])
    }
}

/// The tuple of `items`, None where absent.
fn optional_tuple<'py>(
    py: Python<'py>,
    items: Vec<Option<Bound<'py, PyAny>>>,
) -> Result<Bound<'py, PyAny>> {
    let items: Vec<Bound<'py, PyAny>> = items
        .into_iter()
        .map(|i| i.unwrap_or_else(|| py.None().into_bound(py)))
        .collect();
    Ok(PyTuple::new(py, items)?.into_any())
}

#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight, bias, normalized_shape, out))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gpu_layer_norm_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    x: PyRef<'_, GpuArray>,
    mean: PyRef<'_, GpuArray>,
    rstd: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    bias: Arr<'_>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "layer_norm_backward";
    let [dx, dw, db] = out_entries(op, out, ["dx", "dweight", "dbias"])?;
    let grads = RowBackwardArgs {
        out: [(dx, 0), (dw, 1), (db, 2)],
        op,
        kind: RowKind::Layer,
        grad_out: &grad_out,
        x: &x,
        mean: Some(mean),
        rstd: &rstd,
        weight,
        bias,
        grad_sum: None,
        normalized_shape,
    }
    .run(py)?;
    optional_tuple(py, grads)
}

#[pyfunction]
#[pyo3(signature = (grad_out, x, rstd, weight, normalized_shape, out))]
pub(crate) fn gpu_rms_norm_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    x: PyRef<'_, GpuArray>,
    rstd: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "rms_norm_backward";
    let [dx, dw] = out_entries(op, out, ["dx", "dweight"])?;
    let mut grads = RowBackwardArgs {
        out: [(dx, 0), (dw, 1), (None, 2)],
        op,
        kind: RowKind::Rms,
        grad_out: &grad_out,
        x: &x,
        mean: None,
        rstd: &rstd,
        weight,
        bias: None,
        grad_sum: None,
        normalized_shape,
    }
    .run(py)?;
    grads.truncate(2);
    optional_tuple(py, grads)
}

#[pyfunction]
#[pyo3(signature = (grad_out, residual_sum, mean, rstd, weight, bias, grad_residual_out, normalized_shape,
                    out))]
pub(crate) fn gpu_add_layer_norm_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    residual_sum: PyRef<'_, GpuArray>,
    mean: PyRef<'_, GpuArray>,
    rstd: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    bias: Arr<'_>,
    grad_residual_out: Arr<'_>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "add_layer_norm_backward";
    let [dx, dr, dw, db] = out_entries(op, out, ["dx", "dresidual", "dweight", "dbias"])?;
    let mut grads = RowBackwardArgs {
        out: [
            crate::backward::one_sum_gradient(op, dx, dr)?,
            (dw, 2),
            (db, 3),
        ],
        op,
        kind: RowKind::Layer,
        grad_out: &grad_out,
        x: &residual_sum,
        mean: Some(mean),
        rstd: &rstd,
        weight,
        bias,
        grad_sum: grad_residual_out,
        normalized_shape,
    }
    .run(py)?;
    // dx and dresidual are one array.
    grads.insert(1, grads[0].clone());
    optional_tuple(py, grads)
}

#[pyfunction]
#[pyo3(signature = (grad_out, residual_sum, rstd, weight, grad_residual_out, normalized_shape, out))]
#[allow(clippy::too_many_arguments)]
pub(crate) fn gpu_add_rms_norm_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    residual_sum: PyRef<'_, GpuArray>,
    rstd: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    grad_residual_out: Arr<'_>,
    normalized_shape: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    let op = "add_rms_norm_backward";
    let [dx, dr, dw] = out_entries(op, out, ["dx", "dresidual", "dweight"])?;
    let mut grads = RowBackwardArgs {
        out: [
            crate::backward::one_sum_gradient(op, dx, dr)?,
            (dw, 2),
            (None, 3),
        ],
        op,
        kind: RowKind::Rms,
        grad_out: &grad_out,
        x: &residual_sum,
        mean: None,
        rstd: &rstd,
        weight,
        bias: None,
        grad_sum: grad_residual_out,
        normalized_shape,
    }
    .run(py)?;
    grads.truncate(2);
    grads.insert(1, grads[0].clone());
    optional_tuple(py, grads)
}

/// One optimizer step of a parameter group on the device (`rsnorm.optim` calls it with the
/// group's options, the tensors, each tensor's state in `state_names` order, step counts after this
/// step, and whether each momentum buffer is new); `clip`: (max_norm, the global norm).
#[pyfunction]
#[pyo3(signature = (algorithm, group, params, grads, states, steps, fresh, clip))]
pub(crate) fn gpu_optim_step(
    py: Python<'_>,
    algorithm: &str,
    group: &Bound<'_, PyDict>,
    params: Vec<PyRef<'_, GpuArray>>,
    grads: Vec<PyRef<'_, GpuArray>>,
    states: Vec<Vec<PyRef<'_, GpuArray>>>,
    steps: Vec<u64>,
    fresh: Vec<bool>,
    clip: Option<(f64, PyRef<'_, GpuArray>)>,
) -> Result<()> {
    let alg = crate::optim::algorithm(algorithm, group)?;
    let n = params.len();
    if grads.len() != n || states.len() != n || steps.len() != n || fresh.len() != n {
        return Err(Error::from(PyValueError::new_err(format!(
            "optimizer step: {n} parameters but {} gradients",
            grads.len()
        ))));
    }
    let tensors: Vec<rsnorm_gpu::StepTensor<'_>> = (0..n)
        .map(|i| rsnorm_gpu::StepTensor {
            param: &params[i].0,
            grad: &grads[i].0,
            state: states[i].iter().map(|s| &s.0).collect(),
            step: steps[i],
            fresh_buffer: fresh[i],
        })
        .collect();
    let clip = clip.as_ref().map(|(m, norm)| (*m, &norm.0));
    run(py, || rsnorm_gpu::optim_step(&alg, &tensors, clip))
}

/// The global L2 norm of device gradients, a 0-d device array.
#[pyfunction]
pub(crate) fn gpu_grad_norm(py: Python<'_>, grads: Vec<PyRef<'_, GpuArray>>) -> Result<GpuArray> {
    let grads: Vec<&Tensor> = grads.iter().map(|g| &g.0).collect();
    Ok(GpuArray(run(py, || rsnorm_gpu::grad_norm(&grads))?))
}

/// Scales device gradients in place by min(1, max_norm / (norm + 1e-6)).
#[pyfunction]
pub(crate) fn gpu_scale_grads(
    py: Python<'_>,
    grads: Vec<PyRef<'_, GpuArray>>,
    max_norm: f64,
    norm: PyRef<'_, GpuArray>,
) -> Result<()> {
    let grads: Vec<&Tensor> = grads.iter().map(|g| &g.0).collect();
    let norm = &norm.0;
    run(py, || rsnorm_gpu::scale_grads(&grads, max_norm, norm))
}

/// The arrays of a channel norm's backward, as its binding takes them.
struct ChannelGrads<'a> {
    grad_out: PyRef<'a, GpuArray>,
    x: PyRef<'a, GpuArray>,
    mean: PyRef<'a, GpuArray>,
    rstd: PyRef<'a, GpuArray>,
    weight: Arr<'a>,
    /// `out=` entries for (dx, dweight, dbias).
    out: [Option<Bound<'a, PyAny>>; 3],
}

impl ChannelGrads<'_> {
    /// `(dx, dweight, dbias)`, dweight None without a weight.
    fn run<'py>(
        &self,
        py: Python<'py>,
        op: &'static str,
        (axis, kind): (usize, ChannelKind),
        stats_use: StatsUse,
        unit_rstd: bool,
    ) -> Result<Bound<'py, PyAny>> {
        let (shape, dtype) = (self.x.0.shape(), self.x.0.dtype());
        let channels = [shape.get(axis).copied().unwrap_or(0)];
        let [dx, dw, db] = &self.out;
        let dx_out = device_out(op, (dx.as_ref(), 0), (true, "x"), shape, dtype)?;
        let has_w = (self.weight.is_some(), "weight");
        let dw_out = device_out(op, (dw.as_ref(), 1), has_w, &channels, dtype)?;
        let db_out = device_out(op, (db.as_ref(), 2), (true, "bias"), &channels, dtype)?;
        let backward = rsnorm_gpu::ChannelBackward {
            op,
            grad_out: &self.grad_out.0,
            x: &self.x.0,
            axis,
            kind,
            mean: &self.mean.0,
            rstd: &self.rstd.0,
            weight: tensor(&self.weight),
            stats_use,
            unit_rstd,
            out: tensor(&dx_out),
        };
        let RowGrads { dx, dweight, dbias } = run(py, || backward.run())?;
        let grads = vec![
            Some(wrap(py, dx)?),
            param_result(py, dweight, dw_out.as_ref())?,
            param_result(py, dbias, db_out.as_ref())?,
        ];
        optional_tuple(py, grads)
    }
}

#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight, training, axis, mean_only, out))]
pub(crate) fn gpu_batch_norm_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    x: PyRef<'_, GpuArray>,
    mean: PyRef<'_, GpuArray>,
    rstd: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    training: bool,
    axis: i64,
    mean_only: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = rsnorm_core::norm::batch_norm::BACKWARD_OP;
    let axis = rsnorm_core::error::resolve_axis(OP, axis, x.0.shape().len())?;
    let stats_use = match (training, mean_only) {
        (false, _) => StatsUse::Constant,
        (true, false) => StatsUse::Batch,
        (true, true) => StatsUse::BatchMean,
    };
    let layout = (axis, ChannelKind::Batch);
    ChannelGrads {
        grad_out,
        x,
        mean,
        rstd,
        weight,
        out: out_entries(OP, out, ["dx", "dweight", "dbias"])?,
    }
    .run(py, OP, layout, stats_use, mean_only)
}

#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight, num_groups, out))]
pub(crate) fn gpu_group_norm_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    x: PyRef<'_, GpuArray>,
    mean: PyRef<'_, GpuArray>,
    rstd: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    num_groups: i64,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    use rsnorm_core::norm::channels::backward::ChannelStats;
    const OP: &str = rsnorm_core::norm::group_norm::BACKWARD_OP;
    let ChannelStats::Group { groups } =
        rsnorm_core::norm::group_norm::backward_stats(x.0.shape(), num_groups)?
    else {
        unreachable!("backward_stats gives the group layout")
    };
    let layout = (1, ChannelKind::Group(groups));
    ChannelGrads {
        grad_out,
        x,
        mean,
        rstd,
        weight,
        out: out_entries(OP, out, ["dx", "dweight", "dbias"])?,
    }
    .run(py, OP, layout, StatsUse::Batch, false)
}

#[pyfunction]
#[pyo3(signature = (grad_out, x, mean, rstd, weight, use_input_stats, out))]
pub(crate) fn gpu_instance_norm_backward<'py>(
    py: Python<'py>,
    grad_out: PyRef<'_, GpuArray>,
    x: PyRef<'_, GpuArray>,
    mean: PyRef<'_, GpuArray>,
    rstd: PyRef<'_, GpuArray>,
    weight: Arr<'_>,
    use_input_stats: bool,
    out: Option<&Bound<'py, PyAny>>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "instance_norm_backward";
    rsnorm_core::norm::channels::batched_channels(OP, x.0.shape())?;
    let stats_use = if use_input_stats {
        StatsUse::Batch
    } else {
        StatsUse::Constant
    };
    let layout = (1, ChannelKind::Instance);
    ChannelGrads {
        grad_out,
        x,
        mean,
        rstd,
        weight,
        out: out_entries(OP, out, ["dx", "dweight", "dbias"])?,
    }
    .run(py, OP, layout, stats_use, false)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<GpuArray>()?;
    m.add_class::<GpuTimestamp>()?;
    m.add("GpuError", py.get_type::<GpuError>())?;
    m.add("GpuUnavailableError", py.get_type::<GpuUnavailableError>())?;
    m.add_function(wrap_pyfunction!(gpu_is_available, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_device_info, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_upload, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_empty, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_astype, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_synchronize, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_timestamp, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_layer_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_add_layer_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_add_rms_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_l2_normalize, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_softmax, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_softmax_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_cross_entropy_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_selu, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_relu, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_relu_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_matmul, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_selu_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_group_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_instance_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_batch_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_layer_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_rms_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_add_layer_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_add_rms_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_optim_step, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_batch_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_group_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_instance_norm_backward, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_grad_norm, m)?)?;
    m.add_function(wrap_pyfunction!(gpu_scale_grads, m)?)?;
    Ok(())
}
