//! The ops on device arrays. Each checks its arguments by the core's rules (the same messages as
//! the CPU path), allocates or checks its outputs, and records its dispatches; none waits.

use crate::batch_stats::{channel_stats, check_running, update_running};
use crate::context::{context, Context};
use crate::error::{Error, Result};
use crate::pipelines::{
    Binding, CAST, CHANNELS, MATMUL, ROWS, SELU, SOFTMAX, SOFTMAX_BACKWARD, WG,
};
use crate::tensor::{DType, Tensor};
use rsnorm_core::error::{check_eps, shape_str};
use rsnorm_core::norm::channels::check_paired;

/// Splits `units` (rows, or elements) into dispatches whose bindings fit the device's largest
/// storage binding, each starting at an offset every binding can take. `unit_bytes`: the bytes
/// one unit takes in each binding that is split.
pub(crate) fn chunks(ctx: &Context, units: u64, unit_bytes: &[u64]) -> Result<Vec<(u64, u64)>> {
    let widest = unit_bytes.iter().copied().max().unwrap_or(1).max(1);
    if units * widest <= ctx.max_binding {
        return Ok(vec![(0, units)]);
    }
    let align = u64::from(ctx.limits.min_storage_buffer_offset_alignment);
    // Units per chunk: a multiple of `step` keeps every binding's offset a multiple of `align`.
    let step = unit_bytes
        .iter()
        .filter(|&&b| b > 0)
        .map(|&b| align / gcd(b, align))
        .max()
        .unwrap_or(1);
    let per_chunk = ctx.max_binding / widest / step * step;
    if per_chunk == 0 {
        return Err(Error::Device(format!(
            "a row of {widest} bytes exceeds the GPU's largest storage binding ({} bytes)",
            ctx.max_binding
        )));
    }
    Ok((0..units)
        .step_by(per_chunk as usize)
        .map(|start| (start, per_chunk.min(units - start)))
        .collect())
}

fn gcd(a: u64, b: u64) -> u64 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The part of `t` holding units `start..start + count` of `unit_bytes` each.
pub(crate) fn part(t: &Tensor, unit_bytes: u64, (start, count): (u64, u64)) -> Binding<'_> {
    Binding {
        buffer: t.buffer(),
        offset: start * unit_bytes,
        size: count * unit_bytes,
    }
}

/// An optional binding: `t`'s part, or (unused by the kernel, which a constant tells) `dummy`.
pub(crate) fn part_or<'a>(
    t: Option<&'a Tensor>,
    dummy: &'a Tensor,
    unit_bytes: u64,
    chunk: (u64, u64),
) -> Binding<'a> {
    t.map_or_else(
        || Binding::whole(dummy.buffer()),
        |t| part(t, unit_bytes, chunk),
    )
}

/// An optional binding of a whole array (a parameter), or `dummy`.
pub(crate) fn whole_or<'a>(t: Option<&'a Tensor>, dummy: &'a Tensor) -> Binding<'a> {
    Binding::whole(t.unwrap_or(dummy).buffer())
}

pub(crate) fn to_u32(op: &str, what: &str, n: u64) -> Result<u32> {
    u32::try_from(n).map_err(|_| Error::Device(format!("{op}: {what} ({n}) exceeds 2**32")))
}

/// `t` as `dtype`, converted on the device when it is not already (parameters in another float
/// dtype, rounded through the input's as on the CPU).
pub(crate) fn to_dtype(
    ctx: &Context,
    op: &str,
    arg: &str,
    t: &Tensor,
    dtype: DType,
) -> Result<Tensor> {
    if t.dtype() == dtype {
        return Ok(t.clone());
    }
    t.dtype().check(ctx, op, arg)?;
    tile(ctx, t, 1, dtype)
}

/// `times` copies of `t` one after another, as `dtype`: a new array of shape (times, *t.shape).
fn tile(ctx: &Context, t: &Tensor, times: usize, dtype: DType) -> Result<Tensor> {
    let mut shape = t.shape().to_vec();
    if times != 1 {
        shape.insert(0, times);
    }
    let y = new_like(ctx, &shape, dtype)?;
    if y.is_empty() {
        return Ok(y);
    }
    let pipeline = ctx.pipeline(CAST, t.dtype(), Some(dtype), &[])?;
    if times == 1 {
        elementwise(ctx, &pipeline, t.dtype(), &[t], &y, [0; 4], [0.0; 4])?;
    } else {
        let period = to_u32("tile", "elements", t.len() as u64)?;
        let input = Input::Whole(t);
        elementwise_with(
            ctx,
            &pipeline,
            t.dtype(),
            &[input],
            &y,
            [period, 0, 0, 0],
            [0.0; 4],
        )?;
    }
    Ok(y)
}

/// A new array holding `times` copies of `t` as `dtype` (per-channel statistics broadcast over a
/// batch), or a converted copy when `times` is 1.
pub fn repeat(t: &Tensor, times: usize, dtype: DType) -> Result<Tensor> {
    let ctx = context()?;
    dtype.check(ctx, "repeat", "dtype")?;
    tile(ctx, t, times, dtype)
}

