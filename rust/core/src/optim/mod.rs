//! Fused, in-place optimizer steps with torch.optim's update rules and order of operations
//! (the single-tensor paths of torch/optim/*.py). One pass over memory per tensor: p, g and the
//! state are read once and p and the state written once, no temporaries. All tensors of a step
//! are cut into chunks of `CHUNK` elements and run on the pool together, so many small tensors are
//! batched and a large one is split.
//!
//! Where the textbook formulas differ: Adadelta multiplies its update by a global `lr` (default
//! 1.0); Adam/AdamW add eps *outside* the square root of the bias-corrected second moment
//! (denominator √v̂ + eps, with √(1 − β₂ᵗ) divided out of √v rather than v divided by 1 − β₂ᵗ);
//! AdamW decays the weights by (1 − lr·wd) before the update; Adagrad decays the learning rate as
//! lr / (1 + (t − 1)·lr_decay); RMSprop adds eps outside the square root.

use crate::element::Float;
use crate::error::{Error, Result};

/// Elements per task: 256 KB of f32 across p, g and state, cache-friendly, many tasks per step.
const CHUNK: usize = 1 << 14;

/// Hyperparameters of one optimizer (one parameter group).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Algorithm {
    Sgd {
        lr: f64,
        momentum: f64,
        dampening: f64,
        weight_decay: f64,
        nesterov: bool,
        maximize: bool,
    },
    Adagrad {
        lr: f64,
        lr_decay: f64,
        weight_decay: f64,
        eps: f64,
        maximize: bool,
    },
    Adadelta {
        lr: f64,
        rho: f64,
        eps: f64,
        weight_decay: f64,
        maximize: bool,
    },
    Rmsprop {
        lr: f64,
        alpha: f64,
        eps: f64,
        weight_decay: f64,
        momentum: f64,
        centered: bool,
        maximize: bool,
    },
    Adam {
        lr: f64,
        beta1: f64,
        beta2: f64,
        eps: f64,
        weight_decay: f64,
        decoupled: bool,
        amsgrad: bool,
        maximize: bool,
    },
}

impl Algorithm {
    /// State arrays a tensor needs, in the order `step` takes them (PyTorch's state names).
    pub fn state_names(&self) -> Vec<&'static str> {
        match *self {
            Algorithm::Sgd { momentum, .. } => {
                if momentum == 0.0 {
                    vec![]
                } else {
                    vec!["momentum_buffer"]
                }
            }
            Algorithm::Adagrad { .. } => vec!["sum"],
            Algorithm::Adadelta { .. } => vec!["square_avg", "acc_delta"],
            Algorithm::Rmsprop {
                momentum, centered, ..
            } => {
                let mut names = vec!["square_avg"];
                if momentum > 0.0 {
                    names.push("momentum_buffer");
                }
                if centered {
                    names.push("grad_avg");
                }
                names
            }
            Algorithm::Adam { amsgrad, .. } => {
                if amsgrad {
                    vec!["exp_avg", "exp_avg_sq", "max_exp_avg_sq"]
                } else {
                    vec!["exp_avg", "exp_avg_sq"]
                }
            }
        }
    }

    /// Checks every hyperparameter's domain, naming the bad value.
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &str, v: f64, domain: &str| {
            Err(Error::InvalidArgument(format!(
                "invalid {name}: {v} (must be {domain})"
            )))
        };
        let nonneg = |name: &str, v: f64| {
            if v >= 0.0 && v.is_finite() {
                Ok(())
            } else {
                bad(name, v, ">= 0")
            }
        };
        let unit = |name: &str, v: f64| {
            if (0.0..1.0).contains(&v) {
                Ok(())
            } else {
                bad(name, v, "in [0, 1)")
            }
        };
        match *self {
            Algorithm::Sgd {
                lr,
                momentum,
                dampening,
                weight_decay,
                nesterov,
                ..
            } => {
                nonneg("lr", lr)?;
                nonneg("momentum", momentum)?;
                nonneg("weight_decay", weight_decay)?;
                if !dampening.is_finite() {
                    return bad("dampening", dampening, "finite");
                }
                if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                    return Err(Error::InvalidArgument(format!(
                        "nesterov momentum requires a momentum > 0 and zero dampening (momentum={momentum}, dampening={dampening})"
                    )));
                }
                Ok(())
            }
            Algorithm::Adagrad {
                lr,
                lr_decay,
                weight_decay,
                eps,
                ..
            } => {
                nonneg("lr", lr)?;
                nonneg("lr_decay", lr_decay)?;
                nonneg("weight_decay", weight_decay)?;
                nonneg("eps", eps)
            }
            Algorithm::Adadelta {
                lr,
                rho,
                eps,
                weight_decay,
                ..
            } => {
                nonneg("lr", lr)?;
                if !(0.0..=1.0).contains(&rho) {
                    return bad("rho", rho, "in [0, 1]");
                }
                nonneg("eps", eps)?;
                nonneg("weight_decay", weight_decay)
            }
            Algorithm::Rmsprop {
                lr,
                alpha,
                eps,
                weight_decay,
                momentum,
                ..
            } => {
                nonneg("lr", lr)?;
                nonneg("alpha", alpha)?;
                nonneg("eps", eps)?;
                nonneg("weight_decay", weight_decay)?;
                nonneg("momentum", momentum)
            }
            Algorithm::Adam {
                lr,
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                nonneg("lr", lr)?;
                nonneg("eps", eps)?;
                unit("beta parameter at index 0", beta1)?;
                unit("beta parameter at index 1", beta2)?;
                nonneg("weight_decay", weight_decay)
            }
        }
    }
}

