//! rsnorm-core: normalization kernels on strided memory, generic over f32/f64 (f16 stored,
//! computed in f32). No Python here: the `rsnorm-py` crate binds these functions.
//!
//! Layout of a call: a [`layout::Rows`] view describes the input as rows (the normalized trailing
//! dims) under any strides; [`rows::map_rows`] hands each row to a per-row kernel as a contiguous
//! slice (directly, or through per-thread scratch when the row is strided or stored as f16), splits
//! rows across the thread pool ([`parallel`]) and runs the hot loop under the best SIMD level
//! ([`simd`]).

pub mod act;
pub mod element;
pub mod error;
pub mod fastmath;
pub mod information;
pub mod layout;
pub mod norm;
pub mod optim;
pub mod parallel;
pub mod reduce;
pub mod rows;
mod scratch;
pub mod selection;
pub mod simd;
pub mod softmax;
pub mod statistics;
pub mod wasserstein;

pub use element::{Element, Float};
pub use error::{Error, Result};
