//! The one error type of the core. Every variant is a bad argument from the caller's point of view;
//! the binding maps them all to `ValueError` with this text.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// A scalar argument out of its domain, e.g. `eps=-1`.
    InvalidArgument(String),
    /// Two shapes that must agree do not.
    ShapeMismatch(String),
    /// A reduction over zero elements (mean of nothing).
    EmptyReduction(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(msg)
            | Error::ShapeMismatch(msg)
            | Error::EmptyReduction(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

/// `eps` must be a finite number ≥ 0; NaN is rejected too (it would poison every output).
pub fn check_eps(op: &str, eps: f64) -> Result<()> {
    if eps >= 0.0 && eps.is_finite() {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "{op}: eps must be a finite number >= 0, got {eps}"
        )))
    }
}
