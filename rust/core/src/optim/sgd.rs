//! SGD with momentum, dampening, Nesterov momentum and weight decay (torch.optim.SGD).

use super::{nonneg, unswitch, Reading};
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
        read: Reading<T>,
    ) {
        let f = T::from_f64;
        let (lr, mom, damp) = (f(self.lr), f(self.momentum), f(1.0 - self.dampening));
        if self.momentum == 0.0 {
            for (p, &g) in p.iter_mut().zip(g) {
                *p = *p - lr * read.grad(g, *p);
            }
        } else {
            unswitch(
                fresh,
                #[inline(always)]
                |fresh| {
                    unswitch(
                        self.nesterov,
                        #[inline(always)]
                        |nesterov| {
                            let states = p.iter_mut().zip(g).zip(buffer.iter_mut());
                            for ((p, &g), buf) in states {
                                let g = read.grad(g, *p);
                                *buf = if fresh { g } else { mom * *buf + damp * g };
                                let d = if nesterov { g + mom * *buf } else { *buf };
                                *p = *p - lr * d;
                            }
                        },
                    );
                },
            );
        }
    }
}
