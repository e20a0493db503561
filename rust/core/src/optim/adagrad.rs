//! Adagrad with learning-rate decay and weight decay (torch.optim.Adagrad).

use super::{nonneg, Reading};
use crate::element::Float;
use crate::error::Result;

/// torch.optim.Adagrad's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adagrad {
    pub lr: f64,
    pub lr_decay: f64,
    pub weight_decay: f64,
    pub eps: f64,
    pub maximize: bool,
}

impl Adagrad {
    #[allow(clippy::unused_self)] // one signature for every algorithm
    pub(super) fn state_names(&self) -> Vec<&'static str> {
        vec!["sum"]
    }

    pub(super) fn validate(&self) -> Result<()> {
        nonneg("lr", self.lr)?;
        nonneg("lr_decay", self.lr_decay)?;
        nonneg("weight_decay", self.weight_decay)?;
        nonneg("eps", self.eps)
    }

    /// The learning rate of step `t`: lr / (1 + (t − 1)·lr_decay).
    pub(super) fn step_size(&self, t: f64) -> f64 {
        self.lr / (1.0 + (t - 1.0) * self.lr_decay)
    }

    /// One chunk's update at learning rate `step_size` (see [`Adagrad::step_size`]).
    #[inline(always)]
    pub(super) fn update<T: Float>(
        &self,
        step_size: f64,
        p: &mut [T],
        g: &[T],
        [sums, _, _]: [&mut [T]; 3],
        read: Reading<T>,
    ) {
        let f = T::from_f64;
        let (clr, eps) = (f(step_size), f(self.eps));
        for ((p, &g), sum) in p.iter_mut().zip(g).zip(sums.iter_mut()) {
            let g = read.grad(g, *p);
            *sum = *sum + g * g;
            *p = *p - clr * (g / (sum.sqrt() + eps));
        }
    }
}
