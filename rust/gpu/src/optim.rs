//! Optimizer steps on device arrays: parameters, gradients and state stay on the device, updated
//! in place by `shaders/optim.wgsl` with torch.optim's rules (the core's `optim` formulas), the
//! step-dependent scalars computed in f64 on the host. One dispatch updates many tensors (up to
//! the slots the adapter's storage-binding limit allows), as PyTorch's multi-tensor kernels do:
//! a step over hundreds of small tensors costs a few dispatches, not one each. Gradient clipping's
//! global norm is a device reduction (`shaders/sumsq.wgsl`), read by the step without a host
//! round trip.

use crate::context::{context, Context};
use crate::error::{Error, Result};
use crate::ops::{chunks, new_like, part, to_u32};
use crate::pipelines::{Binding, OPTIM, SUMSQ, WG};
use crate::tensor::{DType, Tensor};
use rsnorm_core::error::shape_str;
use rsnorm_core::optim::Algorithm;
use std::collections::HashMap;
use std::fmt::Write;

/// Elements one workgroup of the norm's first stage sums (`BLOCK` in sumsq.wgsl).
const NORM_BLOCK: u64 = 4096;
/// Scalars per tensor in the step's table (optim.wgsl's `sc`).
const ROW: usize = 16;
/// Tensors one dispatch updates at most: 64 bring 200 tensors down to 4 dispatches, and a larger
/// shader (one switch arm per slot) gains little more.
const MAX_SLOTS: u32 = 64;
/// Bindings of optim.wgsl before the slots': plan, scalars, norm.
const SHARED_BINDINGS: u32 = 3;

/// One tensor of a step: its parameter, gradient and state (in `Algorithm::state_names` order),
/// its step count after this step, and whether its momentum buffer is new (SGD copies the
/// gradient into it).
#[derive(Debug, Clone)]
pub struct StepTensor<'a> {
    pub param: &'a Tensor,
    pub grad: &'a Tensor,
    pub state: Vec<&'a Tensor>,
    pub step: u64,
    pub fresh_buffer: bool,
}

fn invalid(msg: String) -> Error {
    Error::Value(rsnorm_core::Error::InvalidArgument(msg))
}

