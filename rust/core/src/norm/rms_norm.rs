//! RMSNorm: each row scaled by 1/sqrt(mean(x²) + eps), then an optional weight
//! (torch.nn.functional.rms_norm; eps None there means the dtype's machine epsilon).

use super::layer_norm::add_into;
use super::{check_row_norm, normalize_into};
use crate::element::{Element, Float};
use crate::error::Result;
use crate::reduce::sum_squares;
use crate::rows::{map_rows, Ahead, RowsMut, RowsRef};

/// Normalizes one contiguous row into `y`; returns its rstd = 1/sqrt(mean(x²) + eps).
#[inline(always)]
pub fn rms_norm_row<T: Float>(
    x: &[T],
    y: &mut [T],
    weight: Option<&[T]>,
    eps: f64,
    ahead: Ahead,
) -> f64 {
    let mean_square = sum_squares(x) / x.len() as f64;
    let rstd = 1.0 / (mean_square + eps).sqrt();
    normalize_into(x, y, 0.0, rstd, weight, None, ahead);
    rstd
}

/// RMSNorm over rows of any layout; `rstd` receives each row's 1/rms (or is empty).
///
/// # Safety
/// As [`super::layer_norm::layer_norm`].
pub unsafe fn rms_norm<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    weight: Option<&[S::Compute]>,
    eps: f64,
    rstd: &mut [f64],
) -> Result<()> {
    check_row_norm(
        "rms_norm",
        eps,
        &x.rows,
        &[("out", &y.rows)],
        &[("weight", weight)],
    )?;
    // SAFETY: forwarded from the caller.
    unsafe {
        map_rows(
            [x],
            [y],
            rstd,
            #[inline(always)]
            |row, [x_row], [y]| rms_norm_row(x_row, y, weight, eps, x.ahead(row)),
        );
    }
    Ok(())
}

/// Residual add fused with RMSNorm (see [`super::layer_norm::add_layer_norm`]).
///
/// # Safety
/// As [`super::layer_norm::add_layer_norm`].
pub unsafe fn add_rms_norm<S: Element>(
    x: &RowsRef<S>,
    residual: &RowsRef<S>,
    y: &RowsMut<S>,
    sum: &RowsMut<S>,
    weight: Option<&[S::Compute]>,
    eps: f64,
    rstd: &mut [f64],
) -> Result<()> {
    let views = [
        ("residual", &residual.rows),
        ("out", &y.rows),
        ("residual_out", &sum.rows),
    ];
    check_row_norm("add_rms_norm", eps, &x.rows, &views, &[("weight", weight)])?;
    // SAFETY: forwarded from the caller.
    unsafe {
        map_rows(
            [x, residual],
            [y, sum],
            rstd,
            #[inline(always)]
            |_, [x, residual], [y, sum]| {
                add_into::<S>(x, residual, sum);
                rms_norm_row(sum, y, weight, eps, Ahead::NONE)
            },
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_definition() {
        let row_len = 21;
        let x: Vec<f64> = (0..row_len * 3)
            .map(|i| (i as f64 * 0.37).sin() * 3.0)
            .collect();
        let w: Vec<f64> = (0..row_len).map(|i| 0.5 + i as f64 / 10.0).collect();
        let mut y = vec![0.0; x.len()];
        let mut rstd = vec![0.0; 3];
        unsafe {
            rms_norm(
                &RowsRef::from_slice(&x, row_len),
                &RowsMut::from_slice(&mut y, row_len),
                Some(&w),
                1e-6,
                &mut rstd,
            )
            .unwrap();
        }
        for (r, row) in x.chunks(row_len).enumerate() {
            let ms = row.iter().map(|v| v * v).sum::<f64>() / row_len as f64;
            let want_rstd = 1.0 / (ms + 1e-6).sqrt();
            assert!((rstd[r] - want_rstd).abs() < 1e-14);
            for j in 0..row_len {
                assert!((y[r * row_len + j] - row[j] * want_rstd * w[j]).abs() < 1e-12);
            }
        }
    }

    #[test]
    fn rejects_negative_eps_and_wrong_weight() {
        let x = vec![1.0f32; 8];
        let mut y = vec![0.0f32; 8];
        unsafe {
            let (xr, yr) = (RowsRef::from_slice(&x, 4), RowsMut::from_slice(&mut y, 4));
            assert!(rms_norm(&xr, &yr, None, -1e-3, &mut []).is_err());
            assert!(rms_norm(&xr, &yr, Some(&[1.0; 5]), 1e-3, &mut []).is_err());
        }
    }
}