pub(crate) fn new_like(ctx: &Context, shape: &[usize], dtype: DType) -> Result<Tensor> {
    let bytes = shape.iter().product::<usize>() * dtype.size();
    let buffer = ctx.buffer(bytes as u64)?;
    Ok(Tensor::wrap(buffer, shape.to_vec(), dtype))
}

/// `out` checked against the result's shape and dtype, or a new array.
pub(crate) fn output(
    ctx: &Context,
    op: &str,
    name: &str,
    out: Option<&Tensor>,
    shape: &[usize],
    dtype: DType,
) -> Result<Tensor> {
    let Some(out) = out else {
        return new_like(ctx, shape, dtype);
    };
    check_out(op, name, out, shape, dtype)?;
    Ok(out.clone())
}

/// An `out=` array of the result's shape and dtype, else the error naming `name`.
pub fn check_out(op: &str, name: &str, out: &Tensor, shape: &[usize], dtype: DType) -> Result<()> {
    if out.dtype() != dtype {
        return Err(Error::Unsupported(format!(
            "{op}: {name} has dtype {}, expected {}",
            out.dtype().name(),
            dtype.name()
        )));
    }
    if out.shape() != shape {
        return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
            "{op}: {name} has shape {}, expected {}",
            shape_str(out.shape()),
            shape_str(shape)
        ))));
    }
    Ok(())
}

/// An input that must have x's shape (a residual); converted to x's dtype.
pub(crate) fn same_shape(
    ctx: &Context,
    op: &str,
    name: &str,
    t: &Tensor,
    x: &Tensor,
) -> Result<Tensor> {
    if t.shape() != x.shape() {
        return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
            "{op}: {name} has shape {}, x has shape {}",
            shape_str(t.shape()),
            shape_str(x.shape())
        ))));
    }
    to_dtype(ctx, op, name, t, x.dtype())
}

/// An input of an elementwise kernel: split into dispatches as the output is, or bound whole.
#[derive(Clone, Copy)]
enum Input<'a> {
    Split(&'a Tensor),
    Whole(&'a Tensor),
}

/// Records a one-element-per-thread kernel over `inputs` (split into dispatches as `y` is) and
/// `y`. `m[2]` receives each dispatch's first element index.
fn elementwise(
    ctx: &Context,
    pipeline: &crate::pipelines::Pipeline,
    dtype: DType,
    inputs: &[&Tensor],
    y: &Tensor,
    m: [u32; 4],
    f: [f64; 4],
) -> Result<()> {
    let inputs: Vec<Input<'_>> = inputs.iter().map(|&t| Input::Split(t)).collect();
    elementwise_with(ctx, pipeline, dtype, &inputs, y, m, f)
}

fn elementwise_with(
    ctx: &Context,
    pipeline: &crate::pipelines::Pipeline,
    dtype: DType,
    inputs: &[Input<'_>],
    y: &Tensor,
    m: [u32; 4],
    f: [f64; 4],
) -> Result<()> {
    let len = y.len() as u64;
    let mut sizes: Vec<u64> = inputs
        .iter()
        .filter_map(|i| match i {
            Input::Split(t) => Some(t.dtype().size() as u64),
            Input::Whole(_) => None,
        })
        .collect();
    sizes.push(y.dtype().size() as u64);
    ctx.checked(|| {
        for chunk in chunks(ctx, len, &sizes)? {
            let groups = to_u32("kernel", "workgroups", chunk.1.div_ceil(u64::from(WG)))?;
            let count = to_u32("kernel", "elements", chunk.1)?;
            let mut m = m;
            m[2] = to_u32("kernel", "elements", chunk.0)?;
            let params = ctx.params(dtype, [count, 0, groups, 0], m, f);
            let mut bindings: Vec<Binding<'_>> = inputs
                .iter()
                .map(|input| match *input {
                    Input::Split(t) => part(t, t.dtype().size() as u64, chunk),
                    Input::Whole(t) => Binding::whole(t.buffer()),
                })
                .collect();
            bindings.push(part(y, y.dtype().size() as u64, chunk));
            ctx.dispatch(pipeline, &bindings, &params, groups)?;
        }
        Ok(())
    })
}

/// Which statistics a row normalization uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowKind {
    /// Mean and biased variance (LayerNorm, GroupNorm, InstanceNorm).
    Layer,
    /// Mean of squares (RMSNorm).
    Rms,
    /// The L2 norm, clamped below by eps (l2_normalize).
    L2,
}

/// Parameters per channel instead of per element: rows are (sample, group) of `per_group`
/// channels of `spatial` elements each, `groups` per sample.
#[derive(Debug, Clone, Copy)]
pub struct ChannelMap {
    pub groups: usize,
    pub per_group: usize,
    pub spatial: usize,
}

/// A row normalization: the rows are x's elements `row_len` at a time.
#[derive(Debug, Clone, Copy)]
pub struct RowNorm<'a> {
    pub op: &'static str,
    pub kind: RowKind,
    pub x: &'a Tensor,
    /// x's elements are `rows` rows of `row_len` (rows of zero elements are an error).
    pub rows: usize,
    pub row_len: usize,
    /// Fused residual add: the rows normalized are `x + residual`, returned as `sum`.
    pub residual: Option<&'a Tensor>,
    pub weight: Option<&'a Tensor>,
    pub bias: Option<&'a Tensor>,
    pub eps: f64,
    pub channels: Option<ChannelMap>,
    pub out: Option<&'a Tensor>,
    pub residual_out: Option<&'a Tensor>,
    /// Return each row's mean and rstd (flat, in the compute dtype).
    pub stats: bool,
}

