"""A toy backend for the test suite: ``Boxed`` holds a NumPy array, and its backend unboxes the
arguments, calls the public function on them and boxes the results. It exercises the seam every
real backend (GPU, Dask) plugs into: registration, dispatch on an argument's type, conversion in and
out, in-place results (running statistics, ``out=``) and mixing with host arrays."""

from __future__ import annotations

from typing import Any

import numpy as np

import rsnorm
from rsnorm import _backend


class Boxed:
    """An array that is not a NumPy array and that NumPy cannot convert (as a device array)."""

    __array_priority__ = 1000

    def __init__(self, data: np.ndarray) -> None:
        self.data = data

    def __array__(self, *args: Any, **kwargs: Any) -> np.ndarray:
        raise TypeError("Boxed arrays do not convert implicitly; unbox them with .data")


calls: list[str] = []


def _unbox(value: Any) -> Any:
    if isinstance(value, Boxed):
        return value.data
    if type(value) in (list, tuple):
        return type(value)(_unbox(v) for v in value)
    return value


def _box(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return Boxed(value)
    if isinstance(value, tuple):
        return tuple(_box(v) for v in value)
    return value


class _Ops:
    """Every public function, on boxed arrays."""

    def __getattr__(self, name: str) -> Any:
        fn = getattr(rsnorm, name)

        def boxed(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return _box(fn(*map(_unbox, args), **{k: _unbox(v) for k, v in kwargs.items()}))

        return boxed


def to_numpy(value: Any) -> Any:
    return value.data if isinstance(value, Boxed) else value


BACKEND = _backend.Backend("boxed", _Ops(), lambda x: Boxed(np.asarray(x)), to_numpy)
_backend.register(Boxed, BACKEND)