/// One tensor of a step: its parameter, gradient, state arrays (in `state_names` order, all the
/// parameter's length), its step count after this step, and whether its momentum buffer is new
/// (SGD's first step copies the gradient into it, as PyTorch's `clone`).
pub struct TensorStep<'a, T> {
    pub param: &'a mut [T],
    pub grad: &'a [T],
    pub state: Vec<&'a mut [T]>,
    pub step: u64,
    pub fresh_buffer: bool,
}

/// Per-tensor scalars of a step that depend on its step count, in f64 (as PyTorch's Python floats).
#[derive(Clone, Copy, Default)]
struct Scalars {
    /// Adagrad: lr / (1 + (t − 1)·lr_decay); Adam: lr / (1 − β₁ᵗ).
    step_size: f64,
    /// Adam: √(1 − β₂ᵗ).
    bias_correction2_sqrt: f64,
    /// AdamW: 1 − lr·weight_decay.
    weight_keep: f64,
}

fn scalars(alg: &Algorithm, step: u64) -> Scalars {
    let t = step as f64;
    match *alg {
        Algorithm::Adagrad { lr, lr_decay, .. } => Scalars {
            step_size: lr / (1.0 + (t - 1.0) * lr_decay),
            ..Scalars::default()
        },
        Algorithm::Adam {
            lr,
            beta1,
            beta2,
            weight_decay,
            ..
        } => Scalars {
            step_size: lr / (1.0 - beta1.powf(t)),
            bias_correction2_sqrt: (1.0 - beta2.powf(t)).sqrt(),
            weight_keep: 1.0 - lr * weight_decay,
        },
        _ => Scalars::default(),
    }
}

/// A tensor of a step as raw pointers, shared by the tasks that update its disjoint chunks.
struct Raw<T> {
    param: *mut T,
    grad: *const T,
    state: [*mut T; 3],
    scalars: Scalars,
    fresh: bool,
}
// SAFETY: chunks of distinct items are disjoint; the pointers outlive the call (borrowed slices).
unsafe impl<T: Send> Sync for Raw<T> {}

