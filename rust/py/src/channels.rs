//! Bindings of the channel-wise norms: batch_norm, instance_norm, group_norm.

use crate::dispatch::{
    array_mut, array_ref, channel_param, check_disjoint, float_array, is_writeable,
    native_f64_values, output, shape_str, unaliased, with_float_array, Storage,
};
use crate::errors::{compute, type_error, value_error, Result};
use numpy::{
    PyArray1, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::PyTuple;
use rsnorm_core::norm::batch_norm::{self as core_batch_norm, BatchNormOptions, RunningStats};
use rsnorm_core::norm::channels::mean_rstd;
use rsnorm_core::norm::group_norm::{self as core_group_norm, GroupNormOptions};
use rsnorm_core::norm::instance_norm::{self as core_instance_norm, InstanceNormOptions};
use rsnorm_core::reduce::Moments;
use rsnorm_core::Float;

/// A running statistic (running_mean / running_var): a float ndarray of `channels` values, read
/// as f64; in training it is updated in place, so it must be writeable.
struct Running<'py> {
    array: Bound<'py, PyUntypedArray>,
    values: Vec<f64>,
}

impl<'py> Running<'py> {
    fn extract(
        op: &str,
        name: &str,
        obj: Option<&Bound<'py, PyAny>>,
        channels: usize,
        written: bool,
    ) -> Result<Option<Self>> {
        let Some(obj) = obj else { return Ok(None) };
        let Ok(array) = obj.cast::<PyUntypedArray>() else {
            return Err(type_error(format!(
                "{op}: {name} must be a numpy.ndarray (it is updated in place), got {}",
                obj.get_type().name()?
            )));
        };
        if array.dtype().kind() != b'f' {
            return Err(type_error(format!(
                "{op}: {name} has dtype {}; expected a floating dtype",
                array.dtype()
            )));
        }
        if array.shape() != [channels] {
            return Err(value_error(format!(
                "{op}: {name} has shape {}, expected ({channels},) for {channels} channels",
                shape_str(array.shape())
            )));
        }
        if written && !is_writeable(array) {
            return Err(value_error(format!(
                "{op}: {name} is read-only but training updates it in place"
            )));
        }
        // A native float64 or float32 vector is read in place; any other through NumPy's cast.
        // The casts there and back took ~2.4 µs of a channel-last BatchNorm train call.
        let values = match native_f64_values::<numpy::Ix1>(array.as_any()) {
            Some(values) => values,
            None => array
                .call_method1("astype", (numpy::dtype::<f64>(obj.py()),))?
                .cast::<PyArrayDyn<f64>>()?
                .to_vec()?,
        };
        Ok(Some(Running {
            array: array.clone(),
            values,
        }))
    }

    /// Writes the (updated) values back into the caller's array (cast to its dtype).
    fn store(&self) -> Result<()> {
        // `as` rounds to nearest as NumPy's cast does: the same bits either way.
        if native_write(&self.array, &self.values, |v| v)
            || native_write(&self.array, &self.values, |v| v as f32)
        {
            return Ok(());
        }
        let py = self.array.py();
        let new = PyArray1::from_slice(py, &self.values);
        py.import("numpy")?
            .call_method1("copyto", (&self.array, new, "unsafe"))?;
        Ok(())
    }
}

/// Writes `values` (converted by `convert`) into `array` when it is a native, contiguous 1-D
/// array of `T` not borrowed elsewhere; `false` (nothing written) otherwise.
fn native_write<T: numpy::Element>(
    array: &Bound<'_, PyUntypedArray>,
    values: &[f64],
    convert: impl Fn(f64) -> T,
) -> bool {
    let Ok(typed) = array.cast::<PyArray1<T>>() else {
        return false;
    };
    let Ok(mut view) = typed.try_readwrite() else {
        return false;
    };
    let Ok(slots) = view.as_slice_mut() else {
        return false;
    };
    for (slot, &v) in slots.iter_mut().zip(values) {
        *slot = convert(v);
    }
    true
}

