//! rsnorm's GPU path through wgpu (Vulkan, Metal, DX12): device-resident arrays and WGSL kernels
//! of the normalizations, with the core's argument rules and the same exactness (corrected
//! two-pass statistics).
//!
//! The device opens on first use, never at load: the Vulkan loader is found at run time, so a
//! library with this crate linked loads where there is no GPU, and `is_available` says false.

mod backward;
mod batch_stats;
mod context;
mod error;
mod losses;
mod ops;
mod optim;
mod pipelines;
mod tensor;

pub use backward::{ChannelBackward, ChannelKind, RowGrads, RowNormBackward, StatsUse};
pub use context::{device_info, is_available, Timestamp};
pub use error::{Error, Result};
pub use losses::{ClassTarget, CrossEntropy, LossGrad};
pub use ops::{
    batch_norm, check_out, group_norm, instance_norm, matmul, relu, relu_backward, repeat, selu,
    selu_backward, softmax, softmax_backward, ChannelAffine, ChannelMap, RowKind, RowNorm,
    RowNormOutput,
};
pub use optim::{grad_norm, optim_step, scale_grads, StepTensor};
pub use tensor::{synchronize, DType, Tensor};
