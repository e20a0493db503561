//! Cross-entropy of logits on device arrays, forward and backward (cross_entropy.wgsl), with the
//! core's argument rules. Class indices and weights come from the host: device arrays hold
//! floats, a batch's indices are as much data as its inputs, and the mean's denominator (the
//! targets' weights) is then known there without a device reduction.

use crate::context::{context, Context};
use crate::error::Result;
use crate::ops::{new_like, output, part, part_or, to_dtype, whole_or, AxisRows};
use crate::optim::upload;
use crate::pipelines::{Binding, CROSS_ENTROPY, WG};
use crate::tensor::{DType, Tensor};
use rsnorm_core::softmax::{
    check_class_args, check_loss_grad, class_axis, mean_denominator, Reduction, TargetShape,
};

/// What cross-entropy compares the logits with.
#[derive(Debug, Clone, Copy)]
pub enum ClassTarget<'a> {
    /// One class index per row, shaped like the logits without the class axis; rows whose
    /// index is `ignore` leave the loss.
    Indices {
        index: &'a [i64],
        shape: &'a [usize],
        ignore: i64,
    },
    /// Class probabilities, shaped like the logits.
    Probabilities(&'a Tensor),
}

/// The loss's gradient, shaped like the loss (0-d for 'mean' and 'sum').
#[derive(Debug, Clone, Copy)]
pub enum LossGrad<'a> {
    /// Values in C order and their shape.
    Host(&'a [f64], &'a [usize]),
    Device(&'a Tensor),
}

/// torch.nn.functional.cross_entropy of `logits` with the classes along `axis`.
#[derive(Debug, Clone, Copy)]
pub struct CrossEntropy<'a> {
    pub logits: &'a Tensor,
    pub target: ClassTarget<'a>,
    pub axis: i64,
    pub reduction: Reduction,
    pub label_smoothing: f64,
    /// One weight per class.
    pub weight: Option<&'a [f64]>,
}

/// A call's checked arguments, on the device.
struct Prepared {
    rows: AxisRows,
    /// The losses' shape: the logits' without the class axis.
    row_shape: Vec<usize>,
    /// Class indices as i32 bits (ignored rows −1), or the probabilities in the logits' dtype.
    index: Option<Tensor>,
    probs: Option<Tensor>,
    weight: Option<Tensor>,
    total_weight: f64,
    denominator: f64,
}

/// The ignore marker of the uploaded indices (every other index is a class, so ≥ 0).
const IGNORED: i32 = -1;

