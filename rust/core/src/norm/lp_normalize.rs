//! Lp normalization along an axis, forward and backward: y = x / max(‖x‖_p, eps), as
//! torch.nn.functional.normalize(x, p, dim, eps) and (eps = 0) ONNX's LpNormalization.
//! `l2_normalize` is its p = 2, last-axis case (and cosine normalization's building block).

use crate::element::{Element, Float};
use crate::error::{check_eps, reduction_axis, Error, Result};
use crate::reduce::{sum_map, sum_pairs, LANES};
use crate::rows::{
    check_same_rows, map_row_runs, map_rows, ArrayMut, ArrayRef, RowRuns, RowsMut, RowsRef,
};

/// The p of an Lp norm: p ≥ 1, or ∞ (the largest magnitude). 1, 2 and ∞ have their own kernels;
/// any other p is summed in f64 as (|x|/max|x|)^p, so no power overflows or underflows.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LpNorm {
    One,
    Two,
    Inf,
    P(f64),
}

impl LpNorm {
    /// The norm for `p`, or an error naming `op` (p < 1 is not a norm, and NaN is not a p).
    #[allow(clippy::float_cmp)] // exactly these p have their own kernels
    pub fn new(op: &str, p: f64) -> Result<Self> {
        Ok(if p == 1.0 {
            LpNorm::One
        } else if p == 2.0 {
            LpNorm::Two
        } else if p == f64::INFINITY {
            LpNorm::Inf
        } else if p > 1.0 {
            LpNorm::P(p)
        } else {
            return Err(Error::InvalidArgument(format!(
                "{op}: p must be a number >= 1 or inf, got {p}"
            )));
        })
    }

    /// ‖row‖_p in f64. A NaN in the row gives NaN, an infinity (and no NaN) infinity.
    #[inline(always)]
    fn of<S: Element>(self, row: &mut RowRuns<'_, S>) -> f64 {
        match self {
            LpNorm::Two => {
                let (sum_squares, scale) = row.scaled_sum_squares();
                sum_squares.sqrt() / scale
            }
            LpNorm::One => {
                let mut total = 0.0;
                row.read(
                    #[inline(always)]
                    |_, x| total += sum_map(x, magnitude),
                );
                if total == f64::INFINITY {
                    // The lanes (f32 for float32) overflowed, or a value is infinite: in f64.
                    total = 0.0;
                    row.read(|_, x| total += sum_pairs(x, x, |a, _| a.abs()));
                }
                total
            }
            LpNorm::Inf => max_magnitude(row),
            LpNorm::P(p) => {
                let max = max_magnitude(row);
                if max == 0.0 || !max.is_finite() {
                    return max;
                }
                let mut total = 0.0;
                row.read(
                    #[inline(always)]
                    |_, x| total += sum_pairs(x, x, |a, _| power(a.abs() / max, p)),
                );
                max * total.powf(1.0 / p)
            }
        }
    }
}

/// 1/divisor, but 0 for a zero divisor: with eps = 0, a slice of zeros stays zeros (and so does
/// its gradient), as ONNX's LpNormalization gives them, where 0·(1/0) would be NaN.
#[inline(always)]
fn reciprocal(divisor: f64) -> f64 {
    if divisor == 0.0 {
        0.0
    } else {
        1.0 / divisor
    }
}

/// tᵖ for t in [0, 1] and p > 0, as e^(p·ln t) with the vectorizing ln and exp of
/// [`crate::fastmath`]: libm's pow is a call per element (3.6× NumPy's time for p = 3). The
/// exponent is ≤ 0, and the terms near t = 1 that dominate a norm are within a few ulps.
#[inline(always)]
fn power(t: f64, p: f64) -> f64 {
    crate::fastmath::exp_nonpositive_f64(p * crate::fastmath::ln(t))
}

/// |v|, written as a select so loops over it vectorize; NaN stays NaN.
#[inline(always)]
fn magnitude<T: Float>(v: T) -> T {
    if v < T::ZERO {
        -v
    } else {
        v
    }
}

