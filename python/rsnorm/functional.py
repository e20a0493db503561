"""Functional ops composed from the kernels in Python (the kernels themselves are in ``_rsnorm``)."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _rsnorm
from ._errors import named_errors

__all__ = ["cosine_linear", "cosine_linear_backward"]


@named_errors
def cosine_linear(
    x: npt.ArrayLike, weight: npt.ArrayLike, bias: npt.ArrayLike | None = None, eps: float = 1e-8
) -> npt.NDArray[Any]:
    """Cosine normalization (Luo et al. 2017): ``y = (x · wᵀ) / (‖x‖ ‖w‖) + bias``.

    x is (..., in_features), weight (out_features, in_features); each norm is clamped below by
    ``eps`` (as torch.nn.functional.cosine_similarity). Rows are normalized by rsnorm's kernel and
    multiplied with NumPy's BLAS matmul. Output dtype is x's.
    """
    x = np.asarray(x)
    weight = np.asarray(weight)
    if weight.ndim != 2 or x.ndim < 1 or weight.shape[1] != x.shape[-1]:
        raise ValueError(
            f"cosine_linear: weight must be (out_features, {x.shape[-1] if x.ndim else '?'}) for x of "
            f"shape {x.shape}, got {weight.shape}"
        )
    x_unit = _rsnorm.l2_normalize(x, eps)
    w_unit = _rsnorm.l2_normalize(weight.astype(x_unit.dtype, copy=False), eps)
    y = x_unit @ w_unit.T
    if bias is not None:
        bias = np.asarray(bias)
        if bias.dtype.kind not in "fiu":
            raise TypeError(f"cosine_linear: bias has dtype {bias.dtype}; expected real numbers")
        if bias.shape != (weight.shape[0],):
            raise ValueError(f"cosine_linear: bias has shape {bias.shape}, expected ({weight.shape[0]},)")
        y += bias.astype(y.dtype, copy=False)
    return y


@named_errors
def cosine_linear_backward(
    grad_out: npt.ArrayLike, x: npt.ArrayLike, weight: npt.ArrayLike, eps: float = 1e-8
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Gradients (dx, dweight) of ``cosine_linear(x, weight)`` (a bias's gradient is grad_out summed)."""
    x = np.asarray(x)
    weight = np.asarray(weight)
    x_unit = _rsnorm.l2_normalize(x, eps)
    w_unit = _rsnorm.l2_normalize(weight.astype(x_unit.dtype, copy=False), eps)
    grad = np.asarray(grad_out)
    if grad.dtype.kind != "f":
        raise TypeError(f"cosine_linear_backward: grad_out has dtype {grad.dtype}; expected a floating dtype")
    grad = grad.astype(x_unit.dtype, copy=False)
    expected = (*x.shape[:-1], weight.shape[0])
    if grad.shape != expected:
        raise ValueError(f"cosine_linear_backward: grad_out has shape {grad.shape}, expected {expected}")
    grad_x_unit = grad @ w_unit
    grad_w_unit = grad.reshape(-1, weight.shape[0]).T @ x_unit.reshape(-1, x.shape[-1])
    dx = _rsnorm.l2_normalize_backward(grad_x_unit, x.astype(x_unit.dtype, copy=False), eps)
    dweight = _rsnorm.l2_normalize_backward(grad_w_unit, weight.astype(x_unit.dtype, copy=False), eps)
    return dx, dweight
