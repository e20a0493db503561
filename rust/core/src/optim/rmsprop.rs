//! RMSprop, plain, with momentum and/or centered (torch.optim.RMSprop).

use super::{nonneg, Reading};
use crate::element::Float;
use crate::error::Result;

/// torch.optim.RMSprop's hyperparameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rmsprop {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
    pub maximize: bool,
}

impl Rmsprop {
    pub(super) fn state_names(&self) -> Vec<&'static str> {
        let mut names = vec!["square_avg"];
        if self.momentum > 0.0 {
            names.push("momentum_buffer");
        }
        if self.centered {
            names.push("grad_avg");
        }
        names
    }

    pub(super) fn validate(&self) -> Result<()> {
        nonneg("lr", self.lr)?;
        nonneg("alpha", self.alpha)?;
        nonneg("eps", self.eps)?;
        nonneg("weight_decay", self.weight_decay)?;
        nonneg("momentum", self.momentum)
    }

    /// One chunk's update; the state is square_avg, [momentum_buffer], [grad_avg].
    #[inline(always)]
    pub(super) fn update<T: Float>(
        &self,
        p: &mut [T],
        g: &[T],
        [s0, s1, s2]: [&mut [T]; 3],
        read: Reading<T>,
    ) {
        let f = T::from_f64;
        let (lr, alpha_t, one_minus_alpha, eps, mom) = (
            f(self.lr),
            f(self.alpha),
            f(1.0 - self.alpha),
            f(self.eps),
            f(self.momentum),
        );
        let grad = |g: T, p: T| read.grad(g, p);
        let square = |sq: &mut T, g: T| {
            *sq = *sq * alpha_t + one_minus_alpha * g * g;
        };
        let centered_avg = |sq: T, ga: &mut T, g: T| {
            *ga = *ga + one_minus_alpha * (g - *ga);
            (sq - *ga * *ga).sqrt() + eps
        };
        // One zip loop per layout so each vectorizes without bounds checks.
        match (self.momentum > 0.0, self.centered) {
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
                for (((p, &g), sq), ga) in p.iter_mut().zip(g).zip(s0.iter_mut()).zip(s1.iter_mut())
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
}
