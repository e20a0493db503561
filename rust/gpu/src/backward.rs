//! Backward passes on the device: LayerNorm and RMSNorm (and their fused-add forms), dx per row and
//! the parameter gradients summed over rows in a fixed order (the same bits for the same input,
//! however the device schedules the work), as the CPU's `norm::backward` returns them.

use crate::context::context;
use crate::error::{Error, Result};
use crate::ops::{
    chunks, new_like, output, part, part_or, same_shape, threads_per_row, to_dtype, to_u32,
    whole_or, RowKind,
};
use crate::pipelines::{Binding, Pipeline, CHANNELS_BACKWARD, PARAM_GRADS, ROWS_BACKWARD, WG};
use crate::tensor::Tensor;
pub use rsnorm_core::norm::channels::backward::StatsUse;

/// The parameter gradients' first stage cuts each dispatch's rows into about this many blocks
/// (enough workgroups to fill a large GPU, few partial sums for the second stage to add), of at
/// least `MIN_BLOCK_ROWS` rows each.
const PARAM_BLOCKS: u64 = 128;
const MIN_BLOCK_ROWS: u64 = 16;

/// A row norm's backward: x's elements are `rows` rows of `row_len`.
#[derive(Debug, Clone, Copy)]
pub struct RowNormBackward<'a> {
    pub op: &'static str,
    /// `Layer` (centered, `mean` given) or `Rms`.
    pub kind: RowKind,
    pub grad_out: &'a Tensor,
    pub x: &'a Tensor,
    pub rows: usize,
    pub row_len: usize,
    pub mean: Option<&'a Tensor>,
    pub rstd: &'a Tensor,
    pub weight: Option<&'a Tensor>,
    /// Return dweight, dbias (their parameters were given).
    pub dweight: bool,
    pub dbias: bool,
    /// The gradient reaching a fused add's sum output: added to dx.
    pub grad_sum: Option<&'a Tensor>,
    /// Where dx is written (`out=`; it may be grad_out, x or grad_sum), else a new array.
    pub out: Option<&'a Tensor>,
}

#[derive(Debug)]
pub struct RowGrads {
    pub dx: Tensor,
    pub dweight: Option<Tensor>,
    pub dbias: Option<Tensor>,
}

/// The forward's per-row statistic, `expected` values in any shape, in the compute dtype.
fn stats_of(
    ctx: &crate::context::Context,
    op: &str,
    name: &str,
    t: &Tensor,
    expected: usize,
    compute: crate::tensor::DType,
) -> Result<Tensor> {
    if t.len() != expected {
        return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
            "{op}: {name} has {} values (shape {}), expected {expected}: statistics from another \
             shape?",
            t.len(),
            rsnorm_core::error::shape_str(t.shape())
        ))));
    }
    to_dtype(ctx, op, name, t, compute)
}