#[derive(Debug)]
pub struct RowNormOutput {
    pub y: Tensor,
    pub sum: Option<Tensor>,
    pub mean: Option<Tensor>,
    pub rstd: Option<Tensor>,
}

/// Threads per row: about four elements each, a power of two up to the workgroup.
pub(crate) fn threads_per_row(row_len: usize) -> u32 {
    (row_len.div_ceil(4).next_power_of_two() as u32).clamp(1, WG)
}

impl RowNorm<'_> {
    pub fn run(&self) -> Result<RowNormOutput> {
        let ctx = context()?;
        let (op, x) = (self.op, self.x);
        let dtype = x.dtype();
        dtype.check(ctx, op, "x")?;
        check_eps(op, self.eps)?;
        let (rows, cols) = (self.rows, self.row_len);
        assert_eq!(rows * cols, x.len(), "{op}: rows of x");
        rsnorm_core::norm::check_row_len(op, rows, cols)?;
        let param_len = self.channels.map_or(cols, |c| c.groups * c.per_group);
        let mut params = Vec::new();
        for (name, p) in [("weight", self.weight), ("bias", self.bias)] {
            rsnorm_core::norm::check_param_len(op, name, p.map(Tensor::len), param_len)?;
            params.push(p.map(|p| to_dtype(ctx, op, name, p, dtype)).transpose()?);
        }
        let residual = self
            .residual
            .map(|r| same_shape(ctx, op, "residual", r, x))
            .transpose()?;
        let y = output(ctx, op, "out", self.out, x.shape(), dtype)?;
        let sum = match &residual {
            Some(_) => Some(output(
                ctx,
                op,
                "residual_out",
                self.residual_out,
                x.shape(),
                dtype,
            )?),
            None => None,
        };
        if let Some(sum) = &sum {
            if sum.same_memory(&y) {
                return Err(Error::Value(rsnorm_core::Error::InvalidArgument(format!(
                    "{op}: out and residual_out share memory"
                ))));
            }
        }
        let compute = dtype.compute();
        let (mean, rstd) = if self.stats {
            (
                Some(new_like(ctx, &[rows], compute)?),
                Some(new_like(ctx, &[rows], compute)?),
            )
        } else {
            (None, None)
        };
        let t = threads_per_row(cols);
        let mode = match self.kind {
            RowKind::Layer => 0.0,
            RowKind::Rms => 1.0,
            RowKind::L2 => 2.0,
        };
        let flag = |b: bool| f64::from(u8::from(b));
        let pipeline = ctx.pipeline(
            ROWS,
            dtype,
            None,
            &[
                ("T", f64::from(t)),
                ("MODE", mode),
                ("ADD", flag(residual.is_some())),
                ("HAS_W", flag(params[0].is_some())),
                ("HAS_B", flag(params[1].is_some())),
                ("STATS", flag(self.stats)),
                ("PER_CHANNEL", flag(self.channels.is_some())),
            ],
        )?;
        let row_bytes = (cols * dtype.size()) as u64;
        let stat_bytes = compute.size() as u64;
        let map = self
            .channels
            .map_or([1, 0, 1], |c| [c.groups, c.per_group, c.spatial]);
        let rows_per_group = u64::from(WG / t);
        ctx.checked(|| {
            let mut sizes = vec![row_bytes];
            if self.stats {
                sizes.push(stat_bytes);
            }
            for chunk in chunks(ctx, rows as u64, &sizes)? {
                let groups = to_u32(op, "workgroups", chunk.1.div_ceil(rows_per_group))?;
                let params_buf = ctx.params(
                    dtype,
                    [
                        to_u32(op, "rows", chunk.1)?,
                        to_u32(op, "row length", cols as u64)?,
                        groups,
                        0,
                    ],
                    [
                        map[0] as u32,
                        map[1] as u32,
                        map[2] as u32,
                        to_u32(op, "rows", chunk.0)?,
                    ],
                    [self.eps, 0.0, 0.0, 0.0],
                );
                let bindings = [
                    part(x, row_bytes, chunk),
                    part_or(residual.as_ref(), x, row_bytes, chunk),
                    whole_or(params[0].as_ref(), x),
                    whole_or(params[1].as_ref(), x),
                    part(&y, row_bytes, chunk),
                    part_or(sum.as_ref(), x, row_bytes, chunk),
                    part_or(mean.as_ref(), x, stat_bytes, chunk),
                    part_or(rstd.as_ref(), x, stat_bytes, chunk),
                ];
                ctx.dispatch(&pipeline, &bindings, &params_buf, groups)?;
            }
            Ok(())
        })?;
        Ok(RowNormOutput { y, sum, mean, rstd })
    }
}

