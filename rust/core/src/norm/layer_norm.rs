//! LayerNorm: each row normalized by its own mean and biased variance, then an optional
//! elementwise affine (torch.nn.functional.layer_norm).

use super::{check_row_norm, normalize_into};
use crate::element::Element;
use crate::error::Result;
use crate::rows::{map_row_runs, map_rows, Ahead, RowRuns, RowsMut, RowsRef, Stores};

/// The statistics a row was normalized with: its mean and 1/sqrt(var + eps), in f64.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RowStats {
    pub mean: f64,
    pub rstd: f64,
}

/// Normalizes one contiguous row into `y` and returns the statistics used.
#[inline(always)]
pub fn layer_norm_row<S: Element>(
    x: &[S::Compute],
    y: &mut [S::Compute],
    weight: Option<&[S::Compute]>,
    bias: Option<&[S::Compute]>,
    eps: f64,
    ahead: Ahead,
) -> RowStats {
    layer_norm_runs::<S>(
        &mut RowRuns::Whole { x, y },
        weight,
        bias,
        eps,
        ahead,
        Stores::Cached,
    )
}

/// Normalizes one row, whole or in chunks, and returns the statistics used.
#[inline(always)]
fn layer_norm_runs<S: Element>(
    row: &mut RowRuns<'_, S>,
    weight: Option<&[S::Compute]>,
    bias: Option<&[S::Compute]>,
    eps: f64,
    ahead: Ahead,
    stores: Stores,
) -> RowStats {
    let moments = row.moments();
    let rstd = moments.rstd(eps);
    row.write(
        #[inline(always)]
        |at, x, y| {
            let range = at..at + y.len();
            let (w, b) = (weight.map(|w| &w[range.clone()]), bias.map(|b| &b[range]));
            normalize_into(x, y, moments.mean, rstd, w, b, ahead, stores);
        },
    );
    RowStats {
        mean: moments.mean,
        rstd,
    }
}

/// LayerNorm over rows of any layout. `stats` receives each row's statistics (or is empty).
pub fn layer_norm<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    weight: Option<&[S::Compute]>,
    bias: Option<&[S::Compute]>,
    eps: f64,
    stats: &mut [RowStats],
) -> Result<()> {
    check_row_norm(
        "layer_norm",
        eps,
        x.rows(),
        &[("out", y.rows())],
        &[("weight", weight), ("bias", bias)],
    )?;
    let stores = Stores::for_outputs([x], [y]);
    map_row_runs(
        x,
        y,
        stats,
        #[inline(always)]
        |row, runs| {
            layer_norm_runs(
                runs,
                weight,
                bias,
                eps,
                super::row_norm_ahead(x, y, row, stores),
                stores,
            )
        },
    );
    Ok(())
}

/// Residual add fused with LayerNorm: `sum = x + residual` is written out and normalized into
/// `y` while the row is still in cache (one pass over memory instead of two).
pub fn add_layer_norm<S: Element>(
    x: &RowsRef<S>,
    residual: &RowsRef<S>,
    y: &RowsMut<S>,
    sum: &RowsMut<S>,
    weight: Option<&[S::Compute]>,
    bias: Option<&[S::Compute]>,
    eps: f64,
    stats: &mut [RowStats],
) -> Result<()> {
    let views = [
        ("residual", residual.rows()),
        ("out", y.rows()),
        ("residual_out", sum.rows()),
    ];
    check_row_norm(
        "add_layer_norm",
        eps,
        x.rows(),
        &views,
        &[("weight", weight), ("bias", bias)],
    )?;
    map_rows(
        [x, residual],
        [y, sum],
        stats,
        #[inline(always)]
        |row, [x_row, residual_row], [y_row, sum_row]| {
            add_into::<S>(x_row, residual_row, sum_row);
            let ahead = super::fused_add_ahead(x, residual, y, sum, row);
            layer_norm_row::<S>(sum_row, y_row, weight, bias, eps, ahead)
        },
    );
    Ok(())
}

