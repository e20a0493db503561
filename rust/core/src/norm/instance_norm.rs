//! InstanceNorm's entry point: each (sample, channel) of (N, C, ...) normalized alone, and
//! PyTorch's rule for running statistics (each instance's statistics averaged over the batch).

use crate::element::Element;
use crate::error::{check_eps, shape_str, Error, Result};
use crate::norm::channels::backward::{channel_norm_backward, ChannelStats, StatsUse};
use crate::norm::channels::{
    affine_rows, batched_channels, check_momentum, normalize_row_groups, rstd, running_moments,
    update_running, RowAffine, RowGrouping, RunningStats,
};
use crate::reduce::Moments;
use crate::rows::{ArrayMut, ArrayRef};

const OP: &str = "instance_norm";

/// How an InstanceNorm call normalizes, as `torch.nn.functional.instance_norm` takes it.
#[derive(Clone, Copy, Debug)]
pub struct InstanceNormOptions {
    /// Each instance's own statistics (and running statistics, if given, updated in place); else
    /// the running statistics.
    pub use_input_stats: bool,
    pub momentum: f64,
    pub eps: f64,
}

impl InstanceNormOptions {
    /// The checks of the scalar arguments and of x's shape; returns (N, C, spatial count).
    pub fn check(&self, shape: &[usize]) -> Result<(usize, usize, usize)> {
        check_eps(OP, self.eps)?;
        check_momentum(OP, self.momentum)?;
        batched_channels(OP, shape)
    }
}

/// Normalizes `x` (N, C, ...) into `y` and returns each instance's statistics, (N·C) of them in
/// row order: its own, or its channel's running ones as a count of 1 whose M2 is the variance.
pub fn instance_norm<S: Element>(
    x: &ArrayRef<S>,
    y: &ArrayMut<S>,
    weight: Option<&[f64]>,
    bias: Option<&[f64]>,
    running: RunningStats<'_>,
    o: &InstanceNormOptions,
) -> Result<Vec<Moments>> {
    let (batch, channels, _) = o.check(x.shape())?;
    running.check_paired(OP)?;
    let inner_ndim = x.shape().len() - 2;
    let (xv, yv) = (x.rows(inner_ndim), y.rows(inner_ndim));
    let n_rows = batch * channels;
    let eps = o.eps;
    let (Some(running_mean), Some(running_var)) = (running.mean, running.var) else {
        if !o.use_input_stats {
            return Err(Error::InvalidArgument(format!(
                "{OP}: use_input_stats=False needs running_mean and running_var"
            )));
        }
        return instance_statistics(&xv, &yv, weight, bias, channels, x.shape(), eps);
    };
    if !o.use_input_stats {
        let (mean, var): (Vec<f64>, Vec<f64>) = (0..n_rows)
            .map(|r| (running_mean[r % channels], running_var[r % channels]))
            .unzip();
        affine_rows(&xv, &yv, |r| {
            RowAffine::standardize(mean[r], rstd(var[r], eps), weight, bias, r % channels)
        })?;
        return Ok(running_moments(&mean, &var));
    }
    let per_row = instance_statistics(&xv, &yv, weight, bias, channels, x.shape(), eps)?;
    // PyTorch: each instance updates its channel's statistics; the N results are averaged.
    let n = batch.max(1) as f64;
    let mut batch_mean = vec![0.0; channels];
    let mut batch_var = vec![0.0; channels];
    for (r, m) in per_row.iter().enumerate() {
        batch_mean[r % channels] += m.mean / n;
        batch_var[r % channels] += m.m2() / (m.count - 1.0) / n;
    }
    update_running(running_mean, &batch_mean, o.momentum);
    update_running(running_var, &batch_var, o.momentum);
    Ok(per_row)
}

/// An instance's own statistics need more than one value, when there are instances (x of
/// `shape`, (N, C, ...) as [`InstanceNormOptions::check`] accepts it).
pub fn check_instances(shape: &[usize]) -> Result<()> {
    let spatial: usize = shape[2..].iter().product();
    if spatial <= 1 && shape[0] * shape[1] > 0 {
        return Err(Error::InvalidArgument(format!(
            "{OP}: expected more than 1 spatial element per instance, got x of shape {}",
            shape_str(shape)
        )));
    }
    Ok(())
}