/// softmax (or log_softmax) of `x` along `axis` (a 0-d array is one value).
pub fn softmax(x: &Tensor, axis: i64, log: bool, out: Option<&Tensor>) -> Result<Tensor> {
    let op = if log { "log_softmax" } else { "softmax" };
    let ctx = context()?;
    let dtype = x.dtype();
    dtype.check(ctx, op, "x")?;
    let rows = AxisRows::of(op, x.shape(), axis)?;
    rsnorm_core::softmax::check_axis_len(rows.outer * rows.inner, rows.n)?;
    let y = output(ctx, op, "out", out, x.shape(), dtype)?;
    if y.is_empty() {
        return Ok(y);
    }
    rows.record_log(ctx, op, SOFTMAX, log, &[x, &y])?;
    Ok(y)
}

/// The backward of softmax (or log_softmax) along `axis`, from grad_out and the forward's output.
pub fn softmax_backward(
    grad: &Tensor,
    y: &Tensor,
    axis: i64,
    log: bool,
    out: Option<&Tensor>,
) -> Result<Tensor> {
    let op = rsnorm_core::softmax::backward_name(log);
    let ctx = context()?;
    let dtype = y.dtype();
    dtype.check(ctx, op, "y")?;
    rsnorm_core::softmax::check_backward_shapes(op, grad.shape(), y.shape())?;
    let grad = to_dtype(ctx, op, "grad_out", grad, dtype)?;
    let rows = AxisRows::of(op, y.shape(), axis)?;
    let dx = output(ctx, op, "out", out, y.shape(), dtype)?;
    if dx.is_empty() {
        return Ok(dx);
    }
    rows.record_log(ctx, op, SOFTMAX_BACKWARD, log, &[&grad, y, &dx])?;
    Ok(dx)
}

/// An array seen as rows along one axis: (outer, n, inner), row r being (r / inner, ·, r % inner),
/// its elements `inner` apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AxisRows {
    pub(crate) outer: usize,
    pub(crate) n: usize,
    pub(crate) inner: usize,
}

impl AxisRows {
    /// The rows along `axis` of `shape` (a 0-d array is one value).
    pub(crate) fn of(op: &str, shape: &[usize], axis: i64) -> Result<AxisRows> {
        let axis = rsnorm_core::softmax::softmax_axis(op, shape, axis)?;
        if shape.is_empty() {
            return Ok(AxisRows {
                outer: 1,
                n: 1,
                inner: 1,
            });
        }
        Ok(AxisRows {
            outer: shape[..axis].iter().product(),
            n: shape[axis],
            inner: shape[axis + 1..].iter().product(),
        })
    }

    /// Threads per row (the `T` constant): short rows share a workgroup.
    pub(crate) fn threads(&self) -> f64 {
        f64::from(threads_per_row(self.n))
    }

    /// Bytes of one `outer` block of a `dtype` array.
    pub(crate) fn block_bytes(&self, dtype: DType) -> u64 {
        (self.n * self.inner * dtype.size()) as u64
    }

    /// Records softmax.wgsl or softmax_backward.wgsl (`LOG`: the log_softmax form) over all rows of
    /// `tensors`, each bound in the dispatch's blocks.
    pub(crate) fn record_log(
        &self,
        ctx: &Context,
        op: &str,
        kernel: crate::pipelines::Kernel,
        log: bool,
        tensors: &[&Tensor],
    ) -> Result<()> {
        let dtype = tensors[0].dtype();
        let flag = f64::from(u8::from(log));
        let constants = [("T", self.threads()), ("LOG", flag)];
        let pipeline = ctx.pipeline(kernel, dtype, None, &constants)?;
        let block = self.block_bytes(dtype);
        self.record(
            ctx,
            op,
            &pipeline,
            dtype,
            &[block],
            [0; 3],
            [0.0; 4],
            |chunk| tensors.iter().map(|t| part(t, block, chunk)).collect(),
        )
    }

    /// Records `pipeline` over all rows, in dispatches over blocks of `outer` that fit a binding
    /// (`unit_bytes`: a block's bytes in each split binding); `bind` gives a dispatch's bindings
    /// for its blocks `(start, count)`. Params: n = (rows, n, workgroups), m = (inner, *m), f.
    #[allow(clippy::too_many_arguments)] // the dispatch's parts, each needed
    pub(crate) fn record<'a>(
        &self,
        ctx: &Context,
        op: &str,
        pipeline: &crate::pipelines::Pipeline,
        dtype: DType,
        unit_bytes: &[u64],
        m: [u32; 3],
        f: [f64; 4],
        bind: impl Fn((u64, u64)) -> Vec<Binding<'a>>,
    ) -> Result<()> {
        let rows_per_group = u64::from(WG / threads_per_row(self.n));
        let inner = self.inner as u64;
        ctx.checked(|| {
            for chunk in chunks(ctx, self.outer as u64, unit_bytes)? {
                let rows = chunk.1 * inner;
                let groups = to_u32(op, "workgroups", rows.div_ceil(rows_per_group))?;
                let params = ctx.params(
                    dtype,
                    [
                        to_u32(op, "rows", rows)?,
                        to_u32(op, "axis length", self.n as u64)?,
                        groups,
                        0,
                    ],
                    [to_u32(op, "inner size", inner)?, m[0], m[1], m[2]],
                    f,
                );
                ctx.dispatch(pipeline, &bind(chunk), &params, groups)?;
            }
            Ok(())
        })
    }
}

