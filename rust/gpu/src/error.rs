//! The GPU crate's errors. Each variant says which Python exception the binding raises.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// No usable adapter (no Vulkan/Metal/DX12 driver, or the loader is missing): the binding's
    /// `GpuUnavailableError`, a `RuntimeError`.
    Unavailable(String),
    /// An argument the device cannot take: a dtype whose shader feature the adapter lacks, arrays
    /// of different dtypes. `TypeError`.
    Unsupported(String),
    /// A bad argument by the core's rules (shapes, eps): `ValueError`.
    Value(rsnorm_core::Error),
    /// The device refused or lost the work (validation, out of memory, device lost, an array
    /// beyond the adapter's buffer limits): `RuntimeError` with wgpu's message.
    Device(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Unavailable(msg) | Error::Unsupported(msg) | Error::Device(msg) => {
                f.write_str(msg)
            }
            Error::Value(err) => err.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<rsnorm_core::Error> for Error {
    fn from(err: rsnorm_core::Error) -> Self {
        Error::Value(err)
    }
}
