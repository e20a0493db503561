//! The backward of the channel-wise norms (BatchNorm, InstanceNorm, GroupNorm): one entry,
//! [`channel_norm_backward`], over rows of one channel each or, for channel-last BatchNorm data,
//! down columns. The forms of the gradients are those of `norm::backward`.

use super::super::backward::grad_sums;
use super::super::split_mean;
use super::RowAffine;
use crate::element::{Element, Float};
use crate::error::{Error, Result};
use crate::rows::{check_same_rows, map_rows, ArrayMut, ArrayRef, RowsMut, RowsRef};

/// How rows of a channel-wise norm map to statistics and parameters.
pub struct GroupedRows<'a> {
    /// Index into mean/rstd of row r (channel for BatchNorm, row for InstanceNorm, group for GroupNorm).
    pub stat_of_row: &'a (dyn Fn(usize) -> usize + Sync),
    /// Channel of row r (index into weight, dweight, dbias).
    pub channel_of_row: &'a (dyn Fn(usize) -> usize + Sync),
    pub channels: usize,
}

/// How the forward used its statistics, which decides the input gradient's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatsUse {
    /// The batch's mean and variance (training): dx has the terms through both.
    Batch,
    /// The batch's mean only (mean-only BatchNorm, whose rstd is 1): dx = w·(go − mean(go)).
    BatchMean,
    /// Constants (running statistics in evaluation): dx = go·w·rstd.
    Constant,
}

impl StatsUse {
    /// (mean(g), mean(g·x̂)) from their sums over `count` elements, as [`dx_params`] takes them.
    fn means(self, a: f64, b: f64, count: f64) -> Option<(f64, f64)> {
        match self {
            StatsUse::Batch => Some((a / count, b / count)),
            StatsUse::BatchMean => Some((a / count, 0.0)),
            StatsUse::Constant => None,
        }
    }
}

/// BatchNorm / InstanceNorm / GroupNorm backward over rows of one channel each (see
/// [`channel_norm_backward`] for the entry point). Returns (dweight, dbias) per channel.
pub fn grouped_norm_backward<S: Element>(
    grad_out: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    mean: &[f64],
    rstd: &[f64],
    weight: Option<&[f64]>,
    stats_use: StatsUse,
    layout: &GroupedRows<'_>,
) -> Result<(Vec<f64>, Vec<f64>)> {
    // Streams memory: 256-bit vectors measured faster for f32 lanes from the L3 (see
    // `simd::streaming`).
    crate::simd::streaming_lanes::<S::Compute, _>(grad_out.bytes() + x.bytes() + dx.bytes(), || {
        const OP: &str = "norm backward";
        check_same_rows(
            OP,
            x.rows(),
            &[("grad_out", grad_out.rows()), ("dx", dx.rows())],
        )?;
        let n_rows = x.rows().n_rows();
        let n_stats = mean.len();
        // (statistic, channel) of every row, looked up once: the layout's closures are dynamic
        // calls, several per row in the passes below, which cost more than a 49-value row.
        let row_map: Vec<(usize, usize)> = (0..n_rows)
            .map(|r| ((layout.stat_of_row)(r), (layout.channel_of_row)(r)))
            .collect();
        if rstd.len() != n_stats || row_map.iter().any(|&(s, _)| s >= n_stats) {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: mean/rstd have {}/{} values, which does not fit x (statistics from another shape?)",
                mean.len(),
                rstd.len()
            )));
        }
        // Pass 1: per-row Σ go and Σ go·x̂.
        let mut sums = vec![(0.0, 0.0); n_rows];
        let outputs: [&RowsMut<S>; 0] = [];
        map_rows(
            [grad_out, x],
            outputs,
            &mut sums,
            #[inline(always)]
            |row, [go, x], []| {
                let (s, _) = row_map[row];
                let (hi, lo) = split_mean::<S::Compute>(mean[s]);
                let r = <S::Compute as Float>::from_f64(rstd[s]);
                grad_sums(go, x, None, hi, lo, r)
            },
        );
        let mut dweight = vec![0.0; layout.channels];
        let mut dbias = vec![0.0; layout.channels];
        let mut a = vec![0.0; n_stats];
        let mut b = vec![0.0; n_stats];
        let mut count = vec![0.0; n_stats];
        let row_len = x.rows().row_len() as f64;
        for (&(sg, sgx), &(s, c)) in sums.iter().zip(&row_map) {
            dbias[c] += sg;
            dweight[c] += sgx;
            let w = weight.map_or(1.0, |w| w[c]);
            a[s] += w * sg;
            b[s] += w * sgx;
            count[s] += row_len;
        }
        // Pass 2: dx = rstd·(w·go − mean(g) − x̂·mean(g·x̂)), the means over each statistic's elements.
        super::affine_rows_with_grad(grad_out, x, dx, |row| {
            let (s, c) = row_map[row];
            let means = stats_use.means(a[s], b[s], count[s]);
            dx_params(mean[s], rstd[s], weight.map_or(1.0, |w| w[c]), means)
        })?;
        Ok((dweight, dbias))
    })
}

