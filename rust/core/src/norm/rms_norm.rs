//! RMSNorm: each row scaled by 1/sqrt(mean(x²) + eps), then an optional weight
//! (torch.nn.functional.rms_norm; eps None there means the dtype's machine epsilon).

use super::layer_norm::add_into;
use super::{check_row_norm, normalize_into};
use crate::element::Element;
use crate::error::Result;
use crate::rows::{map_row_runs, map_rows, Ahead, RowRuns, RowsMut, RowsRef, Stores};

/// Normalizes one contiguous row into `y`; returns its rstd = 1/sqrt(mean(x²) + eps).
#[inline(always)]
pub fn rms_norm_row<S: Element>(
    x: &[S::Compute],
    y: &mut [S::Compute],
    weight: Option<&[S::Compute]>,
    eps: f64,
    ahead: Ahead,
) -> f64 {
    rms_norm_runs::<S>(
        &mut RowRuns::Whole { x, y },
        weight,
        eps,
        ahead,
        Stores::Cached,
    )
}

/// Normalizes one row, whole or in chunks; returns its rstd.
#[inline(always)]
fn rms_norm_runs<S: Element>(
    row: &mut RowRuns<'_, S>,
    weight: Option<&[S::Compute]>,
    eps: f64,
    ahead: Ahead,
    stores: Stores,
) -> f64 {
    // Σ (x·scale)² with scale 1 unless the squares overflow or underflow the row's type.
    let (sum_squares, scale) = row.scaled_sum_squares();
    let rstd = scale / (sum_squares / row.len() as f64 + eps * scale * scale).sqrt();
    row.write(
        #[inline(always)]
        |at, x, y| {
            let weight = weight.map(|w| &w[at..at + y.len()]);
            normalize_into(x, y, 0.0, rstd, weight, None, ahead, stores);
        },
    );
    rstd
}

/// RMSNorm over rows of any layout; `rstd` receives each row's 1/rms (or is empty).
pub fn rms_norm<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    weight: Option<&[S::Compute]>,
    eps: f64,
    rstd: &mut [f64],
) -> Result<()> {
    check_row_norm(
        "rms_norm",
        eps,
        x.rows(),
        &[("out", y.rows())],
        &[("weight", weight)],
    )?;
    let stores = Stores::for_outputs([x], [y]);
    map_row_runs(
        x,
        y,
        rstd,
        #[inline(always)]
        |row, runs| {
            rms_norm_runs(
                runs,
                weight,
                eps,
                super::row_norm_ahead(x, y, row, stores),
                stores,
            )
        },
    );
    Ok(())
}

/// Residual add fused with RMSNorm (see [`super::layer_norm::add_layer_norm`]).
pub fn add_rms_norm<S: Element>(
    x: &RowsRef<S>,
    residual: &RowsRef<S>,
    y: &RowsMut<S>,
    sum: &RowsMut<S>,
    weight: Option<&[S::Compute]>,
    eps: f64,
    rstd: &mut [f64],
) -> Result<()> {
    let views = [
        ("residual", residual.rows()),
        ("out", y.rows()),
        ("residual_out", sum.rows()),
    ];
    check_row_norm("add_rms_norm", eps, x.rows(), &views, &[("weight", weight)])?;
    map_rows(
        [x, residual],
        [y, sum],
        rstd,
        #[inline(always)]
        |row, [x_row, residual_row], [y_row, sum_row]| {
            add_into::<S>(x_row, residual_row, sum_row);
            let ahead = super::fused_add_ahead(x, residual, y, sum, row);
            rms_norm_row::<S>(sum_row, y_row, weight, eps, ahead)
        },
    );
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
        rms_norm(
            &RowsRef::from_slice(&x, row_len),
            &RowsMut::from_slice(&mut y, row_len),
            Some(&w),
            1e-6,
            &mut rstd,
        )
        .unwrap();
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
        let (xr, yr) = (RowsRef::from_slice(&x, 4), RowsMut::from_slice(&mut y, 4));
        assert!(rms_norm(&xr, &yr, None, -1e-3, &mut []).is_err());
        assert!(rms_norm(&xr, &yr, Some(&[1.0; 5]), 1e-3, &mut []).is_err());
    }
}