/// A norm's running mean and variance as the caller passed them, and which of them the call
/// writes (in place, through a copy of the values the core updates).
struct RunningPair<'py> {
    mean: Option<Running<'py>>,
    var: Option<Running<'py>>,
    writes: (bool, bool),
}

impl<'py> RunningPair<'py> {
    fn extract(
        op: &str,
        (mean, var): (Option<&Bound<'py, PyAny>>, Option<&Bound<'py, PyAny>>),
        channels: usize,
        writes: (bool, bool),
    ) -> Result<Self> {
        let mean = Running::extract(op, "running_mean", mean, channels, writes.0)?;
        let var = Running::extract(op, "running_var", var, channels, writes.1)?;
        Ok(RunningPair { mean, var, writes })
    }

    /// The statistics the call writes share no memory with each other, the output or x: the
    /// update would overwrite results already written (or values still to be read).
    fn check_disjoint<S: Storage>(
        &self,
        op: &str,
        y: &Bound<'_, PyArrayDyn<S>>,
        x: &Bound<'_, PyArrayDyn<S>>,
    ) -> Result<()> {
        let mean = self.mean.as_ref().filter(|_| self.writes.0);
        let var = self.var.as_ref().filter(|_| self.writes.1);
        check_disjoint(
            op,
            &[
                ("running_mean", mean.map(|r| &r.array)),
                ("running_var", var.map(|r| &r.array)),
            ],
            &[("out", Some(y.as_untyped())), ("x", Some(x.as_untyped()))],
        )
    }

    /// The values, for the core to read and update.
    fn stats(&mut self) -> RunningStats<'_> {
        RunningStats {
            mean: self.mean.as_mut().map(|r| r.values.as_mut_slice()),
            var: self.var.as_mut().map(|r| r.values.as_mut_slice()),
        }
    }

    /// Writes the updated values back into the arrays the call writes.
    fn store(&self) -> Result<()> {
        for (running, written) in [(&self.mean, self.writes.0), (&self.var, self.writes.1)] {
            running
                .as_ref()
                .filter(|_| written)
                .map(Running::store)
                .transpose()?;
        }
        Ok(())
    }
}

/// The statistics a forward returns for its backward (mean and rstd in the compute type).
fn stats_pair<'py, S: Storage>(
    py: Python<'py>,
    moments: &[Moments],
    eps: f64,
    shape: &[usize],
) -> Result<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let to_array = |values: Vec<f64>| -> Result<Bound<'py, PyAny>> {
        let values: Vec<S::Compute> = values.into_iter().map(Float::from_f64).collect();
        Ok(numpy::PyArray::from_vec(py, values)
            .reshape(shape)?
            .into_any())
    };
    let (mean, rstd) = mean_rstd(moments, eps);
    Ok((to_array(mean)?, to_array(rstd)?))
}

fn result<'py>(
    py: Python<'py>,
    y: Bound<'py, PyAny>,
    stats: Option<(Bound<'py, PyAny>, Bound<'py, PyAny>)>,
) -> Result<Bound<'py, PyAny>> {
    match stats {
        None => Ok(y),
        Some((mean, rstd)) => Ok(PyTuple::new(py, [y, mean, rstd])?.into_any()),
    }
}

/// BatchNorm with channels at `axis` (1: NCHW/NCL/(N, C); -1: channel-last), as
/// torch.nn.functional.batch_norm. Training (or no running statistics) normalizes with the batch
/// statistics (biased variance) and updates running_mean/running_var in place with the unbiased
/// variance; `momentum=None` is a cumulative average over `num_batches_tracked + 1` batches.
/// `mean_only=True` only subtracts the mean (then scales by weight, adds bias).
/// `return_stats=True` returns (y, mean, rstd) per channel, the statistics used.
#[pyfunction]
#[pyo3(
    text_signature = "(x, running_mean=None, running_var=None, weight=None, bias=None, training=False, \
                         momentum=0.1, eps=1e-05, axis=1, out=None, mean_only=False, \
                         num_batches_tracked=None, return_stats=False, running_var_correction=1)"
)]
#[pyo3(signature = (x, running_mean=None, running_var=None, weight=None, bias=None, training=false,
                    momentum=Some(0.1), eps=1e-5, axis=1, out=None, mean_only=false,
                    num_batches_tracked=None, return_stats=false, running_var_correction=1))]