/// Which statistics the rows of a channel-wise norm share.
#[derive(Clone, Copy, Debug)]
pub enum ChannelStats {
    /// One per channel at `axis` (BatchNorm).
    Channel { axis: usize },
    /// One per (sample, channel) of (N, C, ...) (InstanceNorm).
    Instance,
    /// One per (sample, group) of (N, C, ...), `groups` dividing C (GroupNorm).
    Group { groups: usize },
}

impl ChannelStats {
    /// (channels, statistics) of an x of `shape`, after checking its rank.
    pub fn counts(self, op: &str, shape: &[usize]) -> Result<(usize, usize)> {
        match self {
            ChannelStats::Channel { axis } => Ok((shape[axis], shape[axis])),
            ChannelStats::Instance | ChannelStats::Group { .. } => {
                let (batch, channels, _) = super::batched_channels(op, shape)?;
                let per_sample = match self {
                    ChannelStats::Group { groups } => groups,
                    _ => channels,
                };
                Ok((channels, batch * per_sample))
            }
        }
    }
}

/// The backward of a channel-wise norm: from `grad_out`, `x` and the forward's statistics (as
/// [`ChannelStats`] lays them out, `stats.counts` values each), writes dx and returns (dweight,
/// dbias) per channel. Channel-last BatchNorm data (short runs after the channel axis) runs down
/// columns, as its forward does.
pub fn channel_norm_backward<S: Element>(
    op: &str,
    grad_out: &ArrayRef<S>,
    x: &ArrayRef<S>,
    dx: &ArrayMut<S>,
    (mean, rstd): (&[f64], &[f64]),
    weight: Option<&[f64]>,
    stats: ChannelStats,
    stats_use: StatsUse,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let shape = &x.shape();
    let (channels, _) = stats.counts(op, shape)?;
    let inner_ndim = match stats {
        ChannelStats::Channel { axis } => shape.len() - axis - 1,
        _ => shape.len() - 2,
    };
    let inner_len: usize = shape[shape.len() - inner_ndim..].iter().product();
    // Channel last (as the forward): rows of (channel, inner) values, sums down columns.
    let by_columns = matches!(stats, ChannelStats::Channel { .. })
        && inner_len < super::super::batch_norm::COLUMN_PATH_BELOW;
    let row_dims = inner_ndim + usize::from(by_columns);
    let (xv, gv, dv) = (x.rows(row_dims), grad_out.rows(row_dims), dx.rows(row_dims));
    if by_columns {
        return column_batch_norm_backward(&gv, &xv, &dv, inner_len, mean, rstd, weight, stats_use);
    }
    let per_group = match stats {
        ChannelStats::Group { groups } => channels / groups.max(1),
        _ => 1,
    };
    let stat_of_row = move |r: usize| match stats {
        ChannelStats::Channel { .. } => r % channels,
        ChannelStats::Instance => r,
        ChannelStats::Group { groups } => (r / channels) * groups + (r % channels) / per_group,
    };
    let channel_of_row = move |r: usize| r % channels;
    let layout = GroupedRows {
        stat_of_row: &stat_of_row,
        channel_of_row: &channel_of_row,
        channels,
    };
    grouped_norm_backward(&gv, &xv, &dv, mean, rstd, weight, stats_use, &layout)
}

