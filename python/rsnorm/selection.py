"""Model-selection criteria: AIC and BIC, for scalars or arrays (broadcasting like NumPy).

Lower is better. Example, choosing a polynomial degree for noisy data with NumPy fits::

    x = np.linspace(-1, 1, 200); y = 1 - 2 * x + 3 * x**3 + rng.normal(0, 0.1, 200)
    ll = []
    for degree in range(8):
        resid = y - np.polyval(np.polyfit(x, y, degree), x)
        sigma2 = resid.var()                       # maximum-likelihood noise variance
        ll.append(-0.5 * len(x) * (np.log(2 * np.pi * sigma2) + 1))
    k = np.arange(8) + 2                           # degree + 1 coefficients, plus the noise variance
    best = int(np.argmin(rsnorm.bic(ll, k, len(x))))   # → 3
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _rsnorm
from ._backend import op

__all__ = ["aic", "bic"]


def _real(name: str, values: npt.ArrayLike, what: str) -> Any:
    """`values` as an array, after checking they are real numbers (any value, NaN included)."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name}: {what} has dtype {arr.dtype}; expected real numbers")
    return arr


def _counts(name: str, values: npt.ArrayLike, what: str) -> Any:
    """Real numbers as an array of int64 (integers that fit, read exactly) or float64."""
    arr = _real(name, values, what)
    exact = arr.dtype.kind == "i" or (arr.dtype.kind == "u" and arr.dtype.itemsize < 8)
    return arr.astype(np.int64 if exact else np.float64, copy=False)


# What the core returns for Python numbers, wrapped as NumPy's arithmetic gives it.
_FLOAT64 = np.float64


def _broadcast(name: str, operands: dict[str, Any], arrays: list[Any]) -> tuple[int, ...]:
    """The operands' common shape. Arrays of one shape, with or without scalars beside them, need
    no NumPy call (`np.broadcast_shapes` takes ~1 µs, most of an AIC over three models)."""
    shapes = {a.shape for a in arrays} - {()}
    if len(shapes) <= 1:
        return shapes.pop() if shapes else ()
    try:
        return np.broadcast_shapes(*(a.shape for a in arrays))
    except ValueError:
        listed = ", ".join(f"{k} {a.shape}" for k, a in zip(operands, arrays, strict=True))
        raise ValueError(f"{name}: the shapes cannot be broadcast together: {listed}") from None


def _criterion(name: str, **operands: Any) -> Any:
    """The criterion over the operands broadcast together, by one fused pass in the core (the
    checks, integer conversions and arithmetic in one read of each operand; NumPy's formula had
    made a temporary per operation, and BIC over a million models ran at 0.6× it). An operand of
    one value is passed as one value, not broadcast into a copy; one that has the broadcast shape
    is flattened in place where it can be."""
    arrays = [_counts(name, v, k) for k, v in operands.items()]
    shape = _broadcast(name, operands, arrays)
    flat = [
        a.reshape(1) if a.size == 1 else (a if a.shape == shape else np.broadcast_to(a, shape)).reshape(-1)
        for a in arrays
    ]
    n = flat[2] if len(flat) == 3 else None
    out = _rsnorm.information_criterion(flat[0], flat[1], n, math.prod(shape))
    # A scalar for scalar operands, as NumPy's arithmetic gives.
    return out if out.shape == shape else out.reshape(shape)[()]


@op
def aic(log_likelihood: npt.ArrayLike, k: npt.ArrayLike) -> Any:
    """Akaike information criterion 2k − 2 ln L̂ (k: number of estimated parameters)."""
    out = _rsnorm.information_criterion_direct(log_likelihood, k, None)
    if out is None:
        return _criterion("aic", log_likelihood=log_likelihood, k=k)
    return _FLOAT64(out) if type(out) is float else out


@op
def bic(log_likelihood: npt.ArrayLike, k: npt.ArrayLike, n: npt.ArrayLike) -> Any:
    """Bayesian information criterion k ln n − 2 ln L̂ (n: number of observations)."""
    out = _rsnorm.information_criterion_direct(log_likelihood, k, n)
    if out is None:
        return _criterion("bic", log_likelihood=log_likelihood, k=k, n=n)
    return _FLOAT64(out) if type(out) is float else out
