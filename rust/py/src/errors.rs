//! Error mapping and the one helper every compute call goes through.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A binding's error: a Python exception, or a core error that becomes one. It exists so that `?`
/// works on core results (Rust's orphan rule forbids `From<rsnorm_core::Error> for PyErr`).
#[derive(Debug)]
pub(crate) struct Error(PyErr);

/// What every binding returns; `#[pyfunction]`s raise the `PyErr` it converts into.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Core errors are all bad arguments: `ValueError`, with the core's message (which names the op).
impl From<rsnorm_core::Error> for Error {
    fn from(err: rsnorm_core::Error) -> Self {
        Error(PyValueError::new_err(err.to_string()))
    }
}

impl From<PyErr> for Error {
    fn from(err: PyErr) -> Self {
        Error(err)
    }
}

/// The other error types PyO3 and rust-numpy return, each raised as its `PyErr`.
macro_rules! from_py_errors {
    ($($t:ty),*) => {$(
        impl From<$t> for Error {
            fn from(err: $t) -> Self {
                Error(err.into())
            }
        }
    )*};
}

from_py_errors!(
    pyo3::CastError<'_, '_>,
    pyo3::CastIntoError<'_>,
    numpy::AsSliceError
);

impl From<Error> for PyErr {
    fn from(err: Error) -> Self {
        err.0
    }
}

pub(crate) fn value_error(msg: impl Into<String>) -> Error {
    Error(PyValueError::new_err(msg.into()))
}

pub(crate) fn type_error(msg: impl Into<String>) -> Error {
    Error(PyTypeError::new_err(msg.into()))
}

/// Calls on fewer elements than this run without detaching from the interpreter: as NumPy's
/// loops keep the GIL below 500 elements, detaching and re-attaching (~70 ns, and a wait for the
/// GIL when another thread took it meanwhile) would cost more than the work itself.
pub(crate) const DETACH_MIN_ELEMENTS: usize = 1024;

/// Runs `work` with the interpreter detached (so other Python threads run meanwhile), turns a
/// core error into `ValueError` and a panic into `RuntimeError` — never a panic into Python.
/// Inputs must not be mutated by other threads during the call (as with any NumPy C routine).
pub(crate) fn compute<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> rsnorm_core::Result<T> + Send,
) -> Result<T> {
    compute_sized(py, usize::MAX, work)
}

/// [`compute`] for a call whose arrays hold `elements` values (its largest one): one below
/// [`DETACH_MIN_ELEMENTS`] runs attached.
pub(crate) fn compute_sized<T: Send>(
    py: Python<'_>,
    elements: usize,
    work: impl FnOnce() -> rsnorm_core::Result<T> + Send,
) -> Result<T> {
    let outcome = if elements < DETACH_MIN_ELEMENTS {
        catch_unwind(AssertUnwindSafe(work))
    } else {
        py.detach(|| catch_unwind(AssertUnwindSafe(work)))
    };
    match outcome {
        Ok(result) => Ok(result?),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(Error(PyRuntimeError::new_err(format!(
                "rsnorm internal error: {msg}"
            ))))
        }
    }
}
