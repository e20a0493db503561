//! GroupNorm's entry points: the channels of (N, C, ...) split into groups, each (sample, group)
//! normalized over its channels and spatial dims, with per-channel weight and bias; forward and
//! backward, and the one check of `num_groups`.

use crate::element::Element;
use crate::error::{check_eps, shape_str, Error, Result};
use crate::norm::channels::backward::{channel_norm_backward, ChannelStats, StatsUse};
use crate::norm::channels::{batched_channels, normalize_row_groups, RowGrouping};
use crate::reduce::Moments;
use crate::rows::{ArrayMut, ArrayRef};

const OP: &str = "group_norm";

/// The backward's name in messages.
pub const BACKWARD_OP: &str = "group_norm_backward";

/// `num_groups` as a count of groups: at least 1 and dividing `channels`.
pub fn groups(op: &str, num_groups: i64, channels: usize) -> Result<usize> {
    match usize::try_from(num_groups) {
        Ok(groups) if groups > 0 && channels.is_multiple_of(groups) => Ok(groups),
        _ => Err(Error::InvalidArgument(format!(
            "{op}: num_groups={num_groups} must be >= 1 and divide the {channels} channels"
        ))),
    }
}

/// How a GroupNorm call normalizes, as `torch.nn.functional.group_norm` takes it.
#[derive(Clone, Copy, Debug)]
pub struct GroupNormOptions {
    pub num_groups: i64,
    pub eps: f64,
}

impl GroupNormOptions {
    /// The checks of the arguments against x's shape; returns (N, C, groups).
    pub fn check(&self, shape: &[usize]) -> Result<(usize, usize, usize)> {
        check_eps(OP, self.eps)?;
        let (batch, channels, spatial) = batched_channels(OP, shape)?;
        let groups = groups(OP, self.num_groups, channels)?;
        if channels / groups * spatial == 0 && batch > 0 {
            return Err(Error::InvalidArgument(format!(
                "{OP}: each group has zero elements in x of shape {}",
                shape_str(shape)
            )));
        }
        Ok((batch, channels, groups))
    }
}

/// Normalizes `x` (N, C, ...) into `y` and returns each (sample, group)'s statistics, N·G of them
/// in row order.
pub fn group_norm<S: Element>(
    x: &ArrayRef<S>,
    y: &ArrayMut<S>,
    weight: Option<&[f64]>,
    bias: Option<&[f64]>,
    o: &GroupNormOptions,
) -> Result<Vec<Moments>> {
    let (_, channels, groups) = o.check(x.shape())?;
    let inner_ndim = x.shape().len() - 2;
    let (xv, yv) = (x.rows(inner_ndim), y.rows(inner_ndim));
    // Rows (sample, channel); a group is `channels / groups` consecutive rows.
    let grouping = RowGrouping::Consecutive {
        len: channels / groups,
    };
    normalize_row_groups(&xv, &yv, grouping, o.eps, |row, g| {
        g.affine(weight, bias, row % channels)
    })
}

/// GroupNorm's backward from the forward's (N·G) statistics: dx written, (dweight, dbias) per
/// channel returned.
pub fn group_norm_backward<S: Element>(
    grad_out: &ArrayRef<S>,
    x: &ArrayRef<S>,
    dx: &ArrayMut<S>,
    stats: (&[f64], &[f64]),
    weight: Option<&[f64]>,
    num_groups: i64,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let stats_layout = backward_stats(x.shape(), num_groups)?;
    channel_norm_backward(
        BACKWARD_OP,
        grad_out,
        x,
        dx,
        stats,
        weight,
        stats_layout,
        StatsUse::Batch,
    )
}

/// The statistics layout of the backward of an x of `shape`, after checking `num_groups`.
pub fn backward_stats(shape: &[usize], num_groups: i64) -> Result<ChannelStats> {
    let (_, channels, _) = batched_channels(BACKWARD_OP, shape)?;
    Ok(ChannelStats::Group {
        groups: groups(BACKWARD_OP, num_groups, channels)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn num_groups_must_divide_the_channels() {
        assert_eq!(groups("op", 2, 6).unwrap(), 2);
        for bad in [0, -1, 4] {
            let err = groups("op", bad, 6).unwrap_err().to_string();
            assert!(
                err.contains(&format!(
                    "num_groups={bad} must be >= 1 and divide the 6 channels"
                )),
                "{err}"
            );
        }
    }

    #[test]
    fn forward_and_backward_match_a_float64_reference() {
        // (N, C, L) = (2, 4, 3) in 2 groups of 2 channels.
        let shape = [2, 4, 3];
        let x: Vec<f64> = (0..24).map(|i| f64::from((i * 7) % 11) - 3.0).collect();
        let go: Vec<f64> = (0..24).map(|i| f64::from((i * 5) % 7) - 2.5).collect();
        let o = GroupNormOptions {
            num_groups: 2,
            eps: 1e-5,
        };
        let mut y = vec![0.0; 24];
        let (xv, yv) = (
            ArrayRef::from_slice(&x, &shape),
            ArrayMut::from_slice(&mut y, &shape),
        );
        let moments = group_norm(&xv, &yv, None, None, &o).unwrap();
        let (mean, rstd): (Vec<f64>, Vec<f64>) =
            moments.iter().map(|m| (m.mean, m.rstd(o.eps))).unzip();
        let mut dx = vec![0.0; 24];
        let (gv, dv) = (
            ArrayRef::from_slice(&go, &shape),
            ArrayMut::from_slice(&mut dx, &shape),
        );
        let (dw, db) = group_norm_backward(&gv, &xv, &dv, (&mean, &rstd), None, 2).unwrap();
        for group in 0..4 {
            let idx: Vec<usize> = (group * 6..group * 6 + 6).collect();
            let m = idx.iter().map(|&i| x[i]).sum::<f64>() / 6.0;
            let var = idx.iter().map(|&i| (x[i] - m).powi(2)).sum::<f64>() / 6.0;
            let r = 1.0 / (var + o.eps).sqrt();
            let xhat: Vec<f64> = idx.iter().map(|&i| (x[i] - m) * r).collect();
            let mg = idx.iter().map(|&i| go[i]).sum::<f64>() / 6.0;
            let mgx = idx.iter().zip(&xhat).map(|(&i, h)| go[i] * h).sum::<f64>() / 6.0;
            for (k, &i) in idx.iter().enumerate() {
                assert!((y[i] - xhat[k]).abs() < 1e-12);
                let want = r * (go[i] - mg - xhat[k] * mgx);
                assert!((dx[i] - want).abs() < 1e-12, "{} vs {want}", dx[i]);
            }
        }
        let want_db: Vec<f64> = (0..4)
            .map(|c| {
                (0..2)
                    .flat_map(|n| (0..3).map(move |l| (n, l)))
                    .map(|(n, l)| go[n * 12 + c * 3 + l])
                    .sum()
            })
            .collect();
        assert_eq!(dw.len(), 4);
        for (a, b) in db.iter().zip(&want_db) {
            assert!((a - b).abs() < 1e-12);
        }
    }
}