pub(crate) fn batch_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    running_mean: Option<&Bound<'py, PyAny>>,
    running_var: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    training: bool,
    momentum: Option<f64>,
    eps: f64,
    axis: i64,
    out: Option<&Bound<'py, PyAny>>,
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
    let args = BatchNormArgs {
        running_mean,
        running_var,
        weight,
        bias,
        options,
        axis,
        out,
        return_stats,
    };
    with_float_array!(float_array("batch_norm", "x", x)?, x => batch_norm_typed(py, x, &args))
}

struct BatchNormArgs<'a, 'py> {
    running_mean: Option<&'a Bound<'py, PyAny>>,
    running_var: Option<&'a Bound<'py, PyAny>>,
    weight: Option<&'a Bound<'py, PyAny>>,
    bias: Option<&'a Bound<'py, PyAny>>,
    options: BatchNormOptions,
    axis: i64,
    out: Option<&'a Bound<'py, PyAny>>,
    return_stats: bool,
}

fn batch_norm_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    a: &BatchNormArgs<'_, 'py>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "batch_norm";
    let options = a.options;
    let shape = x.shape().to_vec();
    let axis = options.channel_axis(a.axis, &shape)?;
    let channels = shape[axis];
    let weight = channel_param::<S>(py, OP, "weight", a.weight, channels)?;
    let bias = channel_param::<S>(py, OP, "bias", a.bias, channels)?;
    let writes = (options.training, options.writes_running_var());
    let running = (a.running_mean, a.running_var);
    let mut running = RunningPair::extract(OP, running, channels, writes)?;
    let y = output::<S>(py, OP, "out", a.out, &shape)?;
    running.check_disjoint(OP, &y, &x)?;
    let x = unaliased(x, &[&y])?;
    let (xv, yv) = (array_ref(&x), array_mut(&y));
    let (w, b, stats) = (weight.as_deref(), bias.as_deref(), running.stats());
    let moments = compute(py, || {
        core_batch_norm::batch_norm(&xv, &yv, axis, w, b, stats, &options)
    })?;
    running.store()?;
    let stats = if a.return_stats {
        Some(stats_pair::<S>(py, &moments, options.eps, &[channels])?)
    } else {
        None
    };
    result(py, y.into_any(), stats)
}

/// InstanceNorm of (N, C, ...) input, as torch.nn.functional.instance_norm: each (sample,
/// channel) normalized over its spatial dims; per-channel weight/bias. With running statistics and
/// `use_input_stats=True` they are updated with the batch average; `use_input_stats=False`
/// normalizes with them. `return_stats=True` returns (y, mean, rstd) shaped (N, C).
#[pyfunction]
#[pyo3(signature = (x, running_mean=None, running_var=None, weight=None, bias=None, use_input_stats=true,
                    momentum=0.1, eps=1e-5, out=None, return_stats=false))]
pub(crate) fn instance_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    running_mean: Option<&Bound<'py, PyAny>>,
    running_var: Option<&Bound<'py, PyAny>>,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    use_input_stats: bool,
    momentum: f64,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    let options = InstanceNormOptions {
        use_input_stats,
        momentum,
        eps,
    };
    let args = InstanceNormArgs {
        running_mean,
        running_var,
        weight,
        bias,
        options,
        out,
        return_stats,
    };
    with_float_array!(float_array("instance_norm", "x", x)?, x => instance_norm_typed(py, x, &args))
}

struct InstanceNormArgs<'a, 'py> {
    running_mean: Option<&'a Bound<'py, PyAny>>,
    running_var: Option<&'a Bound<'py, PyAny>>,
    weight: Option<&'a Bound<'py, PyAny>>,
    bias: Option<&'a Bound<'py, PyAny>>,
    options: InstanceNormOptions,
    out: Option<&'a Bound<'py, PyAny>>,
    return_stats: bool,
}

