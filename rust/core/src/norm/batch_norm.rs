//! BatchNorm's entry point: its rules (argument checks, PyTorch's running-statistic updates, the
//! choice between rows and columns) written once, for every binding. The row and column kernels it
//! runs are the channel machinery of `norm::channels` and `norm::columns`.

use crate::element::Element;
use crate::error::{check_eps, resolve_axis, shape_str, Error, Result};
use crate::norm::channels::backward::{channel_norm_backward, ChannelStats, StatsUse};
pub use crate::norm::channels::RunningStats;
use crate::norm::channels::{
    affine_rows, check_momentum, merge_rows, normalize_row_groups, rstd, running_moments,
    update_running, RowAffine, RowGrouping,
};
use crate::norm::columns::{affine_columns, column_moments};
use crate::reduce::Moments;
use crate::rows::{ArrayMut, ArrayRef};

const OP: &str = "batch_norm";

/// Below this many values per (sample, channel) slice, BatchNorm runs down columns (see
/// `norm::columns`) instead of over rows that short.
pub const COLUMN_PATH_BELOW: usize = 32;

/// How a BatchNorm call normalizes, as `torch.nn.functional.batch_norm` takes it.
#[derive(Clone, Copy, Debug)]
pub struct BatchNormOptions {
    /// Batch statistics, and running statistics updated in place (else the running ones are used).
    pub training: bool,
    /// Weight of the new batch in the running statistics; None: the cumulative average.
    pub momentum: Option<f64>,
    pub eps: f64,
    /// Subtract the mean only (mean-only batch norm); the running variance is neither used nor
    /// updated.
    pub mean_only: bool,
    /// Batches counted before this one (for the cumulative average).
    pub num_batches_tracked: Option<i64>,
    /// The running variance moves towards the batch's M2 / (n − correction): 1 is PyTorch's
    /// (unbiased), 0 Keras' and ONNX's (biased).
    pub running_var_correction: i64,
}

impl BatchNormOptions {
    /// The checks of the scalar arguments and of x's rank; returns the channel axis.
    pub fn channel_axis(&self, axis: i64, shape: &[usize]) -> Result<usize> {
        check_eps(OP, self.eps)?;
        if let Some(n) = self.num_batches_tracked.filter(|&n| n < 0) {
            return Err(Error::InvalidArgument(format!(
                "{OP}: num_batches_tracked must be >= 0, got {n}"
            )));
        }
        if let Some(m) = self.momentum {
            check_momentum(OP, m)?;
        }
        if self.running_var_correction < 0 {
            return Err(Error::InvalidArgument(format!(
                "{OP}: running_var_correction must be >= 0 (1: unbiased, as PyTorch; 0: biased, as \
                 Keras and ONNX), got {}",
                self.running_var_correction
            )));
        }
        if shape.is_empty() {
            return Err(Error::InvalidArgument(format!(
                "{OP}: x is 0-dimensional; it needs a channel axis"
            )));
        }
        resolve_axis(OP, axis, shape.len())
    }

    /// The checks of a call that normalizes with the batch's statistics (x of `shape`, channels at
    /// `axis`), and the weight of the batch in the running statistics (0 when none are updated).
    pub fn batch_factor(
        &self,
        shape: &[usize],
        axis: usize,
        has_running_mean: bool,
    ) -> Result<f64> {
        let total: usize = shape.iter().product();
        let count = total.checked_div(shape[axis]).unwrap_or(0);
        // The rows the kernels see: (outer, channel) slices, or outer rows on the column path.
        let inner_len: usize = shape[axis + 1..].iter().product();
        let row_end = if inner_len < COLUMN_PATH_BELOW {
            axis
        } else {
            axis + 1
        };
        let n_rows: usize = shape[..row_end].iter().product();
        if count == 0 && n_rows > 0 {
            return Err(Error::InvalidArgument(format!(
                "{OP}: no values per channel in x of shape {}",
                shape_str(shape)
            )));
        }
        if self.training && count <= 1 && !self.mean_only && total > 0 {
            return Err(Error::InvalidArgument(format!(
                "{OP}: expected more than 1 value per channel when training, got x of shape {}",
                shape_str(shape)
            )));
        }
        Ok(match (self.momentum, self.num_batches_tracked) {
            (Some(m), _) => m,
            (None, Some(n)) => 1.0 / (n as f64 + 1.0),
            (None, None) if self.training && has_running_mean => {
                return Err(Error::InvalidArgument(format!(
                    "{OP}: momentum=None (cumulative average) needs num_batches_tracked, the batches \
                     seen before"
                )))
            }
            (None, None) => 0.0,
        })
    }

    /// Whether the running mean (and, unless mean-only, variance) are written.
    pub fn writes_running_var(&self) -> bool {
        self.training && !self.mean_only
    }
}

