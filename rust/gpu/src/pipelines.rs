//! Shader assembly, the pipeline cache and dispatch.
//!
//! A kernel is written once (`shaders/<op>.wgsl`) over `S` (storage) and `C` (compute) types; the
//! host puts before it the dtype's aliases and math, the reduction strategy the adapter supports
//! (subgroups or a workgroup tree) and `common.wgsl`. Variants (threads per row, optional
//! parameters) are pipeline-overridable constants, so one source gives every specialization.

use crate::context::Context;
use crate::error::{Error, Result};
use crate::tensor::DType;
use std::fmt::Write;
use std::num::NonZeroU64;

pub(crate) const WG: u32 = 256;

/// Source text a kernel's host code writes for a pipeline's constants (the bindings of a variable
/// number of arrays), put before the kernel's file.
pub(crate) type Generate = fn(&[(&'static str, f64)]) -> String;

/// A kernel's source and name. Kernels are told apart by name (each file is one kernel).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Kernel {
    pub(crate) name: &'static str,
    source: &'static str,
    generate: Option<Generate>,
}

impl PartialEq for Kernel {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Kernel {}

impl std::hash::Hash for Kernel {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

macro_rules! kernel {
    ($name:literal) => {
        kernel!($name, None)
    };
    ($name:literal, $generate:expr) => {
        Kernel {
            name: $name,
            source: include_str!(concat!("shaders/", $name, ".wgsl")),
            generate: $generate,
        }
    };
}

pub(crate) const ROWS: Kernel = kernel!("rows");
pub(crate) const SOFTMAX: Kernel = kernel!("softmax");
pub(crate) const SOFTMAX_BACKWARD: Kernel = kernel!("softmax_backward");
pub(crate) const CROSS_ENTROPY: Kernel = kernel!("cross_entropy");
pub(crate) const MATMUL: Kernel = kernel!("matmul");
pub(crate) const CHANNELS: Kernel = kernel!("channels");
pub(crate) const SELU: Kernel = kernel!("selu");
pub(crate) const CAST: Kernel = kernel!("cast");
pub(crate) const BATCH_STATS: Kernel = kernel!("batch_stats");
pub(crate) const RUNNING: Kernel = kernel!("running");
pub(crate) const ROWS_BACKWARD: Kernel = kernel!("rows_backward");
pub(crate) const PARAM_GRADS: Kernel = kernel!("param_grads");
pub(crate) const OPTIM: Kernel = kernel!("optim", Some(crate::optim::slot_bindings));
pub(crate) const CHANNELS_BACKWARD: Kernel = kernel!("channels_backward");
pub(crate) const SUMSQ: Kernel = kernel!("sumsq");

/// One compiled pipeline: the kernel, its dtypes and its constants (as f64 bits, hashable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    kernel: Kernel,
    dtype: DType,
    /// The destination dtype of a cast.
    dst: Option<DType>,
    constants: Vec<(&'static str, u64)>,
}

fn type_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F16 => "f16",
        DType::F32 => "f32",
        DType::F64 => "f64",
    }
}

impl Context {
    /// Subgroup reductions where the adapter has them, and for f32 compute (subgroup operations
    /// on f64 are an extension few drivers have).
    fn subgroups(&self, dtype: DType) -> bool {
        self.has(wgpu::Features::SUBGROUP) && dtype.compute() == DType::F32
    }

    fn source(&self, key: &Key, constants: &[(&'static str, f64)]) -> String {
        let mut src = String::new();
        if key.dtype == DType::F16 || key.dst == Some(DType::F16) {
            src.push_str("enable f16;\n");
        }
        // Subgroup built-ins need no `enable` in naga: the device's SUBGROUP feature allows them.
        let subgroups = self.subgroups(key.dtype);
        let compute = key.dtype.compute();
        let _ = writeln!(
            src,
            "alias S = {};\nalias C = {};",
            type_name(key.dtype),
            type_name(compute)
        );
        if let Some(dst) = key.dst {
            let _ = writeln!(src, "alias D = {};", type_name(dst));
        }
        let lowest = match compute {
            DType::F64 => "-1.7976931348623157e308",
            _ => "-3.40282346638528859812e38",
        };
        let _ = writeln!(src, "const LOWEST: C = C({lowest});");
        src.push_str(if compute == DType::F64 {
            include_str!("shaders/math_f64.wgsl")
        } else {
            include_str!("shaders/math_f32.wgsl")
        });
        src.push_str(include_str!("shaders/common.wgsl"));
        src.push_str(if subgroups {
            include_str!("shaders/lanes_subgroup.wgsl")
        } else {
            include_str!("shaders/lanes_tree.wgsl")
        });
        src.push_str(include_str!("shaders/reduce.wgsl"));
        if let Some(generate) = key.kernel.generate {
            src.push_str(&generate(constants));
        }
        src.push_str(key.kernel.source);
        src
    }

    /// The pipeline of `kernel` for `dtype` with `constants`, compiled on first use.
    pub(crate) fn pipeline(
        &self,
        kernel: Kernel,
        dtype: DType,
        dst: Option<DType>,
        constants: &[(&'static str, f64)],
    ) -> Result<Pipeline> {
        let key = Key {
            kernel,
            dtype,
            dst,
            constants: constants.iter().map(|&(n, v)| (n, v.to_bits())).collect(),
        };
        if let Some(found) = crate::context::lock(&self.pipelines).get(&key) {
            return Ok(found.clone());
        }
        let source = self.source(&key, constants);
        let compute = self.checked(|| {
            let module = self
                .device
                .create_shader_module(wgpu::ShaderModuleDescriptor {
                    label: Some(kernel.name),
                    source: wgpu::ShaderSource::Wgsl(source.into()),
                });
            Ok(self
                .device
                .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                    label: Some(kernel.name),
                    layout: None,
                    module: &module,
                    entry_point: Some("main"),
                    compilation_options: wgpu::PipelineCompilationOptions {
                        constants,
                        // Workgroup memory is always written before it is read.
                        zero_initialize_workgroup_memory: false,
                    },
                    cache: None,
                }))
        })?;
        // Asked once: each call of get_bind_group_layout makes a new handle.
        let layout = compute.get_bind_group_layout(0);
        let pipeline = Pipeline { compute, layout };
        crate::context::lock(&self.pipelines).insert(key, pipeline.clone());
        Ok(pipeline)
    }

    /// The uniform parameters of one dispatch: `n`, `m` (u32 x4 each) and `f` (x4 in the compute
    /// type), laid out as `struct Params` in common.wgsl, in a slot of the uniform arena.
    pub(crate) fn params(&self, dtype: DType, n: [u32; 4], m: [u32; 4], f: [f64; 4]) -> Uniform {
        let mut bytes: Vec<u8> = n.iter().chain(&m).flat_map(|v| v.to_le_bytes()).collect();
        if dtype.compute() == DType::F64 {
            // vec4<f64> is aligned to 32 bytes.
            bytes.resize(32, 0);
            bytes.extend(f.iter().flat_map(|v| v.to_le_bytes()));
        } else {
            bytes.extend(f.iter().flat_map(|&v| (v as f32).to_le_bytes()));
        }
        self.uniform(&bytes)
    }

    /// Records one dispatch of `groups` workgroups (2-D beyond the per-dimension limit) with
    /// `bindings` at 0.. and the uniform `params` after them.
    pub(crate) fn dispatch(
        &self,
        pipeline: &Pipeline,
        bindings: &[Binding<'_>],
        params: &Uniform,
        groups: u32,
    ) -> Result<()> {
        if groups == 0 {
            return Ok(());
        }
        let (gx, gy) = self.grid(groups)?;
        let group = self.bind_group(pipeline, bindings, params);
        self.record(1, |encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&pipeline.compute);
            pass.set_bind_group(0, &group, &[]);
            pass.dispatch_workgroups(gx, gy, 1);
        });
        Ok(())
    }

    /// Records many dispatches of one pipeline in one compute pass, counted as one towards the
    /// submission batch: an optimizer step over hundreds of tensors, where a pass and a possible
    /// submission per tensor cost more than the tensor's work.
    pub(crate) fn dispatch_all(
        &self,
        pipeline: &Pipeline,
        work: &[(Vec<Binding<'_>>, Uniform, u32)],
    ) -> Result<()> {
        let mut grids = Vec::with_capacity(work.len());
        for (bindings, params, groups) in work.iter().filter(|w| w.2 > 0) {
            grids.push((
                self.grid(*groups)?,
                self.bind_group(pipeline, bindings, params),
            ));
        }
        if grids.is_empty() {
            return Ok(());
        }
        self.record(1, |encoder| {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor::default());
            pass.set_pipeline(&pipeline.compute);
            for ((gx, gy), group) in &grids {
                pass.set_bind_group(0, group, &[]);
                pass.dispatch_workgroups(*gx, *gy, 1);
            }
        });
        Ok(())
    }

    /// `groups` workgroups as a 1-D or 2-D grid within the per-dimension limit.
    fn grid(&self, groups: u32) -> Result<(u32, u32)> {
        let per_dim = self.max_groups;
        let (gx, gy) = (groups.min(per_dim), groups.div_ceil(per_dim));
        if gy > per_dim {
            return Err(Error::Device(format!(
                "{groups} workgroups exceed the GPU's dispatch limit"
            )));
        }
        Ok((gx, gy))
    }

    fn bind_group(
        &self,
        pipeline: &Pipeline,
        bindings: &[Binding<'_>],
        params: &Uniform,
    ) -> wgpu::BindGroup {
        let mut entries: Vec<wgpu::BindGroupEntry<'_>> = bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                    buffer: b.buffer,
                    offset: b.offset,
                    size: NonZeroU64::new(b.size.max(4).next_multiple_of(4)),
                }),
            })
            .collect();
        entries.push(wgpu::BindGroupEntry {
            binding: bindings.len() as u32,
            resource: wgpu::BindingResource::Buffer(wgpu::BufferBinding {
                buffer: &params.buffer,
                offset: params.offset,
                size: NonZeroU64::new(params.size),
            }),
        });
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: None,
            layout: &pipeline.layout,
            entries: &entries,
        })
    }
}

/// A compiled kernel and the layout of its bindings.
#[derive(Debug, Clone)]
pub(crate) struct Pipeline {
    compute: wgpu::ComputePipeline,
    layout: wgpu::BindGroupLayout,
}

/// One dispatch's parameters: a slot of a uniform arena.
#[derive(Debug)]
pub(crate) struct Uniform {
    pub(crate) buffer: wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

/// A byte range of a buffer bound to a kernel.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    pub(crate) buffer: &'a wgpu::Buffer,
    pub(crate) offset: u64,
    pub(crate) size: u64,
}

impl<'a> Binding<'a> {
    pub(crate) fn whole(buffer: &'a wgpu::Buffer) -> Self {
        Binding {
            buffer,
            offset: 0,
            size: buffer.size(),
        }
    }
}