/// Normalizes each row (instance) with its own statistics.
fn instance_statistics<S: Element>(
    xv: &crate::rows::RowsRef<S>,
    yv: &crate::rows::RowsMut<S>,
    weight: Option<&[f64]>,
    bias: Option<&[f64]>,
    channels: usize,
    shape: &[usize],
    eps: f64,
) -> Result<Vec<Moments>> {
    check_instances(shape)?;
    let grouping = RowGrouping::Consecutive { len: 1 };
    normalize_row_groups(xv, yv, grouping, eps, |r, g| {
        g.affine(weight, bias, r % channels)
    })
}

/// The backward's name in messages.
pub const BACKWARD_OP: &str = "instance_norm_backward";

/// InstanceNorm's backward from the forward's (N·C) statistics: dx written, (dweight, dbias) per
/// channel returned. Without `use_input_stats` the forward used running statistics, constants.
pub fn instance_norm_backward<S: Element>(
    grad_out: &ArrayRef<S>,
    x: &ArrayRef<S>,
    dx: &ArrayMut<S>,
    stats: (&[f64], &[f64]),
    weight: Option<&[f64]>,
    use_input_stats: bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let stats_use = if use_input_stats {
        StatsUse::Batch
    } else {
        StatsUse::Constant
    };
    channel_norm_backward(
        BACKWARD_OP,
        grad_out,
        x,
        dx,
        stats,
        weight,
        ChannelStats::Instance,
        stats_use,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const X: [f64; 8] = [1.0, 2.0, 4.0, 8.0, 3.0, 5.0, 0.0, 4.0];

    fn run(running: RunningStats<'_>, o: &InstanceNormOptions) -> Result<(Vec<f64>, Vec<Moments>)> {
        let mut y = vec![0.0; X.len()];
        let (xv, yv) = (
            ArrayRef::from_slice(&X, &[2, 2, 2]),
            ArrayMut::from_slice(&mut y, &[2, 2, 2]),
        );
        let stats = instance_norm(&xv, &yv, None, None, running, o)?;
        Ok((y, stats))
    }

    #[test]
    fn running_statistics_average_the_instances_of_each_channel() {
        // Instances (N=2, C=2) of 2 values: means 1.5, 6, 4, 2; unbiased variances 0.5, 8, 2, 8.
        let (mut mean, mut var) = (vec![0.0, 0.0], vec![1.0, 1.0]);
        let o = InstanceNormOptions {
            use_input_stats: true,
            momentum: 0.5,
            eps: 0.0,
        };
        let running = RunningStats {
            mean: Some(&mut mean),
            var: Some(&mut var),
        };
        let (y, stats) = run(running, &o).unwrap();
        assert_eq!(y, vec![-1.0, 1.0, -1.0, 1.0, -1.0, 1.0, -1.0, 1.0]);
        assert_eq!(stats.len(), 4);
        assert_eq!(mean, vec![0.5 * 2.75, 0.5 * 4.0]);
        assert_eq!(var, vec![0.5 + 0.5 * 1.25, 0.5 + 0.5 * 8.0]);
    }

    #[test]
    fn evaluation_uses_the_running_statistics_and_refusals_name_the_rule() {
        let (mut mean, mut var) = (vec![1.0, 2.0], vec![4.0, 16.0]);
        let o = InstanceNormOptions {
            use_input_stats: false,
            momentum: 0.1,
            eps: 0.0,
        };
        let running = RunningStats {
            mean: Some(&mut mean),
            var: Some(&mut var),
        };
        let (y, _) = run(running, &o).unwrap();
        assert_eq!(&y[..4], &[0.0, 0.5, 0.5, 1.5]);
        let refused = run(RunningStats::default(), &o).unwrap_err().to_string();
        assert!(refused.contains("use_input_stats=False needs"), "{refused}");
        let mut only_mean = vec![0.0, 0.0];
        let half = RunningStats {
            mean: Some(&mut only_mean),
            var: None,
        };
        assert!(run(half, &o)
            .unwrap_err()
            .to_string()
            .contains("or neither"));
        assert!(InstanceNormOptions { momentum: 2.0, ..o }
            .check(&[2, 2, 2])
            .is_err());
        assert!(o.check(&[4]).is_err());
    }
}