impl RowNormBackward<'_> {
    pub fn run(&self) -> Result<RowGrads> {
        let ctx = context()?;
        let (op, x) = (self.op, self.x);
        let dtype = x.dtype();
        dtype.check(ctx, op, "x")?;
        let compute = dtype.compute();
        let (rows, cols) = (self.rows, self.row_len);
        assert_eq!(rows * cols, x.len(), "{op}: rows of x");
        let grad = same_shape(ctx, op, "grad_out", self.grad_out, x)?;
        let grad_sum = self
            .grad_sum
            .map(|g| same_shape(ctx, op, "grad_residual_out", g, x))
            .transpose()?;
        let centered = self.kind == RowKind::Layer;
        let mean = match (centered, self.mean) {
            (true, Some(m)) => Some(stats_of(ctx, op, "mean", m, rows, compute)?),
            _ => None,
        };
        let rstd = stats_of(ctx, op, "rstd", self.rstd, rows, compute)?;
        let weight = self
            .weight
            .map(|w| to_dtype(ctx, op, "weight", w, dtype))
            .transpose()?;
        let dx = output(ctx, op, "out", self.out, x.shape(), dtype)?;
        let want = self.dweight || self.dbias;
        let (dweight, dbias) = if want {
            (
                Some(new_like(ctx, &[cols], dtype)?),
                Some(new_like(ctx, &[cols], dtype)?),
            )
        } else {
            (None, None)
        };
        let flag = |b: bool| f64::from(u8::from(b));
        let t = threads_per_row(cols);
        let pipeline = ctx.pipeline(
            ROWS_BACKWARD,
            dtype,
            None,
            &[
                ("T", f64::from(t)),
                ("CENTERED", flag(centered)),
                ("HAS_W", flag(weight.is_some())),
                ("ADD_GRAD", flag(grad_sum.is_some())),
            ],
        )?;
        let row_bytes = (cols * dtype.size()) as u64;
        let stat_bytes = compute.size() as u64;
        let parts = chunks(ctx, rows as u64, &[row_bytes, stat_bytes])?;
        let cols32 = to_u32(op, "row length", cols as u64)?;
        let rows_per_group = u64::from(WG / t);
        // The parameter gradients read grad_out and x before dx is written: dx may be either.
        if let (Some(dw), Some(db)) = (&dweight, &dbias) {
            self.param_grads(&grad, mean.as_ref(), &rstd, &parts, dw, db)?;
        }
        ctx.checked(|| {
            for &chunk in &parts {
                if chunk.1 == 0 || cols == 0 {
                    continue;
                }
                let groups = to_u32(op, "workgroups", chunk.1.div_ceil(rows_per_group))?;
                let params = ctx.params(
                    dtype,
                    [to_u32(op, "rows", chunk.1)?, cols32, groups, 0],
                    [0; 4],
                    [0.0; 4],
                );
                let bindings = [
                    part(&grad, row_bytes, chunk),
                    part(x, row_bytes, chunk),
                    part_or(mean.as_ref(), &rstd, stat_bytes, chunk),
                    part(&rstd, stat_bytes, chunk),
                    whole_or(weight.as_ref(), x),
                    part_or(grad_sum.as_ref(), x, row_bytes, chunk),
                    part(&dx, row_bytes, chunk),
                ];
                ctx.dispatch(&pipeline, &bindings, &params, groups)?;
            }
            Ok(())
        })?;
        Ok(RowGrads {
            dx,
            dweight: dweight.filter(|_| self.dweight),
            dbias: dbias.filter(|_| self.dbias),
        })
    }

    /// dweight and dbias: partial sums of blocks of rows per column, then each column's blocks.
    fn param_grads(
        &self,
        grad: &Tensor,
        mean: Option<&Tensor>,
        rstd: &Tensor,
        parts: &[(u64, u64)],
        dweight: &Tensor,
        dbias: &Tensor,
    ) -> Result<()> {
        let ctx = context()?;
        let (op, x) = (self.op, self.x);
        let dtype = x.dtype();
        let compute = dtype.compute();
        let cols = self.row_len as u64;
        if cols == 0 {
            return Ok(());
        }
        let row_bytes = cols * dtype.size() as u64;
        let stat_bytes = compute.size() as u64;
        let mut first = 0u64;
        // Per dispatch: blocks, the first block, rows per block.
        let plan: Vec<(u64, u64, u64)> = parts
            .iter()
            .map(|&(_, n)| {
                let rows = n.div_ceil(PARAM_BLOCKS).max(MIN_BLOCK_ROWS);
                let blocks = n.div_ceil(rows);
                first += blocks;
                (blocks, first - blocks, rows)
            })
            .collect();
        let blocks = first;
        let partials = new_like(ctx, &[(blocks * cols * 2).max(1) as usize], compute)?;
        let centered = f64::from(u8::from(mean.is_some()));
        let stage = |n: u32| {
            ctx.pipeline(
                PARAM_GRADS,
                dtype,
                None,
                &[("STAGE", f64::from(n)), ("CENTERED", centered)],
            )
        };
        let col_groups = cols.div_ceil(u64::from(WG));
        let cols32 = to_u32(op, "row length", cols)?;
        ctx.checked(|| {
            let sums = stage(0)?;
            for (&chunk, &(chunk_blocks, first, block_rows)) in parts.iter().zip(&plan) {
                if chunk_blocks == 0 {
                    continue;
                }
                let groups = to_u32(op, "workgroups", chunk_blocks * col_groups)?;
                let params = ctx.params(
                    dtype,
                    [
                        to_u32(op, "rows", chunk.1)?,
                        cols32,
                        groups,
                        to_u32(op, "workgroups", col_groups)?,
                    ],
                    [
                        to_u32(op, "blocks", first)?,
                        to_u32(op, "rows", block_rows)?,
                        0,
                        0,
                    ],
                    [0.0; 4],
                );
                let bindings = [
                    part(grad, row_bytes, chunk),
                    part(x, row_bytes, chunk),
                    part_or(mean, rstd, stat_bytes, chunk),
                    part(rstd, stat_bytes, chunk),
                    Binding::whole(partials.buffer()),
                    Binding::whole(dweight.buffer()),
                    Binding::whole(dbias.buffer()),
                ];
                ctx.dispatch(&sums, &bindings, &params, groups)?;
            }
            let fold = stage(1)?;
            let groups = to_u32(op, "workgroups", col_groups)?;
            let params = ctx.params(
                dtype,
                [0, cols32, groups, 0],
                [0, 0, to_u32(op, "blocks", blocks)?, 0],
                [0.0; 4],
            );
            // grad, x, mean and rstd are not read: the partials stand in.
            let stand_in = Binding::whole(partials.buffer());
            let bindings = [
                stand_in,
                stand_in,
                stand_in,
                stand_in,
                stand_in,
                Binding::whole(dweight.buffer()),
                Binding::whole(dbias.buffer()),
            ];
            ctx.dispatch(&fold, &bindings, &params, groups)
        })
    }
}