/// Normalizes `x` into `y` (channels at `axis`, from [`BatchNormOptions::channel_axis`]) and
/// returns each channel's statistics: the batch's, or the running ones as a count of 1 whose M2
/// is the variance. `weight`, `bias` and the running statistics have one value per channel.
pub fn batch_norm<S: Element>(
    x: &ArrayRef<S>,
    y: &ArrayMut<S>,
    axis: usize,
    weight: Option<&[f64]>,
    bias: Option<&[f64]>,
    running: RunningStats<'_>,
    o: &BatchNormOptions,
) -> Result<Vec<Moments>> {
    let shape = &x.shape();
    let channels = shape[axis];
    if !o.mean_only {
        running.check_paired(OP)?;
    }
    let inner_ndim = shape.len() - axis - 1;
    let inner_len: usize = shape[axis + 1..].iter().product();
    // Channel last (or nearly): rows of (channel, inner) values, statistics down the columns.
    let by_columns = inner_len < COLUMN_PATH_BELOW;
    let row_dims = if by_columns {
        inner_ndim + 1
    } else {
        inner_ndim
    };
    let (xv, yv) = (x.rows(row_dims), y.rows(row_dims));
    let columns = channels * inner_len;
    let mean_only = o.mean_only;
    // Mean-only subtracts the mean and applies weight and bias: an rstd of 1.
    let channel_params = |c: usize, mean: f64, rstd: f64| {
        RowAffine::standardize(mean, if mean_only { 1.0 } else { rstd }, weight, bias, c)
    };
    // Batch statistics when training, or when there are no running statistics to use.
    if !(o.training || running.mean.is_none()) {
        let mean: Vec<f64> = running.mean.as_deref().unwrap_or_default().to_vec();
        let var = running
            .var
            .as_deref()
            .map_or_else(|| vec![1.0; channels], <[f64]>::to_vec);
        // Once per channel: a short row's own square root and division cost more than its values.
        let params: Vec<RowAffine> = (0..channels)
            .map(|c| channel_params(c, mean[c], rstd(var[c], o.eps)))
            .collect();
        if by_columns {
            let params: Vec<RowAffine> =
                (0..columns).map(|k| params[k / inner_len.max(1)]).collect();
            affine_columns(&xv, &yv, &params)?;
        } else {
            affine_rows(&xv, &yv, |row| params[row % channels])?;
        }
        return Ok(running_moments(&mean, &var));
    }
    let factor = o.batch_factor(shape, axis, running.mean.is_some())?;
    let per_channel = if by_columns {
        let per_column = column_moments(&xv, columns);
        let per_channel = merge_rows(&per_column, channels, |k| k / inner_len.max(1));
        let params: Vec<RowAffine> = (0..columns)
            .map(|k| {
                let m = &per_channel[k / inner_len.max(1)];
                channel_params(k / inner_len.max(1), m.mean, m.rstd(o.eps))
            })
            .collect();
        affine_columns(&xv, &yv, &params)?;
        per_channel
    } else {
        let grouping = RowGrouping::Interleaved { groups: channels };
        normalize_row_groups(&xv, &yv, grouping, o.eps, |_, g| {
            channel_params(g.group, g.mean, g.rstd)
        })?
    };
    if o.training {
        if let Some(running_mean) = running.mean {
            let mean: Vec<f64> = per_channel.iter().map(|m| m.mean).collect();
            update_running(running_mean, &mean, factor);
        }
        if let (Some(running_var), false) = (running.var, o.mean_only) {
            let correction = o.running_var_correction as f64;
            let corrected: Vec<f64> = per_channel
                .iter()
                .map(|m| m.m2() / (m.count - correction))
                .collect();
            update_running(running_var, &corrected, factor);
        }
    }
    Ok(per_channel)
}

/// BatchNorm's backward (channels at `axis`, resolved as the forward's): dx written, (dweight,
/// dbias) per channel returned. `training` differentiates through the batch statistics, else they
/// are constants; mean-only BatchNorm scaled by 1, so its `rstd` is not read.
pub fn batch_norm_backward<S: Element>(
    grad_out: &ArrayRef<S>,
    x: &ArrayRef<S>,
    dx: &ArrayMut<S>,
    (mean, rstd): (&[f64], &[f64]),
    weight: Option<&[f64]>,
    axis: usize,
    training: bool,
    mean_only: bool,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let ones;
    let rstd = if mean_only {
        ones = vec![1.0; rstd.len()];
        &ones[..]
    } else {
        rstd
    };
    let stats_use = match (training, mean_only) {
        (false, _) => StatsUse::Constant,
        (true, false) => StatsUse::Batch,
        (true, true) => StatsUse::BatchMean,
    };
    let stats = ChannelStats::Channel { axis };
    channel_norm_backward(
        BACKWARD_OP,
        grad_out,
        x,
        dx,
        (mean, rstd),
        weight,
        stats,
        stats_use,
    )
}

/// The backward's name in messages.
pub const BACKWARD_OP: &str = "batch_norm_backward";

#[cfg(test)]
mod tests {
    use super::*;

