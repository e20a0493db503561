//! Error mapping and the one helper every compute call goes through.

use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// Core errors are all bad arguments: `ValueError`, with the core's message.
pub(crate) fn core_error(err: rsnorm_core::Error) -> PyErr {
    PyValueError::new_err(err.to_string())
}

pub(crate) fn value_error(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}

pub(crate) fn type_error(msg: impl Into<String>) -> PyErr {
    PyTypeError::new_err(msg.into())
}

/// Runs `work` with the interpreter detached (so other Python threads run meanwhile), turns a
/// core error into `ValueError` and a panic into `RuntimeError` — never a panic into Python.
/// Inputs must not be mutated by other threads during the call (as with any NumPy C routine).
pub(crate) fn compute<T: Send>(
    py: Python<'_>,
    work: impl FnOnce() -> rsnorm_core::Result<T> + Send,
) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(work))) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(core_error(err)),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(ToString::to_string)
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_string());
            Err(PyRuntimeError::new_err(format!(
                "rsnorm internal error: {msg}"
            )))
        }
    }
}