/// The per-slice form of a channel-wise norm's input gradient, dx = go·(w·r) − ma·r − (x − mean)·r²·mb,
/// as (affine on x, factor on go); `means` = (mean(g), mean(g·x̂)), None in eval mode (constants).
fn dx_params(mean: f64, r: f64, w: f64, means: Option<(f64, f64)>) -> (RowAffine, f64) {
    let (ma, mb) = means.unwrap_or((0.0, 0.0));
    (
        RowAffine {
            mean,
            scale: -r * r * mb,
            shift: -ma * r,
        },
        w * r,
    )
}

/// BatchNorm backward over channel-last data: `x` seen as rows of `mean.len() · inner` columns,
/// column k belonging to channel k / inner (see [`super::columns`]). The same arithmetic as
/// [`grouped_norm_backward`], with the sums run down columns. Returns (dweight, dbias).
pub fn column_batch_norm_backward<S: Element>(
    grad_out: &RowsRef<S>,
    x: &RowsRef<S>,
    dx: &RowsMut<S>,
    inner: usize,
    mean: &[f64],
    rstd: &[f64],
    weight: Option<&[f64]>,
    stats_use: StatsUse,
) -> Result<(Vec<f64>, Vec<f64>)> {
    // Streams memory: 256-bit vectors measured faster beyond the L3 (see `simd::streaming`).
    crate::simd::streaming(grad_out.bytes() + x.bytes() + dx.bytes(), || {
        const OP: &str = "norm backward";
        let channels = mean.len();
        let columns = channels * inner;
        check_same_rows(
            OP,
            x.rows(),
            &[("grad_out", grad_out.rows()), ("dx", dx.rows())],
        )?;
        if rstd.len() != channels || x.rows().row_len() != columns {
            return Err(Error::ShapeMismatch(format!(
                "{OP}: mean/rstd have {}/{} values, which does not fit x (statistics from another shape?)",
                mean.len(),
                rstd.len()
            )));
        }
        let channel = |k: usize| k / inner.max(1);
        let (hi, lo): (Vec<S::Compute>, Vec<S::Compute>) = (0..columns)
            .map(|k| split_mean::<S::Compute>(mean[channel(k)]))
            .unzip();
        let r: Vec<S::Compute> = (0..columns)
            .map(|k| Float::from_f64(rstd[channel(k)]))
            .collect();
        let (sg, sgx) = super::super::columns::column_grad_sums(grad_out, x, &hi, &lo, &r);
        let mut dweight = vec![0.0; channels];
        let mut dbias = vec![0.0; channels];
        let (mut a, mut b) = (vec![0.0; channels], vec![0.0; channels]);
        for k in 0..columns {
            let c = channel(k);
            dbias[c] += sg[k];
            dweight[c] += sgx[k];
            let w = weight.map_or(1.0, |w| w[c]);
            a[c] += w * sg[k];
            b[c] += w * sgx[k];
        }
        let count = (x.rows().n_rows() * inner) as f64;
        let params: Vec<(RowAffine, f64)> = (0..columns)
            .map(|k| {
                let c = channel(k);
                let means = stats_use.means(a[c], b[c], count);
                dx_params(mean[c], rstd[c], weight.map_or(1.0, |w| w[c]), means)
            })
            .collect();
        super::super::columns::affine_columns_with_grad(grad_out, x, dx, &params)?;
        Ok((dweight, dbias))
    })
}
