//! The slow path of sums that failed in the row's type: f64 passes over values scaled by a power
//! of two, so no square overflows or underflows (see [`super::Moments::exact`]).

use super::{blocked_sum_onto, underflow_bound};
use crate::element::Float;

/// One f64 pass of [`Moments::exact`] over a stream of values: Σ d and Σ d² of
/// d = x·scale − center, the largest |x|, and whether every x was finite.
#[derive(Clone, Copy, Debug)]
pub struct ExactPass {
    pub(super) scale: f64,
    pub(super) center: f64,
    pub(super) count: usize,
    pub(super) max: f64,
    pub(super) finite: bool,
    pub(super) dev: f64,
    pub(super) sq: f64,
}

impl ExactPass {
    pub(super) fn new(scale: f64, center: f64) -> Self {
        ExactPass {
            scale,
            center,
            count: 0,
            max: 0.0,
            finite: true,
            dev: 0.0,
            sq: 0.0,
        }
    }

    /// Adds a run of values.
    pub fn add<T: Float>(&mut self, run: &[T]) {
        for &v in run {
            self.add_value(v.to_f64());
        }
    }

    #[inline]
    pub fn add_value(&mut self, v: f64) {
        self.count += 1;
        self.finite &= v.is_finite();
        self.max = self.max.max(v.abs());
        let d = v * self.scale - self.center;
        self.dev += d;
        self.sq += d * d;
    }
}

/// 2^k, for k from −1074 to 1023, built from its bits (powi(2, k) overflows on its way to 2^−1024).
fn pow2(k: i32) -> f64 {
    let k = k.clamp(-1074, 1023);
    if k >= -1022 {
        f64::from_bits(((k + 1023) as u64) << 52)
    } else {
        f64::from_bits(1u64 << (k + 1074))
    }
}

/// A power of two s with `max`·s near 1 (in [1/4, 2), whatever log2's rounding): values times s
/// are exact (short of underflow) and their squares cannot overflow.
pub(super) fn scale_for(max: f64) -> f64 {
    if max == 0.0 || !max.is_finite() {
        return 1.0;
    }
    pow2(-(max.log2().floor() as i32) - 1)
}

/// Running Σ x² over values fed in runs (all but the last whole blocks), as [`sum_squares`] sums
/// one slice; or, for [`scaled_sum_squares_runs`]'s slow path, one of its f64 passes.
pub struct SquareSums {
    total: f64,
    count: usize,
    exact: Option<ExactPass>,
}

impl SquareSums {
    /// Adds one run of values.
    #[inline(always)]
    pub fn add<T: Float>(&mut self, run: &[T]) {
        if let Some(pass) = &mut self.exact {
            pass.add(run);
            return;
        }
        self.total = blocked_sum_onto(self.total, run, |v| v * v);
        self.count += run.len();
    }
}

/// Σ x² as (Σ (x·scale)², scale) for a power of two `scale`: 1 (and the plain [`sum_squares`])
/// unless that sum overflowed or underflowed `T`, when the values are summed scaled in f64
/// (see [`Moments::exact`]). Infinite or NaN values give the plain sum.
#[inline(always)]
pub fn scaled_sum_squares<T: Float>(x: &[T]) -> (f64, f64) {
    scaled_sum_squares_runs::<T>(
        #[inline(always)]
        |sums| sums.add(x),
    )
}

/// [`scaled_sum_squares`] of the values `feed` adds, in runs, to the sums it is given.
#[inline(always)]
pub fn scaled_sum_squares_runs<T: Float>(mut feed: impl FnMut(&mut SquareSums)) -> (f64, f64) {
    let mut plain = SquareSums {
        total: 0.0,
        count: 0,
        exact: None,
    };
    feed(&mut plain);
    if plain.total.is_finite() && plain.total >= underflow_bound::<T>(plain.count as f64) {
        return (plain.total, 1.0);
    }
    exact_sum_squares(plain.total, feed)
}

/// The slow path of [`scaled_sum_squares_runs`], kept out of the rows' code: f64 passes, scaled.
#[cold]
#[inline(never)]
fn exact_sum_squares(plain: f64, mut feed: impl FnMut(&mut SquareSums)) -> (f64, f64) {
    let mut run = |pass: ExactPass| {
        let mut sums = SquareSums {
            total: 0.0,
            count: 0,
            exact: Some(pass),
        };
        feed(&mut sums);
        sums.exact.expect("an exact pass")
    };
    let scan = run(ExactPass::new(1.0, 0.0));
    if !scan.finite || scan.max == 0.0 {
        return (plain, 1.0);
    }
    let scaled = run(ExactPass::new(scale_for(scan.max), 0.0));
    (scaled.sq, scaled.scale)
}

/// √(Σ x²), overflowing only where the norm itself does.
#[inline(always)]
pub fn l2_norm<T: Float>(x: &[T]) -> f64 {
    let (sq, scale) = scaled_sum_squares(x);
    sq.sqrt() / scale
}
