//! SGD with momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD).

use super::{nonneg, read_grad};
use crate::element::Float;
use crate::error::{Error, Result};

/// torch.optim.SGD's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
    pub maximize: bool,
}

impl Sgd {
    pub(super) fn state_names(&self) -> Vec<&'static str> {
        if self.momentum == 0.0 {
            vec![]
        } else {
            vec!["momentum_buffer"]
        }
    }

    pub(super) fn validate(&self) -> Result<()> {
        let Sgd {
            lr,
            momentum,
            dampening,
            weight_decay,
            nesterov,
            ..
        } = *self;
        nonneg("lr", lr)?;
        nonneg("momentum", momentum)?;
        nonneg("weight_decay", weight_decay)?;
        if !dampening.is_finite() {
            return super::bad("dampening", dampening, "finite");
        }
        if nesterov && (momentum <= 0.0 || dampening != 0.0) {
            return Err(Error::InvalidArgument(format!(
                "nesterov momentum requires a momentum > 0 and zero dampening (momentum={momentum}, dampening={dampening})"
            )));
        }
        Ok(())
    }

    /// One chunk's update; `fresh`: the momentum buffer starts as the gradient (PyTorch's clone).
    #[inline(always)]
    pub(super) fn update<T: Float>(
        &self,
        fresh: bool,
        p: &mut [T],
        g: &[T],
        [buffer, _, _]: [&mut [T]; 3],
        scale: T,
        clip: bool,
    ) {
        let f = T::from_f64;
        let maximize = self.maximize;
        let (lr, wd, mom, damp) = (
            f(self.lr),
            f(self.weight_decay),
            f(self.momentum),
            f(1.0 - self.dampening),
        );
        let (decay, nesterov) = (self.weight_decay != 0.0, self.nesterov);
        if self.momentum == 0.0 {
            for (p, &g) in p.iter_mut().zip(g) {
                let mut g = read_grad(g, scale, clip, maximize);
                if decay {
                    g = g + wd * *p;
                }
                *p = *p - lr * g;
            }
        } else {
            for ((p, &g), buf) in p.iter_mut().zip(g).zip(buffer.iter_mut()) {
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
}