/// Runs one optimizer step on every tensor, in parallel. `grad_scale` multiplies every gradient
/// as it is read (fused gradient clipping; 1.0 reads them unchanged).
pub fn step<T: Float>(
    alg: &Algorithm,
    tensors: &mut [TensorStep<'_, T>],
    grad_scale: f64,
) -> Result<()> {
    alg.validate()?;
    let states = alg.state_names().len();
    for (i, t) in tensors.iter().enumerate() {
        if t.grad.len() != t.param.len()
            || t.state.len() != states
            || t.state.iter().any(|s| s.len() != t.param.len())
        {
            return Err(Error::ShapeMismatch(format!(
                "optimizer step: tensor {i} has gradient or state of another size"
            )));
        }
    }
    // Work items: (tensor, start, end) chunks, so small tensors batch and large ones split.
    let mut items = Vec::new();
    for (i, t) in tensors.iter().enumerate() {
        let mut start = 0;
        while start < t.param.len() {
            let end = (start + CHUNK).min(t.param.len());
            items.push((i, start, end));
            start = end;
        }
    }

    let raws: Vec<Raw<T>> = tensors
        .iter_mut()
        .map(|t| {
            let mut state = [std::ptr::null_mut(); 3];
            for (slot, s) in state.iter_mut().zip(t.state.iter_mut()) {
                *slot = s.as_mut_ptr();
            }
            Raw {
                param: t.param.as_mut_ptr(),
                grad: t.grad.as_ptr(),
                state,
                scalars: scalars(alg, t.step),
                fresh: t.fresh_buffer,
            }
        })
        .collect();
    let scale = T::from_f64(grad_scale);
    // Exactly 1.0 reads gradients unchanged, bitwise equal to an unclipped step.
    #[allow(clippy::float_cmp)]
    let clip = grad_scale != 1.0;
    // Work from the actual sizes: a few small tensors are each one short item, and counting them
    // as full chunks sent 5K parameters to the pool (SGD on four small tensors 6 -> 18 us).
    let elements: usize = items.iter().map(|&(_, start, end)| end - start).sum();
    let work_per_item = elements.div_ceil(items.len().max(1)) * (2 + states) * 2;
    crate::simd::for_each_range(
        items.len(),
        work_per_item,
        #[inline(always)]
        |range| {
            for &(i, start, end) in &items[range] {
                let raw = &raws[i];
                let n = end - start;
                // SAFETY: [start, end) is inside tensor i and owned by this item alone.
                let (p, g) = unsafe {
                    (
                        std::slice::from_raw_parts_mut(raw.param.add(start), n),
                        std::slice::from_raw_parts(raw.grad.add(start), n),
                    )
                };
                let mut s: [&mut [T]; 3] = [&mut [], &mut [], &mut []];
                for (k, slot) in s.iter_mut().enumerate().take(states) {
                    // SAFETY: as above, for state array k.
                    *slot = unsafe { std::slice::from_raw_parts_mut(raw.state[k].add(start), n) };
                }
                update(alg, raw.scalars, raw.fresh, p, g, s, scale, clip);
            }
        },
    );
    Ok(())
}

/// The gradient as the update sees it: clipped, then negated for `maximize`.
#[inline(always)]
fn read_grad<T: Float>(g: T, scale: T, clip: bool, maximize: bool) -> T {
    let g = if clip { g * scale } else { g };
    if maximize {
        -g
    } else {
        g
    }
}

#[inline(always)]
#[allow(clippy::too_many_lines)]
fn update<T: Float>(
    alg: &Algorithm,
    sc: Scalars,
    fresh: bool,
    p: &mut [T],
    g: &[T],
    s: [&mut [T]; 3],
    scale: T,
    clip: bool,
) {
    let f = T::from_f64;
    let [s0, s1, s2] = s;
    match *alg {
        Algorithm::Sgd {
            lr,
            momentum,
            dampening,
            weight_decay,
            nesterov,
            maximize,
        } => {
            let (lr, wd, mom, damp) = (f(lr), f(weight_decay), f(momentum), f(1.0 - dampening));
            let decay = weight_decay != 0.0;
            if momentum == 0.0 {
                for (p, &g) in p.iter_mut().zip(g) {
                    let mut g = read_grad(g, scale, clip, maximize);
                    if decay {
                        g = g + wd * *p;
                    }
                    *p = *p - lr * g;
                }
            } else {
                for ((p, &g), buf) in p.iter_mut().zip(g).zip(s0.iter_mut()) {
                    let mut g = read_grad(g, scale, clip, maximize);
                    if decay {
                        g = g + wd * *p;
                    }
                    *buf = if fresh { g } else { mom * *buf + damp * g };
                    let d = if nesterov { g + mom * *buf } else { *buf };
                    *p = *p - lr * d;
                }
            }
        }
        Algorithm::Adagrad {
            weight_decay,
            eps,
            maximize,
            ..
        } => {
            let (clr, wd, eps) = (f(sc.step_size), f(weight_decay), f(eps));
            let decay = weight_decay != 0.0;
            for ((p, &g), sum) in p.iter_mut().zip(g).zip(s0.iter_mut()) {
                let mut g = read_grad(g, scale, clip, maximize);
                if decay {
                    g = g + wd * *p;
                }
                *sum = *sum + g * g;
                *p = *p - clr * (g / (sum.sqrt() + eps));
            }
        }
        Algorithm::Adadelta {
            lr,
            rho,
            eps,
            weight_decay,
            maximize,
        } => {
            let (lr, rho, one_minus_rho, eps, wd) =
                (f(lr), f(rho), f(1.0 - rho), f(eps), f(weight_decay));
            let decay = weight_decay != 0.0;
            for (((p, &g), sq), acc) in p.iter_mut().zip(g).zip(s0.iter_mut()).zip(s1.iter_mut()) {
                let mut g = read_grad(g, scale, clip, maximize);
                if decay {
                    g = g + wd * *p;
                }
                *sq = *sq * rho + one_minus_rho * g * g;
                let delta = (*acc + eps).sqrt() / (*sq + eps).sqrt() * g;
                *acc = *acc * rho + one_minus_rho * delta * delta;
                *p = *p - lr * delta;
            }
        }
        Algorithm::Rmsprop {
            lr,
            alpha,
            eps,
            weight_decay,
            momentum,
            centered,
            maximize,
        } => {
            let (lr, alpha_t, one_minus_alpha, eps, wd, mom) = (
                f(lr),
                f(alpha),
                f(1.0 - alpha),
                f(eps),
                f(weight_decay),
                f(momentum),
            );
            let decay = weight_decay != 0.0;
            let grad = |g: T, p: T| {
                let g = read_grad(g, scale, clip, maximize);
                if decay {
                    g + wd * p
                } else {
                    g
                }
            };
            let square = |sq: &mut T, g: T| {
                *sq = *sq * alpha_t + one_minus_alpha * g * g;
            };
            let centered_avg = |sq: T, ga: &mut T, g: T| {
                *ga = *ga + one_minus_alpha * (g - *ga);
                (sq - *ga * *ga).sqrt() + eps
            };
            // State order: square_avg, [momentum_buffer], [grad_avg]; one zip loop per layout so
            // each vectorizes without bounds checks.
            match (momentum > 0.0, centered) {
                (false, false) => {
                    for ((p, &g), sq) in p.iter_mut().zip(g).zip(s0.iter_mut()) {
                        let g = grad(g, *p);
                        square(sq, g);
                        *p = *p - lr * (g / (sq.sqrt() + eps));
                    }
                }
                (true, false) => {
                    for (((p, &g), sq), buf) in
                        p.iter_mut().zip(g).zip(s0.iter_mut()).zip(s1.iter_mut())
                    {
                        let g = grad(g, *p);
                        square(sq, g);
                        *buf = *buf * mom + g / (sq.sqrt() + eps);
                        *p = *p - lr * *buf;
                    }
                }
                (false, true) => {
                    for (((p, &g), sq), ga) in
                        p.iter_mut().zip(g).zip(s0.iter_mut()).zip(s1.iter_mut())
                    {
                        let g = grad(g, *p);
                        square(sq, g);
                        let avg = centered_avg(*sq, ga, g);
                        *p = *p - lr * (g / avg);
                    }
                }
                (true, true) => {
                    let states = s0.iter_mut().zip(s1.iter_mut()).zip(s2.iter_mut());
                    for ((p, &g), ((sq, buf), ga)) in p.iter_mut().zip(g).zip(states) {
                        let g = grad(g, *p);
                        square(sq, g);
                        let avg = centered_avg(*sq, ga, g);
                        *buf = *buf * mom + g / avg;
                        *p = *p - lr * *buf;
                    }
                }
            }
        }
        Algorithm::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
            decoupled,
            amsgrad,
            maximize,
            ..
        } => {
            let (step_size, bc2_sqrt, keep) = (
                f(sc.step_size),
                f(sc.bias_correction2_sqrt),
                f(sc.weight_keep),
            );
            let (w1, beta2_t, one_minus_beta2, eps, wd) = (
                f(1.0 - beta1),
                f(beta2),
                f(1.0 - beta2),
                f(eps),
                f(weight_decay),
            );
            let decay = weight_decay != 0.0;
            // Weight decay, then the two moments, in PyTorch's order.
            let moments = |p: &mut T, g: T, m: &mut T, v: &mut T| {
                let mut g = read_grad(g, scale, clip, maximize);
                if decay {
                    if decoupled {
                        *p = *p * keep;
                    } else {
                        g = g + wd * *p;
                    }
                }
                *m = *m + w1 * (g - *m);
                *v = *v * beta2_t + one_minus_beta2 * g * g;
            };
            let apply = |p: &mut T, m: T, second: T| {
                *p = *p - step_size * (m / (second.sqrt() / bc2_sqrt + eps));
            };
            if amsgrad {
                let states = s0.iter_mut().zip(s1.iter_mut()).zip(s2.iter_mut());
                for ((p, &g), ((m, v), vmax)) in p.iter_mut().zip(g).zip(states) {
                    moments(p, g, m, v);
                    // torch.maximum: NaN in either propagates.
                    let now = *v;
                    if now > *vmax || now.partial_cmp(&now).is_none() {
                        *vmax = now;
                    }
                    apply(p, *m, *vmax);
                }
            } else {
                for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(s0.iter_mut().zip(s1.iter_mut())) {
                    moments(p, g, m, v);
                    apply(p, *m, *v);
                }
            }
        }
    }
}

