"""Information measures with SciPy's conventions, batched over rows along ``axis`` (default -1).

Each distribution is first divided by its sum (as scipy.stats.entropy), 0·log 0 = 0, p > 0 where
q = 0 gives inf, and negative entries are a ValueError. ``base`` None means natural logarithms.
Note: ``kl_div(p, q)`` is SciPy's KL(p‖q) of probabilities, not torch.nn.functional.kl_div (which
takes log-probabilities, target first).
"""

from __future__ import annotations

from typing import Any

import numpy.typing as npt

from . import _rsnorm
from ._errors import named_errors

__all__ = ["cross_entropy", "entropy", "js_distance", "js_divergence", "kl_div"]


@named_errors
def entropy(p: npt.ArrayLike, base: float | None = None, *, axis: int = -1) -> Any:
    """Shannon entropy −Σ p log p (scipy.stats.entropy(p, base=base, axis=axis))."""
    return _rsnorm.information("entropy", p, None, axis, base)


@named_errors
def kl_div(p: npt.ArrayLike, q: npt.ArrayLike, *, axis: int = -1) -> Any:
    """Kullback-Leibler divergence Σ p log(p/q) (scipy.stats.entropy(p, q, axis=axis))."""
    return _rsnorm.information("kl_div", p, q, axis, None)


@named_errors
def cross_entropy(p: npt.ArrayLike, q: npt.ArrayLike, *, axis: int = -1) -> Any:
    """Cross-entropy −Σ p log q = H(p) + KL(p‖q)."""
    return _rsnorm.information("cross_entropy", p, q, axis, None)


@named_errors
def js_divergence(p: npt.ArrayLike, q: npt.ArrayLike, base: float | None = None, *, axis: int = -1) -> Any:
    """Jensen-Shannon divergence ½ KL(p‖m) + ½ KL(q‖m), m = (p + q)/2; at most log(2) in the base."""
    return _rsnorm.information("js_divergence", p, q, axis, base)


@named_errors
def js_distance(p: npt.ArrayLike, q: npt.ArrayLike, base: float | None = None, *, axis: int = -1) -> Any:
    """Jensen-Shannon distance, the square root of the divergence (scipy.spatial.distance.jensenshannon)."""
    return _rsnorm.information("js_distance", p, q, axis, base)
