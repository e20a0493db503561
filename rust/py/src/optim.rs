//! Bindings of the fused optimizer steps: one call per parameter group, all its tensors at once.

use crate::errors::{compute, type_error, value_error, Result};
use numpy::npyffi::{NPY_ARRAY_ALIGNED, NPY_ARRAY_C_CONTIGUOUS, NPY_ARRAY_OWNDATA};
use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyInt};
use rsnorm_core::optim::{self, Adadelta, Adagrad, Adam, Algorithm, Rmsprop, Sgd, TensorStep};

/// A hyperparameter as a param group holds it: a number (any real Python or NumPy scalar) or a
/// flag (by truth value, as PyTorch reads `nesterov`, `amsgrad`, ...).
trait Hyperparameter: Sized {
    fn read(value: &Bound<'_, PyAny>) -> Option<Self>;
}

impl Hyperparameter for f64 {
    fn read(value: &Bound<'_, PyAny>) -> Option<Self> {
        value.extract().ok()
    }
}

impl Hyperparameter for bool {
    fn read(value: &Bound<'_, PyAny>) -> Option<Self> {
        value.is_truthy().ok()
    }
}

/// `group[key]`, with a ValueError naming the key and showing the bad value.
fn item<T: Hyperparameter>(group: &Bound<'_, PyDict>, key: &str) -> Result<T> {
    let value = group
        .get_item(key)?
        .ok_or_else(|| value_error(format!("missing hyperparameter {key}")))?;
    T::read(&value).ok_or_else(|| {
        let shown = match value.extract::<BigInt>() {
            Ok(BigInt(bits)) => format!("an int of {bits} bits"),
            Err(_) => shown(&value),
        };
        value_error(format!("{key} must be a finite number, got {shown}"))
    })
}

/// `value`'s repr, cut to 80 characters (a bad value may be a large array).
fn shown(value: &Bound<'_, PyAny>) -> String {
    let repr = value.repr().map_or("?".into(), |r| r.to_string());
    repr.chars().take(80).collect()
}

/// Adam's `betas`, a pair of numbers.
fn betas(group: &Bound<'_, PyDict>) -> Result<(f64, f64)> {
    let betas = group.get_item("betas")?;
    betas
        .as_ref()
        .and_then(|b| b.extract().ok())
        .ok_or_else(|| {
            let got = betas.as_ref().map_or("nothing".into(), shown);
            value_error(format!("betas must be a pair (beta1, beta2), got {got}"))
        })
}

/// An int too wide for f64's range, by its bit length (its digits could be thousands long).
struct BigInt(u64);

impl<'a, 'py> FromPyObject<'a, 'py> for BigInt {
    type Error = PyErr;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let int = obj.cast::<PyInt>()?;
        Ok(BigInt(int.call_method0("bit_length")?.extract()?))
    }
}

/// The core's hyperparameter struct `$alg`, each field read from the group item of its name
/// (`$extra` fields given).
macro_rules! from_group {
    ($group:expr => $alg:ident [$($field:ident),*] $(, $extra:ident: $value:expr)*) => {
        $alg { $($field: item($group, stringify!($field))?,)* $($extra: $value,)* }
    };
}

/// The algorithm `name` with its hyperparameters from a param group (a dict holding at least
/// the options PyTorch's optimizer of that name takes).
#[rustfmt::skip] // one line per algorithm: its hyperparameters, as the core's struct names them
pub(crate) fn algorithm(name: &str, g: &Bound<'_, PyDict>) -> Result<Algorithm> {
    Ok(match name {
        "sgd" => Algorithm::Sgd(from_group!(g => Sgd[lr, momentum, dampening, weight_decay, nesterov, maximize])),
        "adagrad" => Algorithm::Adagrad(from_group!(g => Adagrad[lr, lr_decay, weight_decay, eps, maximize])),
        "adadelta" => Algorithm::Adadelta(from_group!(g => Adadelta[lr, rho, eps, weight_decay, maximize])),
        "rmsprop" => Algorithm::Rmsprop(from_group!(g => Rmsprop[lr, alpha, eps, weight_decay, momentum, centered, maximize])),
        "adam" | "adamw" => {
            let (beta1, beta2) = betas(g)?;
            Algorithm::Adam(from_group!(g => Adam[lr, eps, weight_decay, amsgrad, maximize],
                beta1: beta1, beta2: beta2, decoupled: name == "adamw"))
        }
        other => return Err(value_error(format!("unknown optimizer algorithm {other:?}"))),
    })
}