impl CrossEntropy<'_> {
    fn prepare(&self, ctx: &Context, op: &str) -> Result<Prepared> {
        let x = self.logits;
        let dtype = x.dtype();
        dtype.check(ctx, op, "logits")?;
        let shape = match self.target {
            ClassTarget::Indices { shape, .. } => TargetShape::Classes(shape),
            ClassTarget::Probabilities(t) => TargetShape::Probabilities(t.shape()),
        };
        let (axis, row_shape) = class_axis(op, x.shape(), shape, self.axis)?;
        let rows = AxisRows::of(op, x.shape(), axis as i64)?;
        let n_rows = rows.outer * rows.inner;
        let index = match self.target {
            ClassTarget::Indices { index, ignore, .. } => Some((index, ignore)),
            ClassTarget::Probabilities(_) => None,
        };
        check_class_args(op, n_rows, rows.n, index, self.label_smoothing, self.weight)?;
        let compute = dtype.compute();
        let indices = index
            .map(|(index, ignore)| {
                // Checked above: every index not ignored is a class, so it fits an i32.
                let bits: Vec<u8> = index
                    .iter()
                    .map(|&t| if t == ignore { IGNORED } else { t as i32 })
                    .flat_map(i32::to_le_bytes)
                    .collect();
                // A float array's buffer holding i32 bits: the kernel reads it as array<i32>.
                Tensor::from_bytes(&bits, &[index.len()], DType::F32)
            })
            .transpose()?;
        let probs = match self.target {
            ClassTarget::Probabilities(t) => Some(to_dtype(ctx, op, "target", t, dtype)?),
            ClassTarget::Indices { .. } => None,
        };
        let weight = self.weight.map(|w| upload(w, compute)).transpose()?;
        Ok(Prepared {
            rows,
            row_shape,
            index: indices,
            probs,
            weight,
            total_weight: self.weight.map_or(rows.n as f64, |w| w.iter().sum()),
            denominator: mean_denominator(index, n_rows, self.weight),
        })
    }

    /// Records cross_entropy.wgsl's `stage` over every row: `scale` and `dx` are the backward's,
    /// `loss` the forward's.
    #[allow(clippy::too_many_arguments)] // the stage's buffers, each needed
    fn record_rows(
        &self,
        ctx: &Context,
        op: &str,
        prep: &Prepared,
        stage: u32,
        scale: Option<(&Tensor, u32)>,
        dx: Option<&Tensor>,
        loss: Option<&Tensor>,
        factor: f64,
    ) -> Result<()> {
        let x = self.logits;
        let dtype = x.dtype();
        let rows = prep.rows;
        let constants = [
            ("STAGE", f64::from(stage)),
            ("T", rows.threads()),
            ("INDEX", f64::from(u8::from(prep.index.is_some()))),
            ("WEIGHTED", f64::from(u8::from(prep.weight.is_some()))),
        ];
        let pipeline = ctx.pipeline(CROSS_ENTROPY, dtype, None, &constants)?;
        let block = rows.block_bytes(dtype);
        let per_row = |size: usize| (rows.inner * size) as u64;
        let compute = dtype.compute().size();
        let stride = scale.map_or(0, |s| s.1);
        let m = [IGNORED as u32, stride, 0];
        let f = [self.label_smoothing, factor, prep.total_weight, 0.0];
        let units = [block, per_row(4), per_row(compute)];
        rows.record(ctx, op, &pipeline, dtype, &units, m, f, |chunk| {
            vec![
                part(x, block, chunk),
                part_or(prep.probs.as_ref(), x, block, chunk),
                part_or(prep.index.as_ref(), x, per_row(4), chunk),
                whole_or(prep.weight.as_ref(), x),
                // One value per row is split with the rows; one value for all, bound whole.
                match scale {
                    Some((t, 1)) => part(t, per_row(compute), chunk),
                    other => whole_or(other.map(|s| s.0), x),
                },
                part_or(dx, x, block, chunk),
                part_or(loss, x, per_row(compute), chunk),
                whole_or(None, x),
            ]
        })
    }

    /// The loss: one per row ('none', in the logits' compute dtype, ignored rows 0), or their
    /// sum or mean as a 0-d array, summed in a fixed order.
    pub fn forward(&self) -> Result<Tensor> {
        const OP: &str = "cross_entropy_with_logits";
        let ctx = context()?;
        let prep = self.prepare(ctx, OP)?;
        let compute = self.logits.dtype().compute();
        let loss = new_like(ctx, &prep.row_shape, compute)?;
        if !loss.is_empty() {
            self.record_rows(ctx, OP, &prep, 0, None, None, Some(&loss), 1.0)?;
        }
        if self.reduction == Reduction::None {
            return Ok(loss);
        }
        let total = new_like(ctx, &[], compute)?;
        let factor = self.factor(&prep);
        let constants = [("STAGE", 1.0), ("T", f64::from(WG))];
        let pipeline = ctx.pipeline(CROSS_ENTROPY, self.logits.dtype(), None, &constants)?;
        let n = crate::ops::to_u32(OP, "rows", loss.len() as u64)?;
        let params = ctx.params(compute, [n, 0, 1, 0], [0; 4], [0.0, factor, 0.0, 0.0]);
        let any = Binding::whole(loss.buffer());
        let mut bindings = [any; 8];
        bindings[7] = Binding::whole(total.buffer());
        ctx.checked(|| ctx.dispatch(&pipeline, &bindings, &params, 1))?;
        Ok(total)
    }

    /// The mean's (or sum's) factor on the summed losses or their gradients: the mean of no
    /// rows (or of weights summing to 0) is NaN, as on the CPU.
    fn factor(&self, prep: &Prepared) -> f64 {
        match self.reduction {
            Reduction::Mean if prep.denominator == 0.0 => f64::NAN,
            Reduction::Mean => 1.0 / prep.denominator,
            Reduction::None | Reduction::Sum => 1.0,
        }
    }

    /// The gradient with respect to the logits (their shape and dtype), given the loss's.
    pub fn backward(&self, grad: LossGrad<'_>, out: Option<&Tensor>) -> Result<Tensor> {
        const OP: &str = "cross_entropy_with_logits_backward";
        let ctx = context()?;
        let prep = self.prepare(ctx, OP)?;
        let dtype = self.logits.dtype();
        let compute = dtype.compute();
        let scale = match grad {
            LossGrad::Host(values, shape) => {
                check_loss_grad(OP, shape, self.reduction, &prep.row_shape)?;
                upload(values, compute)?
            }
            LossGrad::Device(t) => {
                check_loss_grad(OP, t.shape(), self.reduction, &prep.row_shape)?;
                to_dtype(ctx, OP, "grad_out", t, compute)?
            }
        };
        let dx = output(ctx, OP, "out", out, self.logits.shape(), dtype)?;
        if dx.is_empty() {
            return Ok(dx);
        }
        let stride = u32::from(self.reduction == Reduction::None);
        let factor = self.factor(&prep);
        let scale = Some((&scale, stride));
        self.record_rows(ctx, OP, &prep, 2, scale, Some(&dx), None, factor)?;
        Ok(dx)
    }
}