/// max |x| over the row in f64, NaN if any value is NaN.
#[inline(always)]
fn max_magnitude<S: Element>(row: &mut RowRuns<'_, S>) -> f64 {
    #[inline(always)]
    fn keep<T: Float>(m: T, v: T) -> T {
        let a = magnitude(v);
        // NaN (a != a) replaces the lane and, once there, is never replaced (a > NaN is false).
        #[allow(clippy::eq_op)]
        if a > m || a != a {
            a
        } else {
            m
        }
    }
    let mut lanes = [<S::Compute as Float>::ZERO; LANES];
    row.read(
        #[inline(always)]
        |_, x| {
            let mut chunks = x.chunks_exact(LANES);
            for chunk in &mut chunks {
                for (m, &v) in lanes.iter_mut().zip(chunk) {
                    *m = keep(*m, v);
                }
            }
            for (m, &v) in lanes.iter_mut().zip(chunks.remainder()) {
                *m = keep(*m, v);
            }
        },
    );
    lanes.iter().fold(0.0f64, |m, &v| {
        let v = v.to_f64();
        if v.is_nan() || m.is_nan() {
            f64::NAN
        } else {
            m.max(v)
        }
    })
}

/// `y_row = x_row / max(‖x_row‖_p, eps)` for each row; `op` names the function in errors.
pub fn lp_normalize<S: Element>(
    op: &str,
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    p: LpNorm,
    eps: f64,
) -> Result<()> {
    check_eps(op, eps)?;
    check_same_rows(op, x.rows(), &[("out", y.rows())])?;
    map_row_runs(
        x,
        y,
        &mut [],
        #[inline(always)]
        |_, row| {
            let norm = p.of(row);
            // `f64::max` would turn a NaN norm into eps and scale the row's other entries by
            // 1/eps; a NaN stays NaN across its row (PyTorch's clamp_min keeps it too).
            let divisor = if norm < eps { eps } else { norm };
            let inv = reciprocal(divisor);
            let scale = <S::Compute as Float>::from_f64(inv);
            if scale.to_f64().is_infinite()
                || (inv > 0.0 && inv < <S::Compute as Float>::MIN_NORMAL)
            {
                // A norm whose reciprocal overflows (subnormal, with eps = 0) or is subnormal
                // itself (float32 rows near its max) in the row's type: divide, in f64.
                row.write(|_, x, y| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = <S::Compute as Float>::from_f64(x.to_f64() / divisor);
                    }
                });
                return;
            }
            row.write(
                #[inline(always)]
                |_, x, y| {
                    for (y, &x) in y.iter_mut().zip(x) {
                        *y = x * scale;
                    }
                },
            );
        },
    );
    Ok(())
}

