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

/// A shape as NumPy prints it: `(3,)`, `(2, 4)`, `()`.
pub fn shape_str(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// The axis a reduction runs along: `axis` resolved, on an array that has one.
pub fn reduction_axis(op: &str, shape: &[usize], axis: i64) -> Result<usize> {
    if shape.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{op}: the input is 0-dimensional; it needs an axis"
        )));
    }
    resolve_axis(op, axis, shape.len())
}

/// `axis` (negative counts from the end) as an index into `ndim` dims.
pub fn resolve_axis(op: &str, axis: i64, ndim: usize) -> Result<usize> {
    let resolved = if axis < 0 { axis + ndim as i64 } else { axis };
    if resolved < 0 || resolved >= ndim as i64 {
        return Err(Error::InvalidArgument(format!(
            "{op}: axis {axis} is out of range for an array of {ndim} dims"
        )));
    }
    Ok(resolved as usize)
}
