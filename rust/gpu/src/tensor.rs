//! Device arrays: a buffer, a shape and a dtype. Always C-contiguous (a host array of any layout is
//! copied contiguous on upload), so an op sees rows of `shape[-k:]` one after another.

use crate::context::{context, Context};
use crate::error::{Error, Result};
use std::sync::Arc;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    F16,
    F32,
    F64,
}

impl DType {
    pub fn size(self) -> usize {
        match self {
            DType::F16 => 2,
            DType::F32 => 4,
            DType::F64 => 8,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F16 => "float16",
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// The dtype statistics come back in, and arithmetic runs in: f32 for f16 storage.
    #[must_use]
    pub fn compute(self) -> DType {
        match self {
            DType::F16 => DType::F32,
            other => other,
        }
    }

    /// Refuses a dtype whose shader feature the adapter lacks (`op` names the caller).
    pub(crate) fn check(self, ctx: &Context, op: &str, arg: &str) -> Result<()> {
        let (feature, name) = match self {
            DType::F32 => return Ok(()),
            DType::F16 => (wgpu::Features::SHADER_F16, "SHADER_F16"),
            DType::F64 => (wgpu::Features::SHADER_F64, "SHADER_F64"),
        };
        if ctx.has(feature) {
            Ok(())
        } else {
            Err(Error::Unsupported(format!(
                "{op}: {arg} has dtype {}, which this GPU cannot compute with (the adapter lacks \
                 the {name} feature); use float32",
                self.name()
            )))
        }
    }
}

/// The device memory of an array; back to the pool when the last array using it goes.
#[derive(Debug)]
pub(crate) struct Block(Option<wgpu::Buffer>);

impl Block {
    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.0
            .as_ref()
            .expect("a block holds its buffer until dropped")
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let (Some(buffer), Ok(ctx)) = (self.0.take(), context()) {
            ctx.recycle(buffer);
        }
    }
}

/// An array in device memory.
#[derive(Debug, Clone)]
pub struct Tensor {
    pub(crate) block: Arc<Block>,
    shape: Vec<usize>,
    dtype: DType,
}

impl Tensor {
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn nbytes(&self) -> usize {
        self.len() * self.dtype.size()
    }

    pub(crate) fn buffer(&self) -> &wgpu::Buffer {
        self.block.buffer()
    }

    /// Whether two arrays are the same device memory (an op's `out` may be its input).
    pub fn same_memory(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.block, &other.block)
    }

    /// The identity of the device memory: equal for arrays that are the same memory.
    pub(crate) fn memory_id(&self) -> usize {
        Arc::as_ptr(&self.block) as usize
    }

    /// An uninitialized array.
    pub fn empty(shape: &[usize], dtype: DType) -> Result<Tensor> {
        let ctx = context()?;
        dtype.check(ctx, "empty", "dtype")?;
        let bytes = shape.iter().product::<usize>() * dtype.size();
        let buffer = ctx.checked(|| ctx.buffer(bytes as u64))?;
        Ok(Tensor::wrap(buffer, shape.to_vec(), dtype))
    }

    /// An array holding `data`, the C-order bytes of an array of `shape` and `dtype`.
    pub fn from_bytes(data: &[u8], shape: &[usize], dtype: DType) -> Result<Tensor> {
        let ctx = context()?;
        dtype.check(ctx, "asarray", "x")?;
        assert_eq!(data.len(), shape.iter().product::<usize>() * dtype.size());
        if data.len() as u64 > ctx.limits.max_buffer_size {
            return Err(Error::Device(format!(
                "an array of {} bytes exceeds the GPU's largest buffer ({} bytes)",
                data.len(),
                ctx.limits.max_buffer_size
            )));
        }
        let usage = wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST;
        let buffer = ctx.checked(|| Ok(ctx.upload(data, usage)))?;
        Ok(Tensor::wrap(buffer, shape.to_vec(), dtype))
    }

    /// The array's bytes in C order (waits for the work that writes it).
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        context()?.download(self.buffer(), self.nbytes() as u64)
    }

    /// Copies `src`'s values into this array, in place (recorded after the work before it): a
    /// layer's `load_state_dict` keeps the arrays an optimizer holds.
    pub fn copy_from(&self, src: &Tensor) -> Result<()> {
        if src.dtype != self.dtype || src.len() != self.len() {
            return Err(Error::Unsupported(format!(
                "copy: a {} array of {} elements into a {} array of {}",
                src.dtype.name(),
                src.len(),
                self.dtype.name(),
                self.len()
            )));
        }
        if self.is_empty() || self.same_memory(src) {
            return Ok(());
        }
        let ctx = context()?;
        // Buffers are whole multiples of 4 bytes, as copies must be.
        let bytes = (self.nbytes() as u64).next_multiple_of(4);
        ctx.checked(|| {
            ctx.record(1, |encoder| {
                encoder.copy_buffer_to_buffer(src.buffer(), 0, self.buffer(), 0, bytes);
            });
            Ok(())
        })
    }

    /// The same memory seen with another shape of as many elements.
    #[must_use]
    pub fn reshape(&self, shape: &[usize]) -> Tensor {
        assert_eq!(shape.iter().product::<usize>(), self.len());
        Tensor {
            block: Arc::clone(&self.block),
            shape: shape.to_vec(),
            dtype: self.dtype,
        }
    }

    pub(crate) fn wrap(buffer: wgpu::Buffer, shape: Vec<usize>, dtype: DType) -> Tensor {
        Tensor {
            block: Arc::new(Block(Some(buffer))),
            shape,
            dtype,
        }
    }
}

/// Submits all recorded work and waits for it.
pub fn synchronize() -> Result<()> {
    context()?.synchronize()
}
