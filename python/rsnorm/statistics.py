"""Partial statistics: exact per-slice moments and their merge (Chan et al.), for chunked,
streaming and distributed statistics."""

from __future__ import annotations

from collections.abc import Sequence

from . import _rsnorm
from ._backend import op
from ._typing import ArrayLike, Moments

__all__ = ["merge_moments", "moments"]


@op
def moments(x: ArrayLike, axis: int | Sequence[int] | None = None) -> Moments:
    """``(count, mean, m2)`` over ``axis`` (None: all), in float64: the mean and the sum of squared
    deviations, exact for float32 data (``m2 / count`` is the biased variance)."""
    return _rsnorm.moments(x, axis)


@op
def merge_moments(
    a: tuple[ArrayLike, ArrayLike, ArrayLike], b: tuple[ArrayLike, ArrayLike, ArrayLike]
) -> Moments:
    """The moments of two disjoint sets' union from each set's ``(count, mean, m2)`` (elementwise
    over arrays of them, broadcasting)."""
    return _rsnorm.merge_moments(a, b)
