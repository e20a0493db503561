//! Backward passes on the device: LayerNorm and RMSNorm (and their fused-add forms), dx per row and
//! the parameter gradients summed over rows in a fixed order (the same bits for the same input,
//! however the device schedules the work), as the CPU's `norm::backward` returns them.

use crate::context::context;
use crate::error::{Error, Result};
use crate::ops::{
    chunks, new_like, output, part, part_or, same_shape, threads_per_row, to_dtype, to_u32,
    whole_or, RowKind,
};
use crate::pipelines::{Binding, PARAM_GRADS, ROWS_BACKWARD, WG};
use crate::tensor::Tensor;

/// Rows of the parameter-gradient partial sums (`ROWS` in param_grads.wgsl).
const PARAM_ROWS: u64 = 64;

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
}

#[derive(Debug)]
pub struct RowGrads {
    pub dx: Tensor,
    pub dweight: Option<Tensor>,
    pub dbias: Option<Tensor>,
}

/// The forward's per-row statistic, `expected` values in any shape, in the compute dtype.
fn stats(
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
            (true, Some(m)) => Some(stats(ctx, op, "mean", m, rows, compute)?),
            _ => None,
        };
        let rstd = stats(ctx, op, "rstd", self.rstd, rows, compute)?;
        let weight = self
            .weight
            .map(|w| to_dtype(ctx, op, "weight", w, dtype))
            .transpose()?;
        let dx = output(ctx, op, "dx", None, x.shape(), dtype)?;
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
        if let (Some(dw), Some(db)) = (&dweight, &dbias) {
            self.param_grads(&grad, mean.as_ref(), &rstd, &parts, dw, db)?;
        }
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
        let plan: Vec<(u64, u64)> = parts
            .iter()
            .map(|&(_, n)| {
                let blocks = n.div_ceil(PARAM_ROWS);
                first += blocks;
                (blocks, first - blocks)
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
            for (&chunk, &(chunk_blocks, first)) in parts.iter().zip(&plan) {
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
                    [to_u32(op, "blocks", first)?, 0, 0, 0],
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
                [0, to_u32(op, "blocks", blocks)?, 0, 0],
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
