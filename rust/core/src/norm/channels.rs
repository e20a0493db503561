//! The channel-wise norms — BatchNorm, InstanceNorm, GroupNorm — share two row passes over an
//! array seen as rows: per-row moments, and a per-row affine map whose mean/scale/shift come
//! from the row's channel, instance or group. Which statistics a row uses is the only difference.

use super::{in_segments, normalize_into, split_mean};
use crate::element::{Element, Float};
use crate::error::{Error, Result};
use crate::reduce::Moments;
use crate::rows::{check_same_rows, map_rows, Ahead, RowsMut, RowsRef};

/// y = (x − mean) · scale + shift for one row.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RowAffine {
    pub mean: f64,
    pub scale: f64,
    pub shift: f64,
}

/// Moments of every row of `x`, in row order.
///
/// # Safety
/// `x` describes valid memory (see [`map_rows`]).
pub unsafe fn row_moments<S: Element>(x: &RowsRef<S>) -> Vec<Moments> {
    let mut moments = vec![Moments::default(); x.rows.n_rows()];
    let outputs: [&RowsMut<S>; 0] = [];
    // SAFETY: forwarded from the caller.
    unsafe {
        map_rows(
            [x],
            outputs,
            &mut moments,
            #[inline(always)]
            |_, [x], []| Moments::of_slice(x),
        );
    }
    moments
}

/// Merges row moments into `groups` totals, row `r` going to `group_of(r)`, in row order (so
/// results do not depend on threads).
pub fn merge_rows(
    rows: &[Moments],
    groups: usize,
    group_of: impl Fn(usize) -> usize,
) -> Vec<Moments> {
    let mut merged = vec![Moments::default(); groups];
    for (r, m) in rows.iter().enumerate() {
        let g = group_of(r);
        merged[g] = merged[g].merge(*m);
    }
    merged
}

/// Writes `y_row = (x_row − mean) · scale + shift` with each row's parameters from `affine(row)`.
///
/// # Safety
/// As [`map_rows`]: `y` may be `x` itself but not otherwise overlap it.
pub unsafe fn affine_rows<S: Element>(
    x: &RowsRef<S>,
    y: &RowsMut<S>,
    affine: impl Fn(usize) -> RowAffine + Sync,
) -> Result<()> {
    check_same_rows("normalization", &x.rows, &[("out", &y.rows)])?;
    // SAFETY: forwarded from the caller.
    unsafe {
        map_rows(
            [x],
            [y],
            &mut [],
            #[inline(always)]
            |row, [x_row], [y]| {
                let p = affine(row);
                let (hi, lo) = split_mean::<S::Compute>(p.mean);
                let scale = <S::Compute as Float>::from_f64(p.scale);
                let shift = <S::Compute as Float>::from_f64(p.shift);
                in_segments(
                    x.ahead(row),
                    y,
                    #[inline(always)]
                    |at, y| {
                        for (y, &x) in y.iter_mut().zip(&x_row[at..]) {
                            *y = ((x - hi) - lo) * scale + shift;
                        }
                    },
                );
            },
        );
    }
    Ok(())
}

/// Writes `dx_row = (x_row − mean)·scale + shift + grad_row·grad_scale`, the form of a
/// channel-wise norm's input gradient, with each row's parameters from `params(row)`.
///
/// # Safety
/// As [`map_rows`]; `dx` may be `grad` itself.
pub unsafe fn affine_rows_with_grad<S: Element>(
    grad: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    params: impl Fn(usize) -> (RowAffine, f64) + Sync,
) -> Result<()> {
    check_same_rows(
        "normalization backward",
        &x.rows,
        &[("grad", &grad.rows), ("dx", &dx.rows)],
    )?;
    // SAFETY: forwarded from the caller.
    unsafe {
        map_rows(
            [grad, x],
            [dx],
            &mut [],
            #[inline(always)]
            |row, [g, x], [dx]| {
                let (p, grad_scale) = params(row);
                normalize_into(x, dx, p.mean, p.scale, None, None, Ahead::NONE);
                let shift = <S::Compute as Float>::from_f64(p.shift);
                let grad_scale = <S::Compute as Float>::from_f64(grad_scale);
                for (d, &g) in dx.iter_mut().zip(g) {
                    *d = *d + shift + g * grad_scale;
                }
            },
        );
    }
    Ok(())
}

/// Per-channel weight (default 1) and bias (default 0) of channel `c`.
pub fn channel_affine(weight: Option<&[f64]>, bias: Option<&[f64]>, c: usize) -> (f64, f64) {
    (weight.map_or(1.0, |w| w[c]), bias.map_or(0.0, |b| b[c]))
}

/// PyTorch's running-statistics update: `running = (1 − m)·running + m·batch`, where the batch
/// variance entering `running_var` is the unbiased one (n / (n − 1) times the biased).
pub fn update_running(running: &mut [f64], batch: &[f64], momentum: f64) {
    for (r, &b) in running.iter_mut().zip(batch) {
        *r = (1.0 - momentum) * *r + momentum * b;
    }
}

/// `momentum` must lie in [0, 1].
pub fn check_momentum(op: &str, momentum: f64) -> Result<()> {
    if (0.0..=1.0).contains(&momentum) {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{op}: momentum must be in [0, 1], got {momentum}"
        )))
    }
}

/// `num_groups` must be ≥ 1 and divide `channels`.
pub fn check_groups(channels: usize, num_groups: usize) -> Result<()> {
    if num_groups == 0 || channels % num_groups != 0 {
        return Err(Error::InvalidArgument(format!(
            "group_norm: num_groups={num_groups} must be >= 1 and divide the {channels} channels"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::Rows;

    #[test]
    fn per_channel_moments_of_nchw() {
        // (2, 3, 4): channel c holds values c*10 + {0..4} in both samples.
        let x: Vec<f64> = (0..24)
            .map(|i| f64::from((i / 4) % 3 * 10 + i % 4))
            .collect();
        let view = RowsRef {
            ptr: x.as_ptr(),
            rows: Rows::split(&[2, 3, 4], &[12, 4, 1], 1),
        };
        let per_row = unsafe { row_moments(&view) };
        let per_channel = merge_rows(&per_row, 3, |r| r % 3);
        for (c, m) in per_channel.iter().enumerate() {
            assert!((m.mean - (c as f64 * 10.0 + 1.5)).abs() < 1e-12);
            assert!((m.variance() - 1.25).abs() < 1e-12);
            assert!((m.count - 8.0).abs() < 1e-12);
        }
    }

    #[test]
    fn affine_rows_applies_row_parameters() {
        let x = vec![1.0f32, 2.0, 3.0, 4.0];
        let mut y = vec![0.0f32; 4];
        unsafe {
            affine_rows(
                &RowsRef::from_slice(&x, 2),
                &RowsMut::from_slice(&mut y, 2),
                |row| RowAffine {
                    mean: row as f64,
                    scale: 2.0,
                    shift: 0.5,
                },
            )
            .unwrap();
        }
        assert_eq!(y, vec![2.5, 4.5, 4.5, 6.5]);
    }

    #[test]
    fn argument_checks() {
        assert!(check_momentum("bn", 1.5).is_err() && check_momentum("bn", -0.1).is_err());
        assert!(check_momentum("bn", f64::NAN).is_err() && check_momentum("bn", 0.1).is_ok());
        assert!(
            check_groups(12, 5).is_err()
                && check_groups(12, 0).is_err()
                && check_groups(12, 4).is_ok()
        );
    }
}