/// `sum = a + b` rounded to the storage type `S`: the normalized values must be those of the sum
/// that is returned (for f16, computing in f32 and normalizing the unrounded sum made
/// `y != layer_norm(sum)` by up to 4e-3).
#[inline(always)]
pub(crate) fn add_into<S: Element>(a: &[S::Compute], b: &[S::Compute], sum: &mut [S::Compute]) {
    for ((s, &a), &b) in sum.iter_mut().zip(a).zip(b) {
        *s = a + b;
        if !S::NATIVE {
            *s = S::store(*s).load();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rows::{ArrayMut, ArrayRef};

    /// Textbook float64 LayerNorm, the reference the fast kernel is checked against.
    fn layer_norm_slow(
        x: &[f64],
        row_len: usize,
        w: Option<&[f64]>,
        b: Option<&[f64]>,
        eps: f64,
    ) -> Vec<f64> {
        let mut y = Vec::with_capacity(x.len());
        for row in x.chunks(row_len) {
            let n = row.len() as f64;
            let mean = row.iter().sum::<f64>() / n;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            for (j, v) in row.iter().enumerate() {
                let z = (v - mean) / (var + eps).sqrt();
                y.push(z * w.map_or(1.0, |w| w[j]) + b.map_or(0.0, |b| b[j]));
            }
        }
        y
    }

    fn data(n: usize, offset: f64) -> Vec<f64> {
        (0..n)
            .map(|i| offset + ((i * 7919) % 113) as f64 / 37.0 - 1.5)
            .collect()
    }

    fn run<S: Element>(
        x: &[S],
        row_len: usize,
        w: Option<&[S::Compute]>,
        b: Option<&[S::Compute]>,
    ) -> Vec<S> {
        let mut y = x.to_vec();
        let mut stats = vec![RowStats::default(); x.len() / row_len];
        layer_norm(
            &RowsRef::from_slice(x, row_len),
            &RowsMut::from_slice(&mut y, row_len),
            w,
            b,
            1e-5,
            &mut stats,
        )
        .unwrap();
        y
    }

    #[test]
    fn matches_slow_reference_f64() {
        let row_len = 37;
        let x = data(row_len * 5, 3.0);
        let w = data(row_len, 1.0);
        let b = data(row_len, -2.0);
        let y = run(&x, row_len, Some(&w), Some(&b));
        let want = layer_norm_slow(&x, row_len, Some(&w), Some(&b), 1e-5);
        for (a, e) in y.iter().zip(&want) {
            assert!((a - e).abs() < 1e-12, "{a} vs {e}");
        }
    }

    #[test]
    fn f32_rows_with_large_offset_normalize_like_f64() {
        let row_len = 4096;
        let x64 = data(row_len * 2, 1.0e4);
        let x: Vec<f32> = x64.iter().map(|&v| v as f32).collect();
        let exact: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
        let want = layer_norm_slow(&exact, row_len, None, None, 1e-5);
        let y = run(&x, row_len, None, None);
        let err = y
            .iter()
            .zip(&want)
            .map(|(a, e)| (f64::from(*a) - e).abs())
            .fold(0.0, f64::max);
        assert!(err < 1e-5, "max abs error {err}");
    }

    #[test]
    fn strided_and_f16_rows_match_contiguous() {
        // A (4, 6) array viewed transposed: rows of length 4 with element stride 6.
        let base: Vec<f64> = data(24, 0.5);
        let xt = ArrayRef::from_slice(&base, &[4, 6])
            .with_leading(&[1])
            .rows(1);
        let mut y = vec![0.0f64; 24];
        layer_norm(
            &xt,
            &RowsMut::from_slice(&mut y, 4),
            None,
            None,
            1e-5,
            &mut [],
        )
        .unwrap();
        let transposed: Vec<f64> = (0..24).map(|k| base[(k % 4) * 6 + k / 4]).collect();
        let want = layer_norm_slow(&transposed, 4, None, None, 1e-5);
        assert!(y.iter().zip(&want).all(|(a, e)| (a - e).abs() < 1e-12));

        let x16: Vec<half::f16> = transposed.iter().map(|&v| half::f16::from_f64(v)).collect();
        let y16 = run(&x16, 4, None, None);
        assert!(y16
            .iter()
            .zip(&want)
            .all(|(a, e)| (a.to_f64() - e).abs() < 4e-3));
    }

    #[test]
    fn in_place_equals_out_of_place() {
        let row_len = 50;
        let x = data(row_len * 3, 2.0);
        let want = run(&x, row_len, None, None);
        let mut buf = x.clone();
        let y = RowsMut::from_slice(&mut buf, row_len);
        layer_norm(&y.as_input(), &y, None, None, 1e-5, &mut []).unwrap();
        assert_eq!(buf, want);
    }

    #[test]
    fn add_layer_norm_is_add_then_norm() {
        let row_len = 33;
        let x = data(row_len * 4, 1.0);
        let r = data(row_len * 4, -3.0);
        let mut y = vec![0.0; x.len()];
        let mut s = vec![0.0; x.len()];
        add_layer_norm(
            &RowsRef::from_slice(&x, row_len),
            &RowsRef::from_slice(&r, row_len),
            &RowsMut::from_slice(&mut y, row_len),
            &RowsMut::from_slice(&mut s, row_len),
            None,
            None,
            1e-5,
            &mut [],
        )
        .unwrap();
        let sum: Vec<f64> = x.iter().zip(&r).map(|(a, b)| a + b).collect();
        assert_eq!(s, sum);
        assert_eq!(y, run(&sum, row_len, None, None));
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = data(8, 0.0);
        let mut y = x.clone();
        let xr = RowsRef::from_slice(&x, 4);
        let yr = RowsMut::from_slice(&mut y, 4);
        assert!(layer_norm(&xr, &yr, None, None, -1.0, &mut []).is_err());
        assert!(layer_norm(&xr, &yr, None, None, f64::NAN, &mut []).is_err());
        assert!(layer_norm(&xr, &yr, Some(&[1.0; 3]), None, 1e-5, &mut []).is_err());
        let zero_len = ArrayRef::from_slice(&x[..0], &[2, 0]).rows(1);
        let empty = ArrayMut::from_slice(&mut [], &[2, 0]);
        let zero_out = empty.rows(1);
        assert!(layer_norm(&zero_len, &zero_out, None, None, 1e-5, &mut []).is_err());
    }

    #[test]
    fn nan_stays_in_its_row() {
        let mut x = data(12, 0.0);
        x[5] = f64::NAN;
        let y = run(&x, 4, None, None);
        assert!(y[4..8].iter().all(|v| v.is_nan()));
        assert!(y[..4].iter().chain(&y[8..]).all(|v| v.is_finite()));
    }
}