/// Σ g² over all gradients in f64 (the global norm of gradient clipping is its square root).
pub fn sum_squares_all<T: Float>(grads: &[&[T]]) -> f64 {
    let mut items = Vec::new();
    for (i, g) in grads.iter().enumerate() {
        let mut start = 0;
        while start < g.len() {
            let end = (start + CHUNK).min(g.len());
            items.push((i, start, end));
            start = end;
        }
    }
    let mut partial = vec![0.0f64; items.len()];
    let partial_ptr = partial.as_mut_ptr() as usize;
    let elements: usize = grads.iter().map(|g| g.len()).sum();
    // Dispatched like every kernel: without it the sums ran at the baseline (SSE2) width.
    crate::simd::for_each_range(
        items.len(),
        elements.div_ceil(items.len().max(1)),
        #[inline(always)]
        |range| {
            for k in range {
                let (i, start, end) = items[k];
                let s = crate::reduce::sum_squares(&grads[i][start..end]);
                // SAFETY: one writer per item index.
                unsafe { *(partial_ptr as *mut f64).add(k) = s };
            }
        },
    );
    partial.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adam(amsgrad: bool) -> Algorithm {
        Algorithm::Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
            amsgrad,
            maximize: false,
        }
    }

    #[test]
    fn adam_first_step_moves_by_lr() {
        // After one step m̂ = g, v̂ = g², so the update is lr·g/(|g| + eps) ≈ lr·sign(g).
        let mut p = vec![1.0f64, -2.0];
        let g = vec![0.5f64, -3.0];
        let (mut m, mut v) = (vec![0.0; 2], vec![0.0; 2]);
        let mut t = [TensorStep {
            param: &mut p,
            grad: &g,
            state: vec![&mut m, &mut v],
            step: 1,
            fresh_buffer: false,
        }];
        step(&adam(false), &mut t, 1.0).unwrap();
        assert!((p[0] - 0.9).abs() < 1e-7 && (p[1] + 1.9).abs() < 1e-7);
    }

    #[test]
    #[allow(clippy::float_cmp)] // these values are exact in binary floating point
    fn sgd_momentum_buffer_starts_as_gradient_and_large_tensors_split() {
        let n = 3 * CHUNK + 5;
        let mut p = vec![0.0f32; n];
        let g = vec![1.0f32; n];
        let mut buf = vec![7.0f32; n];
        let alg = Algorithm::Sgd {
            lr: 0.5,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
            maximize: false,
        };
        let mut t = [TensorStep {
            param: &mut p,
            grad: &g,
            state: vec![&mut buf],
            step: 1,
            fresh_buffer: true,
        }];
        step(&alg, &mut t, 1.0).unwrap();
        assert!(buf.iter().all(|&b| b == 1.0) && p.iter().all(|&v| v == -0.5));
    }

    #[test]
    fn validation_names_bad_values() {
        let e = Algorithm::Adagrad {
            lr: -1.0,
            lr_decay: 0.0,
            weight_decay: 0.0,
            eps: 1e-10,
            maximize: false,
        }
        .validate();
        assert_eq!(e.unwrap_err().to_string(), "invalid lr: -1 (must be >= 0)");
        let nesterov = Algorithm::Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
            maximize: false,
        };
        assert!(nesterov.validate().is_err());
        let mut a = adam(true);
        if let Algorithm::Adam { ref mut beta2, .. } = a {
            *beta2 = 1.0;
        }
        assert!(a
            .validate()
            .unwrap_err()
            .to_string()
            .contains("beta parameter at index 1"));
    }

    #[test]
    fn grad_norm_of_many_tensors() {
        let a = vec![3.0f32; 20_000];
        let b = vec![4.0f32; 20_000];
        let total = sum_squares_all(&[&a, &b]);
        assert!((total - 20_000.0 * 25.0).abs() < 1e-6);
    }
}