/// Backward of [`lp_normalize`]: with N = ‖x‖_p ≥ eps (and N > 0),
/// dx_j = g_j/N − (Σ g·x)/N² · sign(x_j)·(|x_j|/N)^(p−1) (p = ∞: the gradient of the max shared
/// equally by the values that reach it, as PyTorch's amax); with N clamped to eps, dx = g/eps
/// (zeros for N = eps = 0, matching the forward's zeros).
pub fn lp_normalize_backward<S: Element>(
    op: &str,
    grad_y: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    p: LpNorm,
    eps: f64,
) -> Result<()> {
    check_eps(op, eps)?;
    check_same_rows(op, x.rows(), &[("grad", grad_y.rows()), ("dx", dx.rows())])?;
    map_rows(
        [grad_y, x],
        [dx],
        &mut [],
        #[inline(always)]
        |_, [gy, x], [dx]| {
            let norm = p.of::<S>(&mut RowRuns::Whole { x, y: dx });
            // PyTorch's clamp_min passes the gradient to the norm from N = eps up; a zero norm
            // (eps = 0) takes the clamped branch, and a NaN norm the first one,
            // whose 1/N is NaN: NaN across the row, as in the forward.
            if (norm >= eps && norm > 0.0) || norm.is_nan() {
                let dot = sum_pairs(gy, x, |a, b| a * b);
                let inv = <S::Compute as Float>::from_f64(1.0 / norm);
                let cast = <S::Compute as Float>::from_f64;
                let sign = |v: S::Compute| -> S::Compute {
                    if v > <S::Compute as Float>::ZERO {
                        <S::Compute as Float>::ONE
                    } else if v < <S::Compute as Float>::ZERO {
                        -<S::Compute as Float>::ONE
                    } else {
                        v // ±0 (and NaN) as they are
                    }
                };
                let rows = dx.iter_mut().zip(gy).zip(x);
                match p {
                    LpNorm::Two => {
                        let coef = cast(dot / (norm * norm * norm));
                        for ((d, &g), &v) in rows {
                            *d = g * inv - v * coef;
                        }
                    }
                    LpNorm::One => {
                        let coef = cast(dot / (norm * norm));
                        for ((d, &g), &v) in rows {
                            *d = g * inv - sign(v) * coef;
                        }
                    }
                    LpNorm::Inf => {
                        // The norm is one of the magnitudes, converted exactly.
                        #[allow(clippy::float_cmp)]
                        let at_max = |v: S::Compute| magnitude(v).to_f64() == norm;
                        let count = x.iter().filter(|&&v| at_max(v)).count();
                        let coef = cast(dot / (norm * norm * count as f64));
                        for ((d, &g), &v) in rows {
                            *d = if at_max(v) {
                                g * inv - sign(v) * coef
                            } else {
                                g * inv
                            };
                        }
                    }
                    LpNorm::P(p) => {
                        let coef = dot / (norm * norm);
                        for ((d, &g), &v) in rows {
                            let share = power(v.to_f64().abs() / norm, p - 1.0);
                            *d = g * inv - sign(v) * cast(share * coef);
                        }
                    }
                }
            } else {
                let inv = <S::Compute as Float>::from_f64(reciprocal(eps));
                for (d, &g) in dx.iter_mut().zip(gy) {
                    *d = g * inv;
                }
            }
        },
    );
    Ok(())
}

/// The rows along `axis` of x and of the views beside it; a 0-d array is one value along axis 0
/// (or -1), as torch.nn.functional.normalize takes it.
fn along_axis(op: &str, shape: &[usize], axis: i64) -> Result<usize> {
    if shape.is_empty() {
        return match axis {
            0 | -1 => Ok(0),
            _ => Err(Error::InvalidArgument(format!(
                "{op}: axis {axis} is out of range for a 0-dimensional input (0 or -1)"
            ))),
        };
    }
    reduction_axis(op, shape, axis)
}

/// `normalize(x, p, axis, eps)`: [`lp_normalize`] of the rows along `axis`.
pub fn normalize<S: Element>(
    x: &ArrayRef<S>,
    y: &ArrayMut<S>,
    p: f64,
    axis: i64,
    eps: f64,
) -> Result<()> {
    let op = "normalize";
    let (p, axis) = (LpNorm::new(op, p)?, along_axis(op, x.shape(), axis)?);
    lp_normalize(op, &x.rows_along(axis), &y.rows_along(axis), p, eps)
}

/// Backward of [`normalize`]: dx from the output gradient and x.
pub fn normalize_backward<S: Element>(
    grad_y: &ArrayRef<S>,
    x: &ArrayRef<S>,
    dx: &ArrayMut<S>,
    p: f64,
    axis: i64,
    eps: f64,
) -> Result<()> {
    let op = "normalize_backward";
    let (p, axis) = (LpNorm::new(op, p)?, along_axis(op, x.shape(), axis)?);
    let (g, x, d) = (
        grad_y.rows_along(axis),
        x.rows_along(axis),
        dx.rows_along(axis),
    );
    lp_normalize_backward(op, &g, &x, &d, p, eps)
}