/// SELU of every element.
pub fn selu(x: &Tensor, out: Option<&Tensor>) -> Result<Tensor> {
    activation("selu", false, x, None, out)
}

/// SELU's backward: dx from grad_out and the forward's input.
pub fn selu_backward(grad_out: &Tensor, x: &Tensor, out: Option<&Tensor>) -> Result<Tensor> {
    activation("selu_backward", false, x, Some(grad_out), out)
}

/// ReLU of every element, NaN kept (as `np.maximum(x, 0)` and `torch.relu`).
pub fn relu(x: &Tensor, out: Option<&Tensor>) -> Result<Tensor> {
    activation("relu", true, x, None, out)
}

/// ReLU's backward: grad_out where x > 0, else 0 (torch's `threshold_backward`).
pub fn relu_backward(grad_out: &Tensor, x: &Tensor, out: Option<&Tensor>) -> Result<Tensor> {
    activation("relu_backward", true, x, Some(grad_out), out)
}

/// selu.wgsl over every element: SELU or (`relu`) ReLU of x, or with `grad_out` their backward.
fn activation(
    op: &str,
    relu: bool,
    x: &Tensor,
    grad_out: Option<&Tensor>,
    out: Option<&Tensor>,
) -> Result<Tensor> {
    let ctx = context()?;
    let dtype = x.dtype();
    dtype.check(ctx, op, "x")?;
    let grad = grad_out
        .map(|g| same_shape(ctx, op, "grad_out", g, x))
        .transpose()?;
    let y = output(ctx, op, "out", out, x.shape(), dtype)?;
    if y.is_empty() {
        return Ok(y);
    }
    let constants = [
        ("BACKWARD", f64::from(u8::from(grad.is_some()))),
        ("RELU", f64::from(u8::from(relu))),
    ];
    let pipeline = ctx.pipeline(SELU, dtype, None, &constants)?;
    elementwise(
        ctx,
        &pipeline,
        dtype,
        &[x, grad.as_ref().unwrap_or(x)],
        &y,
        [0; 4],
        [0.0; 4],
    )?;
    Ok(y)
}

/// op(a) · op(b), plus `bias` on every row, of 2-D arrays (op: the transpose where asked): a linear
/// layer's forward (x · wᵀ + b) and backward (go · w, goᵀ · x) on the device. Summed in the
/// compute dtype in increasing k; b and bias in a's dtype.
pub fn matmul(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    (transpose_a, transpose_b): (bool, bool),
    out: Option<&Tensor>,
) -> Result<Tensor> {
    const OP: &str = "matmul";
    let ctx = context()?;
    let dtype = a.dtype();
    dtype.check(ctx, OP, "a")?;
    for (name, t) in [("a", a), ("b", b)] {
        if t.shape().len() != 2 {
            return Err(Error::Value(rsnorm_core::Error::InvalidArgument(format!(
                "{OP}: {name} must be 2-D, got shape {}",
                shape_str(t.shape())
            ))));
        }
    }
    let dims = |t: &Tensor, transpose: bool| {
        let s = t.shape();
        if transpose {
            (s[1], s[0])
        } else {
            (s[0], s[1])
        }
    };
    let ((m, k), (k_b, n)) = (dims(a, transpose_a), dims(b, transpose_b));
    if k != k_b {
        return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
            "{OP}: a gives ({m}, {k}) and b ({k_b}, {n}) after their transposes; the inner \
             dimensions {k} and {k_b} differ"
        ))));
    }
    let b = to_dtype(ctx, OP, "b", b, dtype)?;
    let bias = bias
        .map(|t| to_dtype(ctx, OP, "bias", t, dtype))
        .transpose()?;
    if let Some(t) = bias.as_ref().filter(|t| t.shape() != [n]) {
        return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
            "{OP}: bias has shape {}, expected ({n},)",
            shape_str(t.shape())
        ))));
    }
    let c = output(ctx, OP, "out", out, &[m, n], dtype)?;
    if c.is_empty() {
        return Ok(c);
    }
    for (name, t) in [("a", a), ("b", &b), ("out", &c)] {
        if t.nbytes() as u64 > ctx.max_binding {
            return Err(Error::Device(format!(
                "{OP}: {name} has {} bytes, more than the GPU's largest storage binding ({} bytes)",
                t.nbytes(),
                ctx.max_binding
            )));
        }
    }
    let flag = |on: bool| f64::from(u8::from(on));
    let constants = [
        ("TRANS_A", flag(transpose_a)),
        ("TRANS_B", flag(transpose_b)),
        ("BIAS", flag(bias.is_some())),
    ];
    let pipeline = ctx.pipeline(MATMUL, dtype, None, &constants)?;
    let tiles_n = n.div_ceil(16) as u64;
    let groups = to_u32(OP, "tiles", m.div_ceil(16) as u64 * tiles_n)?;
    let params = ctx.params(
        dtype,
        [
            to_u32(OP, "rows", m as u64)?,
            to_u32(OP, "columns", n as u64)?,
            to_u32(OP, "inner dimension", k as u64)?,
            0,
        ],
        [groups, to_u32(OP, "tiles", tiles_n)?, 0, 0],
        [0.0; 4],
    );
    let bindings = [
        Binding::whole(a.buffer()),
        Binding::whole(b.buffer()),
        whole_or(bias.as_ref(), a),
        Binding::whole(c.buffer()),
    ];
    ctx.checked(|| ctx.dispatch(&pipeline, &bindings, &params, groups))?;
    Ok(c)
}