/// Which statistics the rows of a channel norm share: the layout of its mean and rstd.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelKind {
    /// One per channel at the axis (BatchNorm).
    Batch,
    /// One per (sample, channel) of (N, C, ...) (InstanceNorm).
    Instance,
    /// One per (sample, group) of (N, C, ...) (GroupNorm), this many groups.
    Group(usize),
}

/// The backward of a channel norm: x seen as (outer, channels, inner), channels at `axis`.
#[derive(Debug, Clone, Copy)]
pub struct ChannelBackward<'a> {
    pub op: &'static str,
    pub grad_out: &'a Tensor,
    pub x: &'a Tensor,
    pub axis: usize,
    pub kind: ChannelKind,
    pub mean: &'a Tensor,
    pub rstd: &'a Tensor,
    pub weight: Option<&'a Tensor>,
    pub stats_use: StatsUse,
    /// rstd taken as 1 (mean-only BatchNorm).
    pub unit_rstd: bool,
    /// Where dx is written (`out=`; it may be grad_out or x: it is written last), else a new array.
    pub out: Option<&'a Tensor>,
}

impl ChannelBackward<'_> {
    /// `(dx, dweight, dbias)`: dweight when a weight was given, dbias always.
    pub fn run(&self) -> Result<RowGrads> {
        let ctx = context()?;
        let (op, x) = (self.op, self.x);
        let dtype = x.dtype();
        dtype.check(ctx, op, "x")?;
        let compute = dtype.compute();
        let shape = x.shape();
        let channels = shape[self.axis];
        let outer: usize = shape[..self.axis].iter().product();
        let inner: usize = shape[self.axis + 1..].iter().product();
        let (stats, per_stat) = match self.kind {
            ChannelKind::Batch => (channels, outer * inner),
            ChannelKind::Instance => (outer * channels, inner),
            ChannelKind::Group(groups) => (outer * groups, channels / groups.max(1) * inner),
        };
        let grad = same_shape(ctx, op, "grad_out", self.grad_out, x)?;
        let mean = stats_of(ctx, op, "mean", self.mean, stats, compute)?;
        let rstd = stats_of(ctx, op, "rstd", self.rstd, stats, compute)?;
        if let Some(w) = self.weight.filter(|w| w.shape() != [channels]) {
            return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
                "{op}: weight has shape {}, expected ({channels},) (one per channel)",
                rsnorm_core::error::shape_str(w.shape())
            ))));
        }
        let weight = self
            .weight
            .map(|w| to_dtype(ctx, op, "weight", w, compute))
            .transpose()?;
        let rows = outer * channels;
        let b = ChannelBuffers {
            grad,
            x: x.clone(),
            mean,
            rstd,
            weight,
            row_sums: new_like(ctx, &[(rows * 2).max(1)], compute)?,
            stat_sums: new_like(ctx, &[(stats * 2).max(1)], compute)?,
            dweight: new_like(ctx, &[channels], compute)?,
            dbias: new_like(ctx, &[channels], compute)?,
            dx: output(ctx, op, "out", self.out, shape, dtype)?,
        };
        let flag = |b: bool| f64::from(u8::from(b));
        let (kind, groups) = match self.kind {
            ChannelKind::Batch => (0.0, 1),
            ChannelKind::Instance => (1.0, 1),
            ChannelKind::Group(g) => (2.0, g),
        };
        let uses = match self.stats_use {
            StatsUse::Batch => 0.0,
            StatsUse::BatchMean => 1.0,
            StatsUse::Constant => 2.0,
        };
        let stage = |n: u32, t: u32| {
            ctx.pipeline(
                CHANNELS_BACKWARD,
                dtype,
                None,
                &[
                    ("STAGE", f64::from(n)),
                    ("T", f64::from(t)),
                    ("HAS_W", flag(b.weight.is_some())),
                    ("USE", uses),
                    ("UNIT", flag(self.unit_rstd)),
                    ("KIND", kind),
                ],
            )
        };
        let u = |what: &str, n: u64| to_u32(op, what, n);
        let (inner32, c32) = (
            u("inner size", inner as u64)?,
            u("channels", channels as u64)?,
        );
        let m = [
            u("outer size", outer as u64)?,
            u("groups", groups as u64)?,
            u("statistics", stats as u64)?,
            0,
        ];
        let row_bytes = (inner * dtype.size()) as u64;
        let parts = chunks(ctx, rows as u64, &[row_bytes])?;
        let f = [per_stat as f64, 0.0, 0.0, 0.0];
        let t = threads_per_row(inner);
        ctx.checked(|| {
            if rows == 0 || inner == 0 {
                return Ok(());
            }
            // Per dispatch of rows: p.m.w is its first row.
            let by_rows = |pipeline: &Pipeline, per_group: u64, elements: u64| -> Result<()> {
                for &chunk in &parts {
                    let units = chunk.1 * elements;
                    let groups = u("workgroups", units.div_ceil(per_group))?;
                    let mut mm = m;
                    mm[3] = u("rows", chunk.0)?;
                    let params =
                        ctx.params(dtype, [u("rows", chunk.1)?, inner32, groups, c32], mm, f);
                    ctx.dispatch(pipeline, &b.bindings(row_bytes, chunk), &params, groups)?;
                }
                Ok(())
            };
            by_rows(&stage(0, t)?, u64::from(WG / t), 1)?;
            let groups = u(
                "workgroups",
                (channels + stats).div_ceil(WG as usize) as u64,
            )?;
            let params = ctx.params(dtype, [u("rows", rows as u64)?, inner32, groups, c32], m, f);
            ctx.dispatch(&stage(1, WG)?, &b.bindings(0, (0, 0)), &params, groups)?;
            by_rows(&stage(2, WG)?, u64::from(WG), inner as u64)
        })?;
        let ChannelBuffers {
            dx,
            dweight,
            dbias,
            weight,
            ..
        } = b;
        let dweight = match weight {
            Some(_) => Some(to_dtype(ctx, op, "dweight", &dweight, dtype)?),
            None => None,
        };
        Ok(RowGrads {
            dx,
            dweight,
            dbias: Some(to_dtype(ctx, op, "dbias", &dbias, dtype)?),
        })
    }
}

