"""Activations: SELU (forward and backward), softmax and log-softmax along an axis."""

from __future__ import annotations

from . import _rsnorm
from ._backend import op
from ._typing import Array, ArrayLike, OutArray

__all__ = ["log_softmax", "selu", "selu_backward", "softmax"]


@op
def selu(x: ArrayLike, *, out: OutArray | None = None) -> Array:
    """Scaled exponential linear unit, as ``torch.nn.functional.selu``:
    ``λ·x`` for x > 0, ``λ·α·(eˣ − 1)`` otherwise (λ = 1.0507009873554805, α = 1.6732632423543772)."""
    return _rsnorm.selu(x, out)


@op
def selu_backward(grad_out: ArrayLike, x: ArrayLike) -> Array:
    """Gradient ``dx`` of ``selu`` at ``x``."""
    return _rsnorm.selu_backward(grad_out, x)


@op
def softmax(x: ArrayLike, axis: int = -1, *, out: OutArray | None = None) -> Array:
    """``exp(x) / Σ exp(x)`` along ``axis`` (``torch.softmax``), max-subtracted: logits of 1e4 never
    overflow."""
    return _rsnorm.softmax(x, axis, out)


@op
def log_softmax(x: ArrayLike, axis: int = -1, *, out: OutArray | None = None) -> Array:
    """``x − log Σ exp(x)`` along ``axis`` (``torch.log_softmax``), max-subtracted."""
    return _rsnorm.log_softmax(x, axis, out)