/// Normalization with per-channel statistics (BatchNorm in eval mode, InstanceNorm with its
/// running statistics, both with batch statistics): channels at `axis`.
#[derive(Debug, Clone, Copy)]
pub struct ChannelAffine<'a> {
    pub op: &'static str,
    pub x: &'a Tensor,
    pub axis: usize,
    pub mean: &'a Tensor,
    /// Batch statistics keep the mean in two parts: `pivot + mean`.
    pub pivot: Option<&'a Tensor>,
    /// None: the statistics' rstd is that of a variance of 1.
    pub var: Option<&'a Tensor>,
    /// Scale by rstd (false: mean-only BatchNorm subtracts the mean only).
    pub scale: bool,
    /// Parameters per this many channels, channel c taking parameter c % it (InstanceNorm's N·C
    /// instances seen as channels); None: one per channel.
    pub param_channels: Option<usize>,
    pub weight: Option<&'a Tensor>,
    pub bias: Option<&'a Tensor>,
    pub eps: f64,
    pub out: Option<&'a Tensor>,
    /// Also return each channel's rstd (mean is `mean` itself).
    pub stats: bool,
}

impl ChannelAffine<'_> {
    /// `(y, rstd)`: rstd when `stats`.
    pub fn run(&self) -> Result<(Tensor, Option<Tensor>)> {
        let ctx = context()?;
        let (op, x) = (self.op, self.x);
        let dtype = x.dtype();
        dtype.check(ctx, op, "x")?;
        check_eps(op, self.eps)?;
        let shape = x.shape();
        let channels = shape[self.axis];
        let inner: usize = shape[self.axis + 1..].iter().product();
        let compute = dtype.compute();
        // Running statistics enter in the compute dtype; weight and bias rounded through x's.
        let mean = to_dtype(ctx, op, "running_mean", self.mean, compute)?;
        let var = self
            .var
            .map(|v| to_dtype(ctx, op, "running_var", v, compute))
            .transpose()?;
        let weight = self
            .weight
            .map(|w| to_dtype(ctx, op, "weight", w, dtype))
            .transpose()?;
        let bias = self
            .bias
            .map(|b| to_dtype(ctx, op, "bias", b, dtype))
            .transpose()?;
        let param_channels = self.param_channels.unwrap_or(channels);
        for (name, t, len) in [
            ("running_mean", Some(&mean), channels),
            ("running_var", var.as_ref(), channels),
            ("weight", weight.as_ref(), param_channels),
            ("bias", bias.as_ref(), param_channels),
        ] {
            if let Some(t) = t.filter(|t| t.len() != len) {
                return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
                    "{op}: {name} has {} elements, x has {len} channels",
                    t.len()
                ))));
            }
        }
        let y = output(ctx, op, "out", self.out, shape, dtype)?;
        let rstd = if self.stats {
            Some(new_like(ctx, &[channels], compute)?)
        } else {
            None
        };
        if y.is_empty() && rstd.is_none() {
            return Ok((y, rstd));
        }
        let flag = |b: bool| f64::from(u8::from(b));
        let pipeline = ctx.pipeline(
            CHANNELS,
            dtype,
            None,
            &[
                ("HAS_VAR", flag(var.is_some())),
                ("SCALE", flag(self.scale)),
                ("HAS_PIVOT", flag(self.pivot.is_some())),
                ("HAS_W", flag(weight.is_some())),
                ("HAS_B", flag(bias.is_some())),
                ("STATS", flag(rstd.is_some())),
            ],
        )?;
        let len = x.len() as u64;
        let size = dtype.size() as u64;
        ctx.checked(|| {
            for chunk in chunks(ctx, len, &[size])? {
                // The first dispatch has a thread for each channel's rstd, even with no elements.
                let threads = if chunk.0 == 0 && rstd.is_some() {
                    chunk.1.max(channels as u64)
                } else {
                    chunk.1
                };
                let groups = to_u32(op, "workgroups", threads.div_ceil(u64::from(WG)))?;
                let params = ctx.params(
                    dtype,
                    [
                        to_u32(op, "elements", chunk.1)?,
                        to_u32(op, "channels", channels as u64)?,
                        groups,
                        0,
                    ],
                    [
                        to_u32(op, "inner size", inner as u64)?,
                        to_u32(op, "channels", param_channels.max(1) as u64)?,
                        to_u32(op, "elements", chunk.0)?,
                        0,
                    ],
                    [self.eps, 0.0, 0.0, 0.0],
                );
                let bindings = [
                    part(x, size, chunk),
                    Binding::whole(mean.buffer()),
                    whole_or(var.as_ref(), &mean),
                    whole_or(weight.as_ref(), &mean),
                    whole_or(bias.as_ref(), &mean),
                    part(&y, size, chunk),
                    whole_or(rstd.as_ref(), &mean),
                    whole_or(self.pivot, &mean),
                ];
                ctx.dispatch(&pipeline, &bindings, &params, groups)?;
            }
            Ok(())
        })?;
        Ok((y, rstd))
    }
}