/// The arrays of a channel backward.
struct ChannelBuffers {
    grad: Tensor,
    x: Tensor,
    mean: Tensor,
    rstd: Tensor,
    weight: Option<Tensor>,
    row_sums: Tensor,
    stat_sums: Tensor,
    dweight: Tensor,
    dbias: Tensor,
    dx: Tensor,
}

impl ChannelBuffers {
    /// The bindings of one dispatch: grad, x and dx the rows of `chunk` (`row_bytes` 0: the fold
    /// stage, which reads none of them and binds the row sums in their place), the rest whole.
    fn bindings(&self, row_bytes: u64, chunk: (u64, u64)) -> Vec<Binding<'_>> {
        vec![
            self.rows(&self.grad, row_bytes, chunk),
            self.rows(&self.x, row_bytes, chunk),
            Binding::whole(self.mean.buffer()),
            Binding::whole(self.rstd.buffer()),
            whole_or(self.weight.as_ref(), &self.mean),
            Binding::whole(self.row_sums.buffer()),
            Binding::whole(self.stat_sums.buffer()),
            Binding::whole(self.dweight.buffer()),
            Binding::whole(self.dbias.buffer()),
            self.rows(&self.dx, row_bytes, chunk),
        ]
    }

    fn rows<'s>(&'s self, t: &'s Tensor, row_bytes: u64, chunk: (u64, u64)) -> Binding<'s> {
        if row_bytes == 0 {
            Binding::whole(self.row_sums.buffer())
        } else {
            part(t, row_bytes, chunk)
        }
    }
}
