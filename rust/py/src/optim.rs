//! Bindings of the fused optimizer steps: one call per parameter group, all its tensors at once.

use crate::errors::{compute, type_error, value_error};
use numpy::{PyArrayDyn, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;
use rsnorm_core::optim::{self, Adadelta, Adagrad, Adam, Algorithm, Rmsprop, Sgd, TensorStep};
use std::collections::HashMap;

fn algorithm(name: &str, h: &HashMap<String, f64>) -> PyResult<Algorithm> {
    let get = |k: &str| {
        h.get(k)
            .copied()
            .ok_or_else(|| value_error(format!("{name}: missing hyperparameter {k}")))
    };
    let flag = |k: &str| get(k).map(|v| v != 0.0);
    Ok(match name {
        "sgd" => Algorithm::Sgd(Sgd {
            lr: get("lr")?,
            momentum: get("momentum")?,
            dampening: get("dampening")?,
            weight_decay: get("weight_decay")?,
            nesterov: flag("nesterov")?,
            maximize: flag("maximize")?,
        }),
        "adagrad" => Algorithm::Adagrad(Adagrad {
            lr: get("lr")?,
            lr_decay: get("lr_decay")?,
            weight_decay: get("weight_decay")?,
            eps: get("eps")?,
            maximize: flag("maximize")?,
        }),
        "adadelta" => Algorithm::Adadelta(Adadelta {
            lr: get("lr")?,
            rho: get("rho")?,
            eps: get("eps")?,
            weight_decay: get("weight_decay")?,
            maximize: flag("maximize")?,
        }),
        "rmsprop" => Algorithm::Rmsprop(Rmsprop {
            lr: get("lr")?,
            alpha: get("alpha")?,
            eps: get("eps")?,
            weight_decay: get("weight_decay")?,
            momentum: get("momentum")?,
            centered: flag("centered")?,
            maximize: flag("maximize")?,
        }),
        "adam" | "adamw" => Algorithm::Adam(Adam {
            lr: get("lr")?,
            beta1: get("beta1")?,
            beta2: get("beta2")?,
            eps: get("eps")?,
            weight_decay: get("weight_decay")?,
            decoupled: name == "adamw",
            amsgrad: flag("amsgrad")?,
            maximize: flag("maximize")?,
        }),
        other => {
            return Err(value_error(format!(
                "unknown optimizer algorithm {other:?}"
            )))
        }
    })
}

/// Validates the hyperparameters of an algorithm, raising ValueError with the bad value.
#[pyfunction]
pub(crate) fn optim_validate(
    name: &str,
    hyper: HashMap<String, f64>,
) -> PyResult<Vec<&'static str>> {
    let alg = algorithm(name, &hyper)?;
    alg.validate().map_err(crate::errors::core_error)?;
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

/// The tensors of one dtype, as mutable slices for the core.
fn typed_steps<'a, T: numpy::Element + rsnorm_core::Float>(
    i: usize,
    param: &'a Bound<'_, PyAny>,
    grad: &'a Bound<'_, PyAny>,
    states: &'a [Bound<'_, PyAny>],
    step: u64,
    fresh: bool,
) -> PyResult<Option<TensorStep<'a, T>>> {
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
    let mut state = Vec::with_capacity(states.len());
    for s in states {
        let s = s
            .cast::<PyArrayDyn<T>>()
            .map_err(|_| value_error(format!("state of params[{i}] has another dtype")))?;
        if !s.is_c_contiguous() || s.len() != p.len() {
            return Err(value_error(format!(
                "state of params[{i}] must be C-contiguous and of its size"
            )));
        }
        // SAFETY: distinct contiguous arrays owned by the optimizer, written only here.
        state.push(unsafe { s.as_slice_mut()? });
    }
    // SAFETY: contiguous; param and grad checked disjoint; the optimizer owns its params.
    let (param, grad) = unsafe { (p.as_slice_mut()?, g.as_slice()?) };
    Ok(Some(TensorStep {
        param,
        grad,
        state,
        step,
        fresh_buffer: fresh,
    }))
}

/// One optimizer step of one parameter group: updates params and states in place.
/// `states[i]` lists tensor i's state arrays in the order of `optim_validate`'s names, `steps[i]`
/// its step count after this step, `fresh[i]` whether its momentum buffer is new this step.
#[pyfunction]
#[pyo3(signature = (algorithm, hyper, params, grads, states, steps, fresh, grad_scale=1.0))]
pub(crate) fn optim_step(
    py: Python<'_>,
    algorithm: &str,
    hyper: HashMap<String, f64>,
    params: Vec<Bound<'_, PyAny>>,
    grads: Vec<Bound<'_, PyAny>>,
    states: Vec<Vec<Bound<'_, PyAny>>>,
    steps: Vec<u64>,
    fresh: Vec<bool>,
    grad_scale: f64,
) -> PyResult<()> {
    let alg = self::algorithm(algorithm, &hyper)?;
    let n = params.len();
    if grads.len() != n || states.len() != n || steps.len() != n || fresh.len() != n {
        return Err(value_error(format!(
            "optimizer step: {n} params but {} grads",
            grads.len()
        )));
    }
    let mut f32s = Vec::new();
    let mut f64s = Vec::new();
    for i in 0..n {
        if let Some(t) =
            typed_steps::<f32>(i, &params[i], &grads[i], &states[i], steps[i], fresh[i])?
        {
            f32s.push(t);
        } else if let Some(t) =
            typed_steps::<f64>(i, &params[i], &grads[i], &states[i], steps[i], fresh[i])?
        {
            f64s.push(t);
        } else {
            return Err(type_error(format!(
                "params[{i}] must be a float32 or float64 numpy.ndarray"
            )));
        }
    }
    compute(py, || {
        optim::step(&alg, &mut f32s, grad_scale)?;
        optim::step(&alg, &mut f64s, grad_scale)
    })
}

/// Global L2 norm of a list of gradients (f64 accumulation), as torch.nn.utils.clip_grad_norm_ computes it.
#[pyfunction]
pub(crate) fn grad_norm(py: Python<'_>, grads: Vec<Bound<'_, PyAny>>) -> PyResult<f64> {
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
        .collect::<Result<_, _>>()?;
    let s64: Vec<&[f64]> = f64s
        .iter()
        .map(|a| unsafe { a.as_slice() })
        .collect::<Result<_, _>>()?;
    compute(py, || {
        Ok((optim::sum_squares_all(&s32) + optim::sum_squares_all(&s64)).sqrt())
    })
}
