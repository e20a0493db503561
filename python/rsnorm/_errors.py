"""The public functions' error contract: every ``TypeError``/``ValueError`` names the function, and
an out-of-range Python int (``eps=10**400``, ``axis=2**63``) is a ``ValueError`` naming the argument
instead of the ``OverflowError`` the int conversion raises. Applied by ``_backend.op`` when an error
is raised; costs nothing before.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from typing import Any

_INT64 = 2**63


class InPlaceError(TypeError):
    """A call asked to write into an array that cannot be written: ``out=`` or running statistics
    given as a lazy, immutable dask array. The result is a new lazy array instead (``dask.array.store``
    writes it anywhere); running statistics come from ``rsnorm.dask.fit_batch_norm``."""


def _out_of_range_argument(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    """The first argument holding an int outside int64 (or a float's range), as ``name = value``."""
    for name, value in bound_arguments(fn, args, kwargs).items():
        values = value if isinstance(value, (tuple, list)) else (value,)
        for v in values:
            if isinstance(v, int) and not isinstance(v, bool) and not -_INT64 <= v < _INT64:
                shown = (
                    str(v) if v.bit_length() < 100 else f"{'-' if v < 0 else ''}2**{v.bit_length() - 1}..."
                )
                return f"{name} = {shown}"
    return "an argument"


def bound_arguments(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    try:
        return dict(inspect.signature(fn).bind_partial(*args, **kwargs).arguments)
    except (TypeError, ValueError):
        return {f"argument {i}": a for i, a in enumerate(args)} | kwargs


def _culprit(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> str | None:
    """The argument a conversion error is about, found by the type it names ("must be real number,
    not str", "'str' object cannot be interpreted as an integer")."""
    match = re.search(r"not (\w+)$|'(\w+)' object", message)
    if not match:
        return None
    type_name = match.group(1) or match.group(2)
    bound = bound_arguments(fn, args, kwargs)
    names = [n for n, v in bound.items() if type(v).__name__ == type_name]
    if len(names) > 1:
        # The dispatcher passes every parameter, defaults included (axis=-1 beside reduction=1): the
        # culprit is one the caller changed. (Python >= 3.11 gets the name from PyO3's note instead.)
        params = _parameters(fn)
        names = [n for n in names if n not in params or not _is_default(bound[n], params[n].default)]
    return names[0] if len(names) == 1 else None


def _parameters(fn: Callable[..., Any]) -> dict[str, inspect.Parameter]:
    try:
        return dict(inspect.signature(fn).parameters)
    except (TypeError, ValueError):
        return {}


def _is_default(value: Any, default: Any) -> bool:
    scalar = (int, float, str, type(None))
    return value is default or (
        isinstance(value, scalar) and type(value) is type(default) and bool(value == default)
    )


def contract_error(
    fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], exc: Exception
) -> Exception | None:
    """The error ``fn(*args, **kwargs)`` should raise instead of ``exc``, or None to raise ``exc``
    as it is (it already names the function)."""
    op = fn.__name__
    if isinstance(exc, OverflowError):
        return ValueError(f"{op}: {_out_of_range_argument(fn, args, kwargs)} is out of range")
    message = str(exc)
    if message.startswith(op):
        return None
    culprit = None
    if isinstance(exc, TypeError):
        # PyO3 names the argument it failed to convert in a note; else guess it by the type named.
        named = (re.fullmatch(r"while processing '(\w+)'", n) for n in getattr(exc, "__notes__", ()))
        culprit = next((m.group(1) for m in named if m), None) or _culprit(fn, args, kwargs, message)
    prefix = f"{op}: argument '{culprit}': " if culprit else f"{op}: "
    return type(exc)(prefix + message)
