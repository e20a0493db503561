//! Adadelta, with torch.optim.Adadelta's global learning rate.

use super::{nonneg, Reading};
use crate::element::Float;
use crate::error::Result;

/// torch.optim.Adadelta's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adadelta {
    pub lr: f64,
    pub rho: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub maximize: bool,
}

impl Adadelta {
    #[allow(clippy::unused_self)] // one signature for every algorithm
    pub(super) fn state_names(&self) -> Vec<&'static str> {
        vec!["square_avg", "acc_delta"]
    }

    pub(super) fn validate(&self) -> Result<()> {
        nonneg("lr", self.lr)?;
        if !(0.0..=1.0).contains(&self.rho) {
            return super::bad("rho", self.rho, "in [0, 1]");
        }
        nonneg("eps", self.eps)?;
        nonneg("weight_decay", self.weight_decay)
    }

    #[inline(always)]
    pub(super) fn update<T: Float>(
        &self,
        p: &mut [T],
        g: &[T],
        [square_avg, acc_delta, _]: [&mut [T]; 3],
        read: Reading<T>,
    ) {
        let f = T::from_f64;
        let (lr, rho, one_minus_rho, eps) =
            (f(self.lr), f(self.rho), f(1.0 - self.rho), f(self.eps));
        let states = square_avg.iter_mut().zip(acc_delta.iter_mut());
        for ((p, &g), (sq, acc)) in p.iter_mut().zip(g).zip(states) {
            let g = read.grad(g, *p);
            *sq = *sq * rho + one_minus_rho * g * g;
            let delta = (*acc + eps).sqrt() / (*sq + eps).sqrt() * g;
            *acc = *acc * rho + one_minus_rho * delta * delta;
            *p = *p - lr * delta;
        }
    }
}
