//! Running statistics and the argument checks the channel norms share.

use crate::error::{Error, Result};
use crate::reduce::Moments;

/// Running statistics per channel, as f64: read in evaluation, updated in place in training.
#[derive(Debug, Default)]
pub struct RunningStats<'a> {
    pub mean: Option<&'a mut [f64]>,
    pub var: Option<&'a mut [f64]>,
}

impl RunningStats<'_> {
    /// Running statistics are given as a pair or not at all.
    pub fn check_paired(&self, op: &str) -> Result<()> {
        check_paired(op, self.mean.is_some(), self.var.is_some())
    }
}

/// Running statistics are given as a pair or not at all (`has_mean`, `has_var`: which are given).
pub fn check_paired(op: &str, has_mean: bool, has_var: bool) -> Result<()> {
    if has_mean != has_var {
        return Err(Error::InvalidArgument(format!(
            "{op}: give both running_mean and running_var, or neither"
        )));
    }
    Ok(())
}

/// Running statistics as the statistics a call used: a count of 1 whose M2 is the variance.
pub fn running_moments(mean: &[f64], var: &[f64]) -> Vec<Moments> {
    (mean.iter().zip(var))
        .map(|(&mean, &var)| Moments::new(1.0, mean, var))
        .collect()
}

/// Each statistic's mean and `1/sqrt(var + eps)`, as a forward returns them for its backward.
pub fn mean_rstd(moments: &[Moments], eps: f64) -> (Vec<f64>, Vec<f64>) {
    (
        moments.iter().map(|m| m.mean).collect(),
        moments.iter().map(|m| m.rstd(eps)).collect(),
    )
}

/// Checks x is (N, C, spatial…) and returns (N, C, spatial element count).
pub fn batched_channels(op: &str, shape: &[usize]) -> Result<(usize, usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::InvalidArgument(format!(
            "{op}: x must be (N, C, ...), got shape {}",
            crate::error::shape_str(shape)
        )));
    }
    Ok((shape[0], shape[1], shape[2..].iter().product()))
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
