//! Typed arguments: a string option arrives as the core's enum, parsed by the core's `FromStr`
//! (which owns the names and the message for a bad one).

use crate::errors::Error;
use pyo3::prelude::*;
use std::str::FromStr;

/// A string argument naming a value of the core enum `T` (`reduction="mean"`).
pub(crate) struct Choice<T>(pub T);

impl<'a, 'py, T: FromStr<Err = rsnorm_core::Error>> FromPyObject<'a, 'py> for Choice<T> {
    type Error = Error;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> Result<Self, Error> {
        let name: std::borrow::Cow<'_, str> = obj.extract()?;
        Ok(Choice(name.parse()?))
    }
}
