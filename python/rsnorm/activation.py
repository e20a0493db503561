"""Activations: SELU, softmax and log-softmax along an axis, forward and backward."""

from __future__ import annotations

from . import _rsnorm
from ._backend import op
from ._typing import Array, ArrayLike, OutArray

__all__ = ["log_softmax", "log_softmax_backward", "selu", "selu_backward", "softmax", "softmax_backward"]


@op
def selu(x: ArrayLike, *, out: OutArray | None = None) -> Array:
    """Scaled exponential linear unit, as ``torch.nn.functional.selu``:
    ``λ·x`` for x > 0, ``λ·α·(eˣ − 1)`` otherwise (λ = 1.0507009873554805, α = 1.6732632423543772)."""
    return _rsnorm.selu(x, out)


@op
def selu_backward(grad_out: ArrayLike, x: ArrayLike, *, out: OutArray | None = None) -> Array:
    """Gradient ``dx`` of ``selu`` at ``x``; ``out`` may be ``grad_out`` or ``x`` (in place)."""
    return _rsnorm.selu_backward(grad_out, x, out)


@op
def softmax(x: ArrayLike, axis: int = -1, *, out: OutArray | None = None) -> Array:
    """``exp(x) / Σ exp(x)`` along ``axis`` (``torch.softmax``), max-subtracted: logits of 1e4 never
    overflow."""
    return _rsnorm.softmax(x, axis, out)


@op
def log_softmax(x: ArrayLike, axis: int = -1, *, out: OutArray | None = None) -> Array:
    """``x − log Σ exp(x)`` along ``axis`` (``torch.log_softmax``), max-subtracted."""
    return _rsnorm.log_softmax(x, axis, out)


@op
def softmax_backward(
    grad_out: ArrayLike, y: ArrayLike, axis: int = -1, *, out: OutArray | None = None
) -> Array:
    """Gradient ``dx`` of ``softmax`` from ``grad_out`` and the forward's output ``y`` (what PyTorch
    saves; ``torch._softmax_backward_data``): ``y·(grad_out − Σ grad_out·y)`` along ``axis``, the sum
    in float64."""
    return _rsnorm.softmax_backward(grad_out, y, axis, False, out)


@op
def log_softmax_backward(
    grad_out: ArrayLike, y: ArrayLike, axis: int = -1, *, out: OutArray | None = None
) -> Array:
    """Gradient ``dx`` of ``log_softmax`` from ``grad_out`` and the forward's output ``y``:
    ``grad_out − exp(y)·Σ grad_out`` along ``axis``, the sum in float64."""
    return _rsnorm.softmax_backward(grad_out, y, axis, True, out)