/// Validates a param group's hyperparameters for an algorithm (ValueError with the bad value) and
/// returns the names of the state arrays it keeps per parameter.
#[pyfunction]
pub(crate) fn optim_validate(name: &str, group: &Bound<'_, PyDict>) -> Result<Vec<&'static str>> {
    let alg = algorithm(name, group)?;
    alg.validate()?;
    Ok(alg.state_names())
}

/// Byte range of a contiguous array.
fn span<T>(arr: &Bound<'_, PyArrayDyn<T>>) -> (usize, usize)
where
    T: numpy::Element,
{
    let start = arr.data() as usize;
    (start, start + arr.len() * std::mem::size_of::<T>())
}

/// Tensor `i` (its param, grad and states) as mutable slices for the core, if its param has
/// dtype `T`.
fn typed_step<'a, T: numpy::Element + rsnorm_core::Float>(
    i: usize,
    (param, grad, states): (
        &'a Bound<'_, PyAny>,
        &'a Bound<'_, PyAny>,
        &'a [Bound<'_, PyAny>],
    ),
    step: u64,
    fresh: bool,
) -> Result<Option<TensorStep<'a, T>>> {
    let Ok(p) = param.cast::<PyArrayDyn<T>>() else {
        return Ok(None);
    };
    let g = grad
        .cast::<PyArrayDyn<T>>()
        .map_err(|_| value_error(format!("grads[{i}] must have the dtype of params[{i}]")))?;
    if !p.is_c_contiguous() || !g.is_c_contiguous() || g.len() != p.len() {
        return Err(value_error(format!(
            "params[{i}] and grads[{i}] must be C-contiguous arrays of one size"
        )));
    }
    let (ps, gs) = (span(p), span(g));
    if ps.0 < gs.1 && gs.0 < ps.1 {
        return Err(value_error(format!(
            "grads[{i}] shares memory with params[{i}]"
        )));
    }
    let states = checked_states::<T>(i, p.len(), states)?;
    // SAFETY: contiguous; param and grad checked disjoint; the optimizer owns its params and
    // its state arrays (distinct, written only here).
    let (param, grad) = unsafe { (p.as_slice_mut()?, g.as_slice()?) };
    let state = states.into_iter().map(|s| unsafe { s.as_slice_mut() });
    let state = state.collect::<std::result::Result<_, _>>()?;
    let fresh_buffer = fresh;
    Ok(Some(TensorStep {
        param,
        grad,
        state,
        step,
        fresh_buffer,
    }))
}

/// Tensor `i`'s state arrays, checked to have its param's dtype and size and to be contiguous.
fn checked_states<'a, 'py, T: numpy::Element>(
    i: usize,
    len: usize,
    states: &'a [Bound<'py, PyAny>],
) -> Result<Vec<&'a Bound<'py, PyArrayDyn<T>>>> {
    let check = |s: &'a Bound<'py, PyAny>| {
        let s = s
            .cast::<PyArrayDyn<T>>()
            .map_err(|_| value_error(format!("state of params[{i}] has another dtype")))?;
        if !s.is_c_contiguous() || s.len() != len {
            let msg = format!("state of params[{i}] must be C-contiguous and of its size");
            return Err(value_error(msg));
        }
        Ok(s)
    };
    states.iter().map(check).collect()
}

/// A parameter group's tensors, as the Python optimizer passes them (a dict): `states[i]` lists tensor
/// i's state arrays in the order of `optim_validate`'s names, `steps[i]` its step count after
/// this step, `fresh[i]` whether its momentum buffer is new this step.
#[derive(FromPyObject)]
#[pyo3(from_item_all)]
pub(crate) struct Tensors<'py> {
    params: Vec<Bound<'py, PyAny>>,
    grads: Vec<Bound<'py, PyAny>>,
    states: Vec<Vec<Bound<'py, PyAny>>>,
    steps: Vec<u64>,
    fresh: Vec<bool>,
}

/// The float32 and the float64 tensors of a group.
type ByDtype<'a> = (Vec<TensorStep<'a, f32>>, Vec<TensorStep<'a, f64>>);