fn instance_norm_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    a: &InstanceNormArgs<'_, 'py>,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "instance_norm";
    let options = a.options;
    let shape = x.shape().to_vec();
    let (batch, channels, _) = options.check(&shape)?;
    let weight = channel_param::<S>(py, OP, "weight", a.weight, channels)?;
    let bias = channel_param::<S>(py, OP, "bias", a.bias, channels)?;
    let writes = (options.use_input_stats, options.use_input_stats);
    let running = (a.running_mean, a.running_var);
    let mut running = RunningPair::extract(OP, running, channels, writes)?;
    let y = output::<S>(py, OP, "out", a.out, &shape)?;
    running.check_disjoint(OP, &y, &x)?;
    let x = unaliased(x, &[&y])?;
    let (xv, yv) = (array_ref(&x), array_mut(&y));
    let (w, b, stats) = (weight.as_deref(), bias.as_deref(), running.stats());
    let moments = compute(py, || {
        core_instance_norm::instance_norm(&xv, &yv, w, b, stats, &options)
    })?;
    running.store()?;
    // rstd only when returned: a square root and a division per statistic, which for the 16384
    // instances of a 7×7 InstanceNorm cost 4% of the call.
    let stats = if a.return_stats {
        Some(stats_pair::<S>(
            py,
            &moments,
            options.eps,
            &[batch, channels],
        )?)
    } else {
        None
    };
    result(py, y.into_any(), stats)
}

/// GroupNorm of (N, C, ...) input, as torch.nn.functional.group_norm: channels split into
/// `num_groups` groups (which must divide C), each (sample, group) normalized over its channels and
/// spatial dims; per-channel weight/bias. G=1 is a layer norm of each sample, G=C an instance norm.
/// `return_stats=True` returns (y, mean, rstd) shaped (N, G).
#[pyfunction]
#[pyo3(signature = (x, num_groups, weight=None, bias=None, eps=1e-5, out=None, return_stats=false))]
pub(crate) fn group_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    num_groups: i64,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    eps: f64,
    out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    with_float_array!(float_array("group_norm", "x", x)?, x => {
        let options = GroupNormOptions { num_groups, eps };
        group_norm_typed(py, x, options, weight, bias, out, return_stats)
    })
}

fn group_norm_typed<'py, S: Storage>(
    py: Python<'py>,
    x: Bound<'py, PyArrayDyn<S>>,
    options: GroupNormOptions,
    weight: Option<&Bound<'py, PyAny>>,
    bias: Option<&Bound<'py, PyAny>>,
    out: Option<&Bound<'py, PyAny>>,
    return_stats: bool,
) -> Result<Bound<'py, PyAny>> {
    const OP: &str = "group_norm";
    let shape = x.shape().to_vec();
    let (batch, channels, groups) = options.check(&shape)?;
    let weight = channel_param::<S>(py, OP, "weight", weight, channels)?;
    let bias = channel_param::<S>(py, OP, "bias", bias, channels)?;
    let y = output::<S>(py, OP, "out", out, &shape)?;
    let x = unaliased(x, &[&y])?;
    let (xv, yv) = (array_ref(&x), array_mut(&y));
    let (w, b) = (weight.as_deref(), bias.as_deref());
    let moments = compute(py, || core_group_norm::group_norm(&xv, &yv, w, b, &options))?;
    // Statistics only when returned (see instance_norm).
    let stats = return_stats
        .then(|| stats_pair::<S>(py, &moments, options.eps, &[batch, groups]))
        .transpose()?;
    result(py, y.into_any(), stats)
}

/// GroupNorm's check of `num_groups` against a channel count, for the layer's constructor (a
/// negative count is left to the array it sizes).
#[pyfunction]
pub(crate) fn _check_num_groups(op: &str, num_groups: i64, channels: i64) -> Result<()> {
    let channels = usize::try_from(channels).unwrap_or(0);
    core_group_norm::groups(op, num_groups, channels)?;
    Ok(())
}