/// The checks of a step: matching shapes and dtypes, parameters in memory of their own.
fn check(ctx: &Context, op: &str, states: usize, tensors: &[StepTensor<'_>]) -> Result<()> {
    for (i, t) in tensors.iter().enumerate() {
        t.param.dtype().check(ctx, op, "params")?;
        if t.grad.shape() != t.param.shape() {
            return Err(invalid(format!(
                "{op}: grads[{i}] has shape {}, parameter has {}",
                shape_str(t.grad.shape()),
                shape_str(t.param.shape())
            )));
        }
        if t.grad.dtype() != t.param.dtype() {
            return Err(invalid(format!(
                "{op}: grads[{i}] has dtype {}, parameter has {}",
                t.grad.dtype().name(),
                t.param.dtype().name()
            )));
        }
        if t.state.len() != states
            || t.state
                .iter()
                .any(|s| s.shape() != t.param.shape() || s.dtype() != t.param.dtype())
        {
            return Err(invalid(format!(
                "{op}: the state of parameter {i} does not match it (another shape or dtype)"
            )));
        }
    }
    check_memory(op, tensors)
}

/// Written in place, no parameter or state may be another tensor's memory, and no gradient any
/// parameter's or state's: one pass over the memory the step writes (a step runs every iteration,
/// and comparing every pair was quadratic in the tensors).
fn check_memory(op: &str, tensors: &[StepTensor<'_>]) -> Result<()> {
    let conflict = |i: usize, role: &str, j: usize| {
        invalid(format!(
            "{op}: parameter {i} (or its state) and {role} {j} share memory; parameters are \
             updated in place, so each must have memory of its own"
        ))
    };
    // The tensor whose parameter or state each written memory is.
    let mut owner: HashMap<usize, usize> = HashMap::new();
    for (j, t) in tensors.iter().enumerate() {
        let written = std::iter::once(t.param).chain(t.state.iter().copied());
        for (k, w) in written.enumerate() {
            match owner.insert(w.memory_id(), j) {
                Some(i) if i != j => {
                    let role = if k == 0 {
                        "parameter"
                    } else {
                        "the state of parameter"
                    };
                    return Err(conflict(i, role, j));
                }
                _ => {}
            }
        }
    }
    for (j, t) in tensors.iter().enumerate() {
        if let Some(&i) = owner.get(&t.grad.memory_id()) {
            return Err(conflict(i, "gradient", j));
        }
    }
    Ok(())
}

/// The table row of one tensor (optim.wgsl's layout), in f64.
fn row(alg: &Algorithm, t: &StepTensor<'_>, max_norm: f64) -> [f64; ROW] {
    let mut r = [0.0; ROW];
    r[4] = f64::from(u8::from(t.fresh_buffer));
    r[5] = max_norm;
    let sc = alg.step_scalars(t.step);
    match *alg {
        Algorithm::Sgd(a) => {
            (r[0], r[1], r[2], r[3]) = (a.lr, a.weight_decay, a.momentum, 1.0 - a.dampening);
        }
        Algorithm::Adagrad(a) => (r[0], r[1], r[11]) = (sc.adagrad_lr, a.weight_decay, a.eps),
        Algorithm::Adadelta(a) => {
            (r[0], r[1], r[9], r[10], r[11]) = (a.lr, a.weight_decay, a.rho, 1.0 - a.rho, a.eps);
        }
        Algorithm::Rmsprop(a) => {
            (r[0], r[1], r[2]) = (a.lr, a.weight_decay, a.momentum);
            (r[9], r[10], r[11]) = (a.alpha, 1.0 - a.alpha, a.eps);
        }
        Algorithm::Adam(a) => {
            (r[0], r[1], r[6], r[7]) = (
                sc.adam_step_size,
                a.weight_decay,
                sc.adam_bias_correction2_sqrt,
                sc.adam_weight_keep,
            );
            (r[8], r[9], r[10], r[11]) = (1.0 - a.beta1, a.beta2, 1.0 - a.beta2, a.eps);
        }
    }
    r
}

/// The pipeline constants of a group's rules.
fn constants(alg: &Algorithm, clip: bool) -> Vec<(&'static str, f64)> {
    let flag = |b: bool| f64::from(u8::from(b));
    let (kind, momentum, nesterov, decay, decoupled, amsgrad, centered, maximize) = match *alg {
        Algorithm::Sgd(a) => (
            0,
            a.momentum != 0.0,
            a.nesterov,
            a.weight_decay,
            false,
            false,
            false,
            a.maximize,
        ),
        Algorithm::Adagrad(a) => (
            1,
            false,
            false,
            a.weight_decay,
            false,
            false,
            false,
            a.maximize,
        ),
        Algorithm::Adadelta(a) => (
            2,
            false,
            false,
            a.weight_decay,
            false,
            false,
            false,
            a.maximize,
        ),
        Algorithm::Rmsprop(a) => (
            3,
            a.momentum > 0.0,
            false,
            a.weight_decay,
            false,
            false,
            a.centered,
            a.maximize,
        ),
        Algorithm::Adam(a) => (
            4,
            false,
            false,
            a.weight_decay,
            a.decoupled,
            a.amsgrad,
            false,
            a.maximize,
        ),
    };
    vec![
        ("ALG", f64::from(kind)),
        ("MOMENTUM", flag(momentum)),
        ("NESTEROV", flag(nesterov)),
        ("DECAY", flag(decay != 0.0)),
        ("DECOUPLED", flag(decoupled)),
        ("AMSGRAD", flag(amsgrad)),
        ("CENTERED", flag(centered)),
        ("MAXIMIZE", flag(maximize)),
        ("CLIP", flag(clip)),
    ]
}

/// Bindings of one slot: the parameter, the gradient and the rule's `states` states.
fn slot_width(states: usize) -> usize {
    2 + states
}

/// Tensors one dispatch of a rule with `states` states updates: as many slots as the storage
/// bindings the adapter allows in one stage.
fn slots(ctx: &Context, states: usize) -> u32 {
    let limits = &ctx.limits;
    let storage = limits
        .max_storage_buffers_per_shader_stage
        .min(limits.max_bindings_per_bind_group.saturating_sub(1));
    (storage.saturating_sub(SHARED_BINDINGS) / slot_width(states) as u32).clamp(1, MAX_SLOTS)
}

/// The value of a pipeline constant.
fn constant(constants: &[(&'static str, f64)], name: &str) -> u32 {
    constants
        .iter()
        .find(|c| c.0 == name)
        .map_or(0, |c| c.1 as u32)
}

/// optim.wgsl's slot bindings and their `load`/`store`, for its SLOTS and STATES constants.
pub(crate) fn slot_bindings(constants: &[(&'static str, f64)]) -> String {
    let (slots, states) = (constant(constants, "SLOTS"), constant(constants, "STATES"));
    let mut src = String::from(
        "@group(0) @binding(0) var<storage, read> plan: array<u32>;\n\
         @group(0) @binding(1) var<storage, read> scalars: array<C>;\n\
         @group(0) @binding(2) var<storage, read> norm: array<C>;\n",
    );
    let mut binding = SHARED_BINDINGS;
    let mut var = |src: &mut String, access: &str, name: String| {
        let _ = writeln!(
            src,
            "@group(0) @binding({binding}) var<storage, {access}> {name}: array<S>;"
        );
        binding += 1;
    };
    for k in 0..slots {
        var(&mut src, "read_write", format!("param_{k}"));
        var(&mut src, "read", format!("grad_{k}"));
        for j in 0..states {
            var(&mut src, "read_write", format!("state{j}_{k}"));
        }
    }
    let _ = writeln!(src, "@group(0) @binding({binding}) var<uniform> p: Params;");
    let (mut load, mut store) = (String::new(), String::new());
    for k in 0..slots {
        let values: Vec<String> = (0..3)
            .map(|j| {
                if j < states {
                    format!("C(state{j}_{k}[i])")
                } else {
                    "C(0)".into()
                }
            })
            .collect();
        let _ = writeln!(
            load,
            "        case {k}u: {{ return Elem(C(param_{k}[i]), C(grad_{k}[i]), {}); }}",
            values.join(", ")
        );
        let _ = write!(store, "        case {k}u: {{ param_{k}[i] = S(e.x);");
        for j in 0..states {
            let _ = write!(store, " state{j}_{k}[i] = S(e.s{j});");
        }
        store.push_str(" }\n");
    }
    let _ = write!(
        src,
        "fn load(slot: u32, i: u32) -> Elem {{\n    switch slot {{\n{load}        \
         default: {{ return Elem(C(0), C(0), C(0), C(0), C(0)); }}\n    }}\n}}\n\
         fn store(slot: u32, i: u32, e: Elem) {{\n    switch slot {{\n{store}        \
         default: {{}}\n    }}\n}}\n"
    );
    src
}

/// One optimizer step of every tensor, in place. `clip`: (max_norm, the gradients' global norm
/// from [`grad_norm`]), the gradients scaled as they are read.
pub fn optim_step(
    alg: &Algorithm,
    tensors: &[StepTensor<'_>],
    clip: Option<(f64, &Tensor)>,
) -> Result<()> {
    const OP: &str = "optimizer step";
    let ctx = context()?;
    alg.validate()?;
    let states = alg.state_names().len();
    check(ctx, OP, states, tensors)?;
    let Some(first) = tensors.first() else {
        return Ok(());
    };
    let dtype = first.param.dtype();
    if let Some(t) = tensors.iter().find(|t| t.param.dtype() != dtype) {
        return Err(Error::Unsupported(format!(
            "{OP}: parameters of one group have one dtype ({} and {})",
            dtype.name(),
            t.param.dtype().name()
        )));
    }
    let compute = dtype.compute();
    let max_norm = clip.map_or(0.0, |(m, _)| m);
    let table: Vec<f64> = tensors.iter().flat_map(|t| row(alg, t, max_norm)).collect();
    let table = upload(&table, compute)?;
    let norm = match clip {
        Some((_, norm)) => crate::ops::to_dtype(ctx, OP, "norm", norm, compute)?,
        None => table.clone(),
    };
    let slots = slots(ctx, states);
    let mut constants = constants(alg, clip.is_some());
    constants.extend([("SLOTS", f64::from(slots)), ("STATES", states as f64)]);
    let pipeline = ctx.pipeline(OPTIM, dtype, None, &constants)?;
    let size = dtype.size() as u64;
    // Every non-empty binding-sized part of every tensor, in order: (tensor, part).
    let mut parts = Vec::new();
    for (k, t) in tensors.iter().enumerate() {
        for chunk in chunks(ctx, t.param.len() as u64, &[size])? {
            if chunk.1 > 0 {
                parts.push((k, chunk));
            }
        }
    }
    // optim.wgsl's plan: per part, its first workgroup within its dispatch, its elements, its
    // tensor's row of the table. A dispatch (a range of parts, and its workgroups) takes up to
    // `slots` parts, within the grid's workgroups.
    let grid = u64::from(ctx.max_groups).pow(2);
    let mut plan: Vec<u32> = Vec::with_capacity(parts.len() * 4);
    let mut dispatches: Vec<(std::ops::Range<usize>, u64)> = Vec::new();
    for (n, &(k, (_, count))) in parts.iter().enumerate() {
        let need = count.div_ceil(u64::from(WG));
        match dispatches.last_mut() {
            Some((range, groups)) if range.len() < slots as usize && *groups + need <= grid => {
                plan.extend([to_u32(OP, "workgroups", *groups)?, 0, 0, 0]);
                range.end = n + 1;
                *groups += need;
            }
            _ => {
                plan.extend([0, 0, 0, 0]);
                dispatches.push((n..n + 1, need));
            }
        }
        let row = plan.len() - 4;
        plan[row + 1] = to_u32(OP, "elements", count)?;
        plan[row + 2] = to_u32(OP, "tensors", k as u64)?;
    }
    if plan.is_empty() {
        return Ok(());
    }
    let plan_bytes: Vec<u8> = plan.iter().flat_map(|v| v.to_le_bytes()).collect();
    ctx.checked(|| {
        let plan = ctx.upload(&plan_bytes, wgpu::BufferUsages::STORAGE);
        let mut work = Vec::with_capacity(dispatches.len());
        for (range, groups) in &dispatches {
            let dispatch = &parts[range.clone()];
            let mut bindings = vec![
                Binding::whole(&plan),
                Binding::whole(table.buffer()),
                Binding::whole(norm.buffer()),
            ];
            for &(k, chunk) in dispatch {
                let t = &tensors[k];
                bindings.push(part(t.param, size, chunk));
                bindings.push(part(t.grad, size, chunk));
                bindings.extend(t.state.iter().map(|s| part(s, size, chunk)));
            }
            // Unused slots repeat the last part's bindings (a dispatch binds every slot), which
            // no workgroup reaches.
            let last = bindings.len() - slot_width(states)..bindings.len();
            for _ in dispatch.len()..slots as usize {
                bindings.extend_from_within(last.clone());
            }
            let groups = to_u32(OP, "workgroups", *groups)?;
            let (first, used) = (to_u32(OP, "parts", range.start as u64)?, range.len() as u32);
            let params = ctx.params(dtype, [0, used, groups, 0], [first, 0, 0, 0], [0.0; 4]);
            work.push((bindings, params, groups));
        }
        // One compute pass for the whole step.
        ctx.dispatch_all(&pipeline, &work)
    })
}

/// `values` as a device array of `dtype`.
pub(crate) fn upload(values: &[f64], dtype: DType) -> Result<Tensor> {
    let bytes: Vec<u8> = match dtype {
        DType::F64 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
        _ => values
            .iter()
            .flat_map(|&v| (v as f32).to_le_bytes())
            .collect(),
    };
    Tensor::from_bytes(&bytes, &[values.len()], dtype)
}

/// The global L2 norm of `grads` (one dtype), a 0-d device array in the compute dtype, summed in
/// a fixed order.
pub fn grad_norm(grads: &[&Tensor]) -> Result<Tensor> {
    const OP: &str = "clip_grad_norm";
    let ctx = context()?;
    let dtype = grads.first().map_or(DType::F32, |g| g.dtype());
    dtype.check(ctx, OP, "grads")?;
    if let Some(g) = grads.iter().find(|g| g.dtype() != dtype) {
        return Err(Error::Unsupported(format!(
            "{OP}: gradients of one dtype, got {} and {}",
            dtype.name(),
            g.dtype().name()
        )));
    }
    let compute = dtype.compute();
    let size = dtype.size() as u64;
    let mut plan = Vec::new();
    let mut slots = 0u64;
    for g in grads {
        for chunk in chunks(ctx, g.len() as u64, &[size])? {
            let blocks = chunk.1.div_ceil(NORM_BLOCK);
            plan.push((*g, chunk, blocks, slots));
            slots += blocks;
        }
    }
    let partials = new_like(ctx, &[slots.max(1) as usize], compute)?;
    let norm = new_like(ctx, &[], compute)?;
    let stage = |n: u32| ctx.pipeline(SUMSQ, dtype, None, &[("STAGE", f64::from(n))]);
    ctx.checked(|| {
        let sums = stage(0)?;
        for &(g, chunk, blocks, first) in &plan {
            if blocks == 0 {
                continue;
            }
            let groups = to_u32(OP, "workgroups", blocks)?;
            let params = ctx.params(
                dtype,
                [to_u32(OP, "elements", chunk.1)?, 0, groups, 0],
                [to_u32(OP, "blocks", first)?, 0, 0, 0],
                [0.0; 4],
            );
            let bindings = [
                part(g, size, chunk),
                Binding::whole(partials.buffer()),
                Binding::whole(norm.buffer()),
            ];
            ctx.dispatch(&sums, &bindings, &params, groups)?;
        }
        let fold = stage(1)?;
        let params = ctx.params(
            dtype,
            [0, 0, 1, 0],
            [0, to_u32(OP, "blocks", slots)?, 0, 0],
            [0.0; 4],
        );
        // x is not read: the partials stand in (at least one element).
        let bindings = [
            Binding::whole(partials.buffer()),
            Binding::whole(partials.buffer()),
            Binding::whole(norm.buffer()),
        ];
        ctx.dispatch(&fold, &bindings, &params, 1)
    })?;
    Ok(norm)
}

/// Scales `grads` in place by min(1, max_norm / (norm + 1e-6)), `norm` from [`grad_norm`]
/// (torch.nn.utils.clip_grad_norm_).
pub fn scale_grads(grads: &[&Tensor], max_norm: f64, norm: &Tensor) -> Result<()> {
    const OP: &str = "clip_grad_norm";
    let ctx = context()?;
    for g in grads {
        let dtype = g.dtype();
        let size = dtype.size() as u64;
        let norm = crate::ops::to_dtype(ctx, OP, "norm", norm, dtype.compute())?;
        let pipeline = ctx.pipeline(SUMSQ, dtype, None, &[("STAGE", 2.0)])?;
        ctx.checked(|| {
            for chunk in chunks(ctx, g.len() as u64, &[size])? {
                if chunk.1 == 0 {
                    continue;
                }
                let groups = to_u32(OP, "workgroups", chunk.1.div_ceil(u64::from(WG)))?;
                let params = ctx.params(
                    dtype,
                    [to_u32(OP, "elements", chunk.1)?, 0, groups, 0],
                    [0; 4],
                    [max_norm, 0.0, 0.0, 0.0],
                );
                let bindings = [
                    part(g, size, chunk),
                    Binding::whole(norm.buffer()),
                    Binding::whole(norm.buffer()),
                ];
                ctx.dispatch(&pipeline, &bindings, &params, groups)?;
            }
            Ok(())
        })?;
    }
    Ok(())
}
