//! Per-channel statistics of a batch on the device (BatchNorm training, InstanceNorm's running
//! statistics) and the in-place running-statistic updates. The kernels are in
//! `shaders/batch_stats.wgsl` and `shaders/running.wgsl`.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::ops::{chunks, new_like, part, to_u32};
use crate::pipelines::{Binding, BATCH_STATS, RUNNING, WG};
use crate::tensor::Tensor;

/// Values of a channel one workgroup reduces in stage 1 (`BLOCK` in batch_stats.wgsl).
const BLOCK: u64 = 4096;

/// Each channel's statistics, in the compute dtype.
pub(crate) struct ChannelStats {
    /// The mean in two parts for the normalization: `pivot + dev_mean`.
    pub(crate) pivot: Tensor,
    pub(crate) dev_mean: Tensor,
    /// The biased variance (M2 / n).
    pub(crate) var: Tensor,
    pub(crate) mean: Tensor,
    pub(crate) rstd: Tensor,
    /// M2 / (n − correction): the batch variance the running variance moves towards.
    pub(crate) corrected: Tensor,
}

/// The statistics of each channel (at `axis`) of `x` over every other axis.
pub(crate) fn channel_stats(
    ctx: &Context,
    op: &str,
    x: &Tensor,
    axis: usize,
    eps: f64,
    correction: f64,
) -> Result<ChannelStats> {
    let dtype = x.dtype();
    let compute = dtype.compute();
    let shape = x.shape();
    let channels = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let per_channel = || new_like(ctx, &[channels], compute);
    let stats = ChannelStats {
        pivot: per_channel()?,
        dev_mean: per_channel()?,
        var: per_channel()?,
        mean: per_channel()?,
        rstd: per_channel()?,
        corrected: per_channel()?,
    };
    if channels == 0 {
        return Ok(stats);
    }
    let slice_bytes = (channels * inner * dtype.size()) as u64;
    let counts = if inner == 0 { 0 } else { outer as u64 };
    let parts = chunks(ctx, counts, &[slice_bytes])?;
    // Each dispatch's values per channel, blocks per channel and first block.
    let mut first = 0u64;
    let plan: Vec<(u64, u64, u64)> = parts
        .iter()
        .map(|&(_, slices)| {
            let values = slices * inner as u64;
            let blocks = values.div_ceil(BLOCK);
            first += blocks;
            (values, blocks, first - blocks)
        })
        .collect();
    let blocks = first;
    let partials = new_like(
        ctx,
        &[(channels as u64 * blocks * 3).max(1) as usize],
        compute,
    )?;
    let c32 = to_u32(op, "channels", channels as u64)?;
    let inner32 = to_u32(op, "inner size", inner as u64)?;
    let stage = |n: u32| ctx.pipeline(BATCH_STATS, dtype, None, &[("STAGE", f64::from(n))]);
    let fixed = [
        Binding::whole(stats.pivot.buffer()),
        Binding::whole(partials.buffer()),
        Binding::whole(stats.dev_mean.buffer()),
        Binding::whole(stats.var.buffer()),
        Binding::whole(stats.mean.buffer()),
        Binding::whole(stats.rstd.buffer()),
        Binding::whole(stats.corrected.buffer()),
    ];
    let with_x = |x| with_first(x, &fixed);
    let f = [eps, correction, 0.0, 0.0];
    ctx.checked(|| {
        if blocks > 0 {
            let pivots = stage(0)?;
            let groups = to_u32(op, "workgroups", (channels as u64).div_ceil(u64::from(WG)))?;
            let values = to_u32(op, "values per channel", plan[0].0)?;
            let params = ctx.params(dtype, [values, inner32, groups, c32], [0; 4], f);
            let x0 = part(x, slice_bytes, parts[0]);
            ctx.dispatch(&pivots, &with_x(x0), &params, groups)?;
            let block_stats = stage(1)?;
            let total = to_u32(op, "blocks", blocks)?;
            for (&chunk, &(values, chunk_blocks, first)) in parts.iter().zip(&plan) {
                let groups = to_u32(op, "workgroups", chunk_blocks * channels as u64)?;
                let params = ctx.params(
                    dtype,
                    [
                        to_u32(op, "values per channel", values)?,
                        inner32,
                        groups,
                        c32,
                    ],
                    [
                        to_u32(op, "blocks", chunk_blocks)?,
                        to_u32(op, "blocks", first)?,
                        total,
                        0,
                    ],
                    f,
                );
                ctx.dispatch(
                    &block_stats,
                    &with_x(part(x, slice_bytes, chunk)),
                    &params,
                    groups,
                )?;
            }
        }
        let merge = stage(2)?;
        let total = to_u32(op, "blocks", blocks)?;
        let params = ctx.params(dtype, [0, inner32, c32, c32], [0, 0, total, 0], f);
        // x is not read: any buffer of at least one element stands in.
        ctx.dispatch(
            &merge,
            &with_x(Binding::whole(partials.buffer())),
            &params,
            c32,
        )
    })?;
    Ok(stats)
}

fn with_first<'a>(first: Binding<'a>, rest: &[Binding<'a>]) -> Vec<Binding<'a>> {
    std::iter::once(first).chain(rest.iter().copied()).collect()
}

/// `running = (1 − factor)·running + factor·batch` in place, the batch value of entry r the mean
/// of `batch[j·R + r]` over j < `instances` (R: running's length).
pub(crate) fn update_running(
    ctx: &Context,
    op: &str,
    batch: &Tensor,
    running: &Tensor,
    instances: usize,
    factor: f64,
) -> Result<()> {
    let entries = running.len() as u64;
    if entries == 0 {
        return Ok(());
    }
    let pipeline = ctx.pipeline(RUNNING, batch.dtype(), Some(running.dtype()), &[])?;
    let groups = to_u32(op, "workgroups", entries.div_ceil(u64::from(WG)))?;
    let params = ctx.params(
        batch.dtype(),
        [to_u32(op, "channels", entries)?, 0, groups, 0],
        [to_u32(op, "instances", instances as u64)?, 0, 0, 0],
        [factor, 0.0, 0.0, 0.0],
    );
    let bindings = [
        Binding::whole(batch.buffer()),
        Binding::whole(running.buffer()),
    ];
    ctx.checked(|| ctx.dispatch(&pipeline, &bindings, &params, groups))
}

/// Running statistics updated in place must be device memory of their own, of a float dtype this
/// device computes with.
pub(crate) fn check_running(
    ctx: &Context,
    op: &str,
    written: &[(&str, Option<&Tensor>)],
    others: &[(&str, Option<&Tensor>)],
) -> Result<()> {
    for (i, &(name, t)) in written.iter().enumerate() {
        let Some(t) = t else { continue };
        t.dtype().check(ctx, op, name)?;
        for &(other_name, other) in written[i + 1..].iter().chain(others) {
            if other.is_some_and(|o| o.same_memory(t)) {
                return Err(Error::Value(rsnorm_core::Error::InvalidArgument(format!(
                    "{op}: {name} and {other_name} share memory; {name} is written in place, so \
                     pass arrays that do not overlap"
                ))));
            }
        }
    }
    Ok(())
}
