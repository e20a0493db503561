//! Activations: SELU with its exact constants (Klambauer et al. 2017, as torch.nn.SELU), forward
//! and backward.

use crate::element::{Element, Float};
use crate::error::Result;
use crate::rows::{check_same_rows, map_elements, RowsMut, RowsRef};

/// λ of SELU.
pub const SELU_SCALE: f64 = 1.050_700_987_355_480_5;
/// α of SELU.
pub const SELU_ALPHA: f64 = 1.673_263_242_354_377_2;

/// SELU: y = λ·x for x > 0, λ·α·(eˣ − 1) otherwise; NaN stays NaN. `y` may be `x` (in place).
pub fn selu<S: Element>(x: &RowsRef<S>, y: &RowsMut<S>) -> Result<()> {
    check_same_rows("selu", x.rows(), &[("out", y.rows())])?;
    let scale = <S::Compute as Float>::from_f64(SELU_SCALE);
    let scaled_alpha = <S::Compute as Float>::from_f64(SELU_SCALE * SELU_ALPHA);
    // eˣ − 1 with fused multiply-adds where the SIMD level has them: 1.3x in cache (decisions.md).
    crate::fastmath::with_mul_add!(M => map_elements(
        [x],
        y,
        #[inline(always)]
        |[x], y| {
            // Constants copied into the closure, as in the backward.
            let (scale, scaled_alpha) = (scale, scaled_alpha);
            for (y, &v) in y.iter_mut().zip(x) {
                // Both sides computed, then selected: a branch-free loop vectorizes.
                let negative = scaled_alpha * v.expm1_nonpositive::<M>();
                *y = if v > <S::Compute as Float>::ZERO {
                    scale * v
                } else {
                    negative
                };
            }
        },
    ))
}

/// SELU backward: dx = go·λ for x > 0, go·λ·α·eˣ otherwise.
pub fn selu_backward<S: Element>(
    grad_out: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
) -> Result<()> {
    check_same_rows("selu_backward", x.rows(), &[("grad_out", grad_out.rows())])?;
    let scale = <S::Compute as Float>::from_f64(SELU_SCALE);
    let scaled_alpha = <S::Compute as Float>::from_f64(SELU_SCALE * SELU_ALPHA);
    crate::fastmath::with_mul_add!(M => map_elements(
        [grad_out, x],
        dx,
        #[inline(always)]
        |[go, x], dx| {
            // Constants copied into the closure: read through its captures, they could
            // alias dx as far as the compiler knew, and the loop stayed scalar (20× slower).
            let (scale, scaled_alpha) = (scale, scaled_alpha);
            for ((d, &g), &v) in dx.iter_mut().zip(go).zip(x) {
                // eˣ itself, not expm1(x) + 1, which cancels to an absolute error of an
                // ulp of 1 (1e-5 relative at x = −8 in f32). Both sides computed, then
                // selected, so the loop vectorizes (the value at x > 0 is discarded).
                let negative = g * scaled_alpha * v.exp_nonpositive::<M>();
                *d = if v > <S::Compute as Float>::ZERO {
                    g * scale
                } else {
                    negative
                };
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selu_values() {
        let x = [-2.0f64, -1e-9, 0.0, 1.5, f64::NAN];
        let mut y = [0.0; 5];
        selu(&RowsRef::from_slice(&x, 5), &RowsMut::from_slice(&mut y, 5)).unwrap();
        assert!((y[0] - SELU_SCALE * SELU_ALPHA * ((-2.0f64).exp() - 1.0)).abs() < 1e-15);
        // expm1 keeps full relative precision near 0, where exp(x) - 1 would keep ~7 digits.
        assert!((y[1] / (-SELU_SCALE * SELU_ALPHA * 1e-9) - 1.0).abs() < 1e-8);
        assert!(y[2] == 0.0 && (y[3] - 1.5 * SELU_SCALE).abs() < 1e-15 && y[4].is_nan());
    }
}