    fn run(
        x: &[f64],
        shape: &[usize],
        axis: i64,
        running: RunningStats<'_>,
        o: &BatchNormOptions,
    ) -> Result<(Vec<f64>, Vec<Moments>)> {
        let mut y = vec![0.0; x.len()];
        let axis = o.channel_axis(axis, shape)?;
        let (xv, yv) = (
            ArrayRef::from_slice(x, shape),
            ArrayMut::from_slice(&mut y, shape),
        );
        let stats = batch_norm(&xv, &yv, axis, None, None, running, o)?;
        Ok((y, stats))
    }

    fn training(momentum: Option<f64>, num_batches_tracked: Option<i64>) -> BatchNormOptions {
        BatchNormOptions {
            training: true,
            momentum,
            eps: 0.0,
            mean_only: false,
            num_batches_tracked,
            running_var_correction: 1,
        }
    }

    #[test]
    fn training_normalizes_per_channel_and_updates_running_stats() {
        // (N=2, C=2, L=2): channel 0 holds 1, 2, 5, 6; channel 1 holds 3, 4, 7, 8.
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        for (shape, axis) in [(vec![2, 2, 2], 1), (vec![2, 2, 2], -2)] {
            let (mut mean, mut var) = (vec![0.0, 10.0], vec![1.0, 1.0]);
            let running = RunningStats {
                mean: Some(&mut mean),
                var: Some(&mut var),
            };
            let (y, stats) = run(&x, &shape, axis, running, &training(Some(0.5), None)).unwrap();
            // Batch variance of {1, 2, 5, 6} is 4.25 (biased), 17/3 unbiased.
            assert!((stats[0].mean - 3.5).abs() < 1e-15);
            assert!((y[0] - (1.0 - 3.5) / 4.25f64.sqrt()).abs() < 1e-12);
            assert_eq!(mean, vec![1.75, 7.75]);
            assert!((var[0] - (0.5 + 0.5 * 17.0 / 3.0)).abs() < 1e-12);
        }
        // Keras and ONNX: towards the biased variance.
        let (mut mean, mut var) = (vec![0.0, 10.0], vec![1.0, 1.0]);
        let running = RunningStats {
            mean: Some(&mut mean),
            var: Some(&mut var),
        };
        let biased = BatchNormOptions {
            running_var_correction: 0,
            ..training(Some(0.5), None)
        };
        run(&x, &[2, 2, 2], 1, running, &biased).unwrap();
        assert!((var[0] - (0.5 + 0.5 * 4.25)).abs() < 1e-12);
    }

    #[test]
    fn cumulative_average_and_evaluation_use_the_rules_of_pytorch() {
        let x = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0];
        let (mut mean, mut var) = (vec![1.0, 1.0], vec![1.0, 1.0]);
        let running = RunningStats {
            mean: Some(&mut mean),
            var: Some(&mut var),
        };
        run(&x, &[2, 2, 2], 1, running, &training(None, Some(3))).unwrap();
        assert_eq!(mean, vec![0.75 + 3.5 / 4.0, 0.75 + 5.5 / 4.0]);
        let eval = BatchNormOptions {
            training: false,
            ..training(Some(0.1), None)
        };
        let (mut m, mut v) = (vec![1.0, 2.0], vec![4.0, 16.0]);
        let running = RunningStats {
            mean: Some(&mut m),
            var: Some(&mut v),
        };
        let (y, _) = run(&x, &[2, 2, 2], 1, running, &eval).unwrap();
        assert_eq!(&y[..4], &[0.0, 0.5, 0.25, 0.5]);
        assert_eq!((m, v), (vec![1.0, 2.0], vec![4.0, 16.0]));
    }

    #[test]
    fn refused_arguments_name_the_rule() {
        let x = [1.0, 2.0];
        let err = |r: Result<(Vec<f64>, Vec<Moments>)>| r.unwrap_err().to_string();
        let one_each = err(run(
            &x,
            &[1, 2],
            1,
            RunningStats::default(),
            &training(Some(0.1), None),
        ));
        assert!(
            one_each.contains("expected more than 1 value per channel"),
            "{one_each}"
        );
        let (mut mean, mut var) = (vec![0.0], vec![1.0]);
        let running = RunningStats {
            mean: Some(&mut mean),
            var: Some(&mut var),
        };
        let cumulative = err(run(&x, &[2, 1], 1, running, &training(None, None)));
        assert!(
            cumulative.contains("needs num_batches_tracked"),
            "{cumulative}"
        );
        let mut mean = vec![0.0];
        let half = RunningStats {
            mean: Some(&mut mean),
            var: None,
        };
        assert!(err(run(&x, &[2, 1], 1, half, &training(Some(0.1), None))).contains("or neither"));
        let o = training(Some(1.5), None);
        assert!(o
            .channel_axis(1, &[2, 1])
            .unwrap_err()
            .to_string()
            .contains("momentum"));
        assert!(training(Some(0.1), Some(-1))
            .channel_axis(1, &[2, 1])
            .is_err());
        assert!(training(Some(0.1), None).channel_axis(2, &[2, 1]).is_err());
        assert!(training(Some(0.1), None).channel_axis(0, &[]).is_err());
    }
}