impl Tensors<'_> {
    fn by_dtype(&self) -> Result<ByDtype<'_>> {
        let n = self.params.len();
        let lens = [
            self.grads.len(),
            self.states.len(),
            self.steps.len(),
            self.fresh.len(),
        ];
        if lens.iter().any(|&len| len != n) {
            let grads = self.grads.len();
            return Err(value_error(format!(
                "optimizer step: {n} params but {grads} grads"
            )));
        }
        let (mut f32s, mut f64s) = (Vec::new(), Vec::new());
        for i in 0..n {
            let tensor = (&self.params[i], &self.grads[i], &self.states[i][..]);
            let (step, fresh) = (self.steps[i], self.fresh[i]);
            if let Some(t) = typed_step::<f32>(i, tensor, step, fresh)? {
                f32s.push(t);
            } else if let Some(t) = typed_step::<f64>(i, tensor, step, fresh)? {
                f64s.push(t);
            } else {
                let msg = format!("params[{i}] must be a float32 or float64 numpy.ndarray");
                return Err(type_error(msg));
            }
        }
        Ok((f32s, f64s))
    }
}

/// Whether every gradient can go to `optim_step` as given: a plain ndarray (no subclass) of its
/// parameter's shape and dtype, C-contiguous, aligned and owning its data (so it cannot overlap a
/// parameter that owns its own). `Optimizer.step` then skips its checks per tensor in Python
/// (0.45 µs of attribute reads each); when this is false it runs them, with their messages.
#[pyfunction]
pub(crate) fn optim_grads_ready(
    py: Python<'_>,
    params: Vec<Bound<'_, PyAny>>,
    grads: Vec<Bound<'_, PyAny>>,
) -> bool {
    const READY: std::ffi::c_int = NPY_ARRAY_C_CONTIGUOUS | NPY_ARRAY_ALIGNED | NPY_ARRAY_OWNDATA;
    let ready = |p: &Bound<'_, PyAny>, g: &Bound<'_, PyAny>| {
        // SAFETY: a live object; the thread is attached (it holds a Bound).
        if unsafe { numpy::npyffi::PyArray_CheckExact(py, g.as_ptr()) } == 0 {
            return false;
        }
        let (Ok(p), Ok(g)) = (p.cast::<PyUntypedArray>(), g.cast::<PyUntypedArray>()) else {
            return false;
        };
        crate::dispatch::array_flags(g) & READY == READY
            && g.shape() == p.shape()
            && g.dtype().is_equiv_to(&p.dtype())
    };
    params.len() == grads.len() && params.iter().zip(&grads).all(|(p, g)| ready(p, g))
}

/// One optimizer step of one parameter group: updates params and states in place.
#[pyfunction]
#[pyo3(signature = (algorithm, group, tensors, grad_scale=1.0))]
pub(crate) fn optim_step(
    py: Python<'_>,
    algorithm: &str,
    group: &Bound<'_, PyDict>,
    tensors: Tensors<'_>,
    grad_scale: f64,
) -> Result<()> {
    let alg = self::algorithm(algorithm, group)?;
    let (mut f32s, mut f64s) = tensors.by_dtype()?;
    compute(py, || {
        optim::step(&alg, &mut f32s, grad_scale)?;
        optim::step(&alg, &mut f64s, grad_scale)
    })
}

/// Global L2 norm of a list of gradients (f64 accumulation), as torch.nn.utils.clip_grad_norm_ computes it.
#[pyfunction]
pub(crate) fn grad_norm(py: Python<'_>, grads: Vec<Bound<'_, PyAny>>) -> Result<f64> {
    let np = py.import("numpy")?;
    let mut f32s: Vec<Bound<'_, PyArrayDyn<f32>>> = Vec::new();
    let mut f64s: Vec<Bound<'_, PyArrayDyn<f64>>> = Vec::new();
    for (i, g) in grads.iter().enumerate() {
        let arr = np.call_method1("ascontiguousarray", (g,))?;
        if let Ok(a) = arr.cast::<PyArrayDyn<f32>>() {
            f32s.push(a.clone());
        } else if let Ok(a) = arr.cast::<PyArrayDyn<f64>>() {
            f64s.push(a.clone());
        } else {
            return Err(type_error(format!(
                "grads[{i}] must be a float32 or float64 array"
            )));
        }
    }
    // SAFETY: contiguous arrays, only read.
    let s32: Vec<&[f32]> = f32s
        .iter()
        .map(|a| unsafe { a.as_slice() })
        .collect::<std::result::Result<_, _>>()?;
    let s64: Vec<&[f64]> = f64s
        .iter()
        .map(|a| unsafe { a.as_slice() })
        .collect::<std::result::Result<_, _>>()?;
    compute(py, || {
        Ok((optim::sum_squares_all(&s32) + optim::sum_squares_all(&s64)).sqrt())
    })
}