fn channel_params(
    op: &str,
    params: [(&'static str, Option<&Tensor>); 2],
    channels: usize,
) -> Result<()> {
    for (name, p) in params {
        if let Some(p) = p.filter(|p| p.shape() != [channels]) {
            return Err(Error::Value(rsnorm_core::Error::ShapeMismatch(format!(
                "{op}: {name} has shape {}, expected ({channels},) (one per channel)",
                shape_str(p.shape())
            ))));
        }
    }
    Ok(())
}

/// GroupNorm of (N, C, ...): `(y, mean, rstd)`, the statistics (N·G) when `stats`.
pub fn group_norm(
    x: &Tensor,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    options: &rsnorm_core::norm::group_norm::GroupNormOptions,
    out: Option<&Tensor>,
    stats: bool,
) -> Result<RowNormOutput> {
    const OP: &str = "group_norm";
    let (batch, channels, groups) = options.check(x.shape())?;
    channel_params(OP, [("weight", weight), ("bias", bias)], channels)?;
    let spatial: usize = x.shape()[2..].iter().product();
    let per_group = channels / groups;
    RowNorm {
        op: OP,
        kind: RowKind::Layer,
        x,
        rows: batch * groups,
        row_len: per_group * spatial,
        residual: None,
        weight,
        bias,
        eps: options.eps,
        channels: Some(ChannelMap {
            groups,
            per_group,
            spatial,
        }),
        out,
        residual_out: None,
        stats,
    }
    .run()
}

/// InstanceNorm of (N, C, ...) with each instance's statistics (running statistics, when given,
/// updated in place with their batch average), or (`use_input_stats=False`) with the running
/// ones: `(y, mean, rstd)`, the statistics (N·C) when `stats`.
pub fn instance_norm(
    x: &Tensor,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    options: &rsnorm_core::norm::instance_norm::InstanceNormOptions,
    out: Option<&Tensor>,
    stats: bool,
) -> Result<RowNormOutput> {
    const OP: &str = "instance_norm";
    let ctx = context()?;
    let (batch, channels, spatial) = options.check(x.shape())?;
    channel_params(OP, [("weight", weight), ("bias", bias)], channels)?;
    channel_params(
        OP,
        [("running_mean", running_mean), ("running_var", running_var)],
        channels,
    )?;
    check_paired(OP, running_mean.is_some(), running_var.is_some())?;
    if options.use_input_stats {
        rsnorm_core::norm::instance_norm::check_instances(x.shape())?;
    }
    match (running_mean, running_var, options.use_input_stats) {
        (None, _, true) => RowNorm {
            op: OP,
            kind: RowKind::Layer,
            x,
            rows: batch * channels,
            row_len: spatial,
            residual: None,
            weight,
            bias,
            eps: options.eps,
            channels: Some(ChannelMap {
                groups: channels,
                per_group: 1,
                spatial,
            }),
            out,
            residual_out: None,
            stats,
        }
        .run(),
        (Some(rm), Some(rv), true) => {
            // The N·C instances are the channels of x seen as (1, N·C, spatial).
            x.dtype().check(ctx, OP, "x")?;
            let y = output(ctx, OP, "out", out, x.shape(), x.dtype())?;
            check_running(
                ctx,
                OP,
                &[("running_mean", Some(rm)), ("running_var", Some(rv))],
                &[("out", Some(&y)), ("x", Some(x))],
            )?;
            let instances = [1, batch * channels, spatial];
            let xs = x.reshape(&instances);
            let s = channel_stats(ctx, OP, &xs, 1, options.eps, 1.0)?;
            update_running(ctx, OP, &s.mean, rm, batch, options.momentum)?;
            update_running(ctx, OP, &s.corrected, rv, batch, options.momentum)?;
            let (y, _) = ChannelAffine {
                op: OP,
                x: &xs,
                axis: 1,
                mean: &s.dev_mean,
                pivot: Some(&s.pivot),
                var: Some(&s.var),
                scale: true,
                param_channels: Some(channels),
                weight,
                bias,
                eps: options.eps,
                out: Some(&y.reshape(&instances)),
                stats: false,
            }
            .run()?;
            let (mean, rstd) = if stats {
                (Some(s.mean), Some(s.rstd))
            } else {
                (None, None)
            };
            Ok(RowNormOutput {
                y: y.reshape(x.shape()),
                sum: None,
                mean,
                rstd,
            })
        }
        (Some(mean), Some(var), false) => {
            let (y, rstd) = ChannelAffine {
                op: OP,
                x,
                axis: 1,
                mean,
                pivot: None,
                var: Some(var),
                scale: true,
                param_channels: None,
                weight,
                bias,
                eps: options.eps,
                out,
                stats,
            }
            .run()?;
            let compute = x.dtype().compute();
            let (mean, rstd) = match rstd {
                Some(rstd) => (
                    Some(repeat(mean, batch, compute)?),
                    Some(repeat(&rstd, batch, compute)?),
                ),
                None => (None, None),
            };
            Ok(RowNormOutput {
                y,
                sum: None,
                mean,
                rstd,
            })
        }
        _ => Err(Error::Value(rsnorm_core::Error::InvalidArgument(format!(
            "{OP}: use_input_stats=False needs running_mean and running_var"
        )))),
    }
}

/// BatchNorm, channels at `axis`: with the batch's statistics when training or without running
/// statistics (updating the running ones in place when training), else with the running ones.
/// `(y, mean, rstd)`, the per-channel statistics used when `stats`.
pub fn batch_norm(
    x: &Tensor,
    running_mean: Option<&Tensor>,
    running_var: Option<&Tensor>,
    weight: Option<&Tensor>,
    bias: Option<&Tensor>,
    options: &rsnorm_core::norm::batch_norm::BatchNormOptions,
    axis: i64,
    out: Option<&Tensor>,
    stats: bool,
) -> Result<RowNormOutput> {
    const OP: &str = "batch_norm";
    let ctx = context()?;
    let axis = options.channel_axis(axis, x.shape())?;
    let channels = x.shape()[axis];
    channel_params(OP, [("weight", weight), ("bias", bias)], channels)?;
    channel_params(
        OP,
        [("running_mean", running_mean), ("running_var", running_var)],
        channels,
    )?;
    if !options.mean_only {
        check_paired(OP, running_mean.is_some(), running_var.is_some())?;
    }
    x.dtype().check(ctx, OP, "x")?;
    let affine = |mean: &Tensor, pivot: Option<&Tensor>, var: Option<&Tensor>, out, stats| {
        ChannelAffine {
            op: OP,
            x,
            axis,
            mean,
            pivot,
            var,
            scale: !options.mean_only,
            param_channels: None,
            weight,
            bias,
            eps: options.eps,
            out,
            stats,
        }
        .run()
    };
    if let (Some(mean), false) = (running_mean, options.training) {
        let (y, rstd) = affine(mean, None, running_var, out, stats)?;
        let mean = match rstd {
            Some(_) => Some(repeat(mean, 1, x.dtype().compute())?),
            None => None,
        };
        return Ok(RowNormOutput {
            y,
            sum: None,
            mean,
            rstd,
        });
    }
    let factor = options.batch_factor(x.shape(), axis, running_mean.is_some())?;
    let y = output(ctx, OP, "out", out, x.shape(), x.dtype())?;
    let running_var = running_var.filter(|_| !options.mean_only);
    if options.training {
        check_running(
            ctx,
            OP,
            &[("running_mean", running_mean), ("running_var", running_var)],
            &[("out", Some(&y)), ("x", Some(x))],
        )?;
    }
    let correction = options.running_var_correction as f64;
    let s = channel_stats(ctx, OP, x, axis, options.eps, correction)?;
    if options.training {
        if let Some(rm) = running_mean {
            update_running(ctx, OP, &s.mean, rm, 1, factor)?;
        }
        if let Some(rv) = running_var {
            update_running(ctx, OP, &s.corrected, rv, 1, factor)?;
        }
    }
    let (y, _) = affine(&s.dev_mean, Some(&s.pivot), Some(&s.var), Some(&y), false)?;
    let (mean, rstd) = if stats {
        (Some(s.mean), Some(s.rstd))
    } else {
        (None, None)
    };
    Ok(RowNormOutput {
        y,
        sum: None,
        mean,
        rstd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// wgpu's default handler panics on a validation error; ours returns `Error::Device` and the
    /// device keeps working.
    #[test]
    fn validation_errors_are_errors_not_panics() {
        let Ok(ctx) = context() else {
            assert!(
                std::env::var("RSNORM_REQUIRE_GPU").as_deref() != Ok("1"),
                "RSNORM_REQUIRE_GPU=1 but there is no GPU adapter"
            );
            return;
        };
        let x = Tensor::empty(&[64], DType::F32).unwrap();
        let pipeline = ctx.pipeline(SELU, DType::F32, None, &[]).unwrap();
        let params = ctx.params(DType::F32, [64, 0, 1, 0], [0; 4], [0.0; 4]);
        // A binding past the end of its buffer.
        let bad = Binding {
            buffer: x.buffer(),
            offset: 1 << 20,
            size: 256,
        };
        let err = ctx
            .checked(|| ctx.dispatch(&pipeline, &[bad, Binding::whole(x.buffer())], &params, 1))
            .unwrap_err();
        assert!(matches!(err, Error::Device(_)), "{err:?}");
        let y = selu(&x, None).unwrap();
        assert_eq!(y.to_bytes().unwrap().len(), 256);
    }
}