/// `y_row = x_row / max(‖x_row‖₂, eps)` (torch.nn.functional.normalize with p=2 over the rows).
pub fn l2_normalize<S: Element>(x: &RowsRef<S>, y: &RowsMut<S>, eps: f64) -> Result<()> {
    lp_normalize("l2_normalize", x, y, LpNorm::Two, eps)
}

/// Backward of [`l2_normalize`].
pub fn l2_normalize_backward<S: Element>(
    grad_y: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    eps: f64,
) -> Result<()> {
    lp_normalize_backward("l2_normalize_backward", grad_y, x, dx, LpNorm::Two, eps)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(x: &[f64], p: f64, eps: f64) -> Vec<f64> {
        let mut y = vec![0.0; x.len()];
        normalize(
            &ArrayRef::from_slice(x, &[x.len()]),
            &ArrayMut::from_slice(&mut y, &[x.len()]),
            p,
            -1,
            eps,
        )
        .unwrap();
        y
    }

    #[test]
    fn norms_of_each_p() {
        let x = [3.0, -4.0, 0.0, 12.0];
        assert_eq!(
            run(&x, 1.0, 0.0),
            vec![3.0 / 19.0, -4.0 / 19.0, 0.0, 12.0 / 19.0]
        );
        assert_eq!(
            run(&x, 2.0, 0.0),
            vec![3.0 / 13.0, -4.0 / 13.0, 0.0, 12.0 / 13.0]
        );
        assert_eq!(
            run(&x, f64::INFINITY, 0.0),
            vec![0.25, -1.0 / 3.0, 0.0, 1.0]
        );
        let n3 = (27.0f64 + 64.0 + 1728.0).cbrt();
        for (a, b) in run(&x, 3.0, 0.0).iter().zip(x.iter().map(|v| v / n3)) {
            assert!((a - b).abs() < 1e-15, "{a} {b}");
        }
        // Large p and huge values: no overflow of |x|^p.
        let big = [1e300, 1e300];
        let y = run(&big, 7.5, 0.0);
        assert!((y[0] - 2f64.powf(-1.0 / 7.5)).abs() < 1e-15);
    }

    #[test]
    fn nan_stays_in_its_row_and_bad_p_is_refused() {
        let y = run(&[1.0, f64::NAN, 2.0], f64::INFINITY, 1e-12);
        assert!(y.iter().all(|v| v.is_nan()));
        assert_eq!(run(&[0.0, -0.0], 1.0, 0.0), vec![0.0, 0.0]);
        assert_eq!(run(&[0.0, 0.0], 3.0, 1e-12), vec![0.0, 0.0]);
        for p in [0.5, -1.0, f64::NAN, f64::NEG_INFINITY] {
            let err = LpNorm::new("normalize", p).unwrap_err().to_string();
            assert!(err.contains("normalize: p must be"), "{err}");
        }
    }

    #[test]
    fn backward_matches_finite_differences() {
        let x = [0.3, -1.2, 0.7, 2.0, -0.4];
        let g = [0.5, -0.25, 1.0, 0.75, -1.5];
        for p in [1.0, 2.0, 3.0, 1.5, f64::INFINITY] {
            let mut dx = vec![0.0; 5];
            normalize_backward(
                &ArrayRef::from_slice(&g, &[5]),
                &ArrayRef::from_slice(&x, &[5]),
                &ArrayMut::from_slice(&mut dx, &[5]),
                p,
                0,
                1e-12,
            )
            .unwrap();
            let loss =
                |x: &[f64]| -> f64 { run(x, p, 1e-12).iter().zip(&g).map(|(y, g)| y * g).sum() };
            for j in 0..5 {
                let h = 1e-6;
                let (mut up, mut down) = (x, x);
                up[j] += h;
                down[j] -= h;
                let numeric = (loss(&up) - loss(&down)) / (2.0 * h);
                assert!(
                    (numeric - dx[j]).abs() < 1e-7,
                    "p={p} j={j}: {numeric} vs {}",
                    dx[j]
                );
            }
        }
    }
}
