"""Row normalizations — LayerNorm, RMSNorm, their fused residual-add forms, L2, weight and cosine
normalization, local response normalization — forward and backward side by side.

A backward takes ``grad_out`` and what its forward returned with ``return_stats=True`` and returns
PyTorch's autograd gradients (None for a parameter that was None). Every function takes float16,
float32 or float64 arrays of any strides; see DESIGN.md for the conventions.
"""

from __future__ import annotations

from typing import Any, Literal, overload

import numpy as np

from . import _rsnorm
from ._backend import op
from ._typing import Array, ArrayLike, OutArray, OutArrays, Shape

__all__ = [
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_backward",
    "cosine_linear",
    "cosine_linear_backward",
    "l2_normalize",
    "l2_normalize_backward",
    "layer_norm",
    "layer_norm_backward",
    "local_response_norm",
    "normalize",
    "normalize_backward",
    "rms_norm",
    "rms_norm_backward",
    "weight_norm",
    "weight_norm_backward",
]


@overload
def layer_norm(
    x: ArrayLike,
    normalized_shape: Shape = None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
    *,
    out: OutArray | None = None,
    return_stats: Literal[False] = False,
) -> Array: ...
@overload
def layer_norm(
    x: ArrayLike,
    normalized_shape: Shape = None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
    *,
    out: OutArray | None = None,
    return_stats: Literal[True],
) -> tuple[Array, Array, Array]: ...
@op
def layer_norm(
    x: ArrayLike,
    normalized_shape: Shape = None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
    *,
    out: OutArray | None = None,
    return_stats: bool = False,
) -> Any:
    """Layer normalization over the last ``len(normalized_shape)`` dims (None: the last dim), as
    ``torch.nn.functional.layer_norm``: ``(x - mean) / sqrt(var + eps) * weight + bias`` with the
    biased variance.

    ``return_stats=True`` also returns ``mean`` and ``rstd`` (shape ``x.shape[:-k]``, as
    ``torch.native_layer_norm``) for ``layer_norm_backward``. ``out`` may be ``x`` (in place).
    """
    return _rsnorm.layer_norm(x, normalized_shape, weight, bias, eps, out, return_stats)


@op
def layer_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    mean: ArrayLike,
    rstd: ArrayLike,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    normalized_shape: Shape = None,
    out: OutArrays | None = None,
) -> tuple[Array, Array | None, Array | None]:
    """Gradients ``(dx, dweight, dbias)`` of ``layer_norm`` given its ``mean`` and ``rstd``.

    ``out`` (a tuple with one entry per result, each an array or None) names arrays to write the
    results into, as NumPy's functions with several outputs take it; dx may be ``grad_out`` or ``x``
    (in place)."""
    return _rsnorm.layer_norm_backward(grad_out, x, mean, rstd, weight, bias, normalized_shape, out)


@overload
def rms_norm(
    x: ArrayLike,
    normalized_shape: Shape = None,
    weight: ArrayLike | None = None,
    eps: float | None = None,
    *,
    out: OutArray | None = None,
    return_stats: Literal[False] = False,
) -> Array: ...
@overload
def rms_norm(
    x: ArrayLike,
    normalized_shape: Shape = None,
    weight: ArrayLike | None = None,
    eps: float | None = None,
    *,
    out: OutArray | None = None,
    return_stats: Literal[True],
) -> tuple[Array, Array]: ...
@op
def rms_norm(
    x: ArrayLike,
    normalized_shape: Shape = None,
    weight: ArrayLike | None = None,
    eps: float | None = None,
    *,
    out: OutArray | None = None,
    return_stats: bool = False,
) -> Any:
    """RMS normalization over the last ``len(normalized_shape)`` dims, as
    ``torch.nn.functional.rms_norm``: ``x / sqrt(mean(x²) + eps) * weight``; eps None is the
    dtype's machine epsilon. ``return_stats=True`` also returns ``rstd``."""
    return _rsnorm.rms_norm(x, normalized_shape, weight, eps, out, return_stats)


@op
def rms_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    rstd: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    normalized_shape: Shape = None,
    out: OutArrays | None = None,
) -> tuple[Array, Array | None]:
    """Gradients ``(dx, dweight)`` of ``rms_norm`` given its ``rstd``.

    ``out``: arrays to write the results into, as for ``layer_norm_backward``."""
    return _rsnorm.rms_norm_backward(grad_out, x, rstd, weight, normalized_shape, out)


@op
def add_layer_norm(
    x: ArrayLike,
    residual: ArrayLike,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
    *,
    normalized_shape: Shape = None,
    out: OutArray | None = None,
    residual_out: OutArray | None = None,
    return_stats: bool = False,
) -> tuple[Array, ...]:
    """``s = x + residual; (layer_norm(s), s)`` in one pass over memory (the pre-norm transformer
    block's add and norm). Returns ``(y, s)``, with ``(mean, rstd)`` appended when
    ``return_stats``; ``residual_out`` may be ``residual`` (in place)."""
    return _rsnorm.add_layer_norm(
        x, residual, weight, bias, eps, normalized_shape, out, residual_out, return_stats
    )


@op
def add_layer_norm_backward(
    grad_out: ArrayLike,
    residual_sum: ArrayLike,
    mean: ArrayLike,
    rstd: ArrayLike,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    *,
    grad_residual_out: ArrayLike | None = None,
    normalized_shape: Shape = None,
    out: OutArrays | None = None,
) -> tuple[Array, Array, Array | None, Array | None]:
    """Gradients ``(dx, dresidual, dweight, dbias)`` of ``add_layer_norm`` (dx and dresidual are the
    same array); ``grad_residual_out`` is the gradient arriving at the returned sum, if any.

    ``out``: arrays to write the results into, as for ``layer_norm_backward``; dx and dresidual are
    one array, given as ``out[0]`` or ``out[1]`` (or the same array as both)."""
    return _rsnorm.add_layer_norm_backward(
        grad_out, residual_sum, mean, rstd, weight, bias, grad_residual_out, normalized_shape, out
    )


@op
def add_rms_norm(
    x: ArrayLike,
    residual: ArrayLike,
    weight: ArrayLike | None = None,
    eps: float | None = None,
    *,
    normalized_shape: Shape = None,
    out: OutArray | None = None,
    residual_out: OutArray | None = None,
    return_stats: bool = False,
) -> tuple[Array, ...]:
    """``s = x + residual; (rms_norm(s), s)`` in one pass over memory; ``(y, s[, rstd])``."""
    return _rsnorm.add_rms_norm(x, residual, weight, eps, normalized_shape, out, residual_out, return_stats)


@op
def add_rms_norm_backward(
    grad_out: ArrayLike,
    residual_sum: ArrayLike,
    rstd: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    grad_residual_out: ArrayLike | None = None,
    normalized_shape: Shape = None,
    out: OutArrays | None = None,
) -> tuple[Array, Array, Array | None]:
    """Gradients ``(dx, dresidual, dweight)`` of ``add_rms_norm`` (dx and dresidual are the same array;
    ``out`` as for ``add_layer_norm_backward``)."""
    return _rsnorm.add_rms_norm_backward(
        grad_out, residual_sum, rstd, weight, grad_residual_out, normalized_shape, out
    )


@op
def l2_normalize(x: ArrayLike, eps: float = 1e-12, *, out: OutArray | None = None) -> Array:
    """Each row along the last axis divided by its L2 norm, clamped below by ``eps``
    (``torch.nn.functional.normalize(x, dim=-1)``)."""
    return _rsnorm.l2_normalize(x, eps, out)


@op
def l2_normalize_backward(
    grad: ArrayLike, x: ArrayLike, eps: float = 1e-12, *, out: OutArray | None = None
) -> Array:
    """Gradient ``dx`` of ``l2_normalize``; ``out`` may be ``grad`` or ``x`` (in place)."""
    return _rsnorm.l2_normalize_backward(grad, x, eps, out)


@op
def normalize(
    x: ArrayLike, p: float = 2.0, axis: int = -1, eps: float = 1e-12, *, out: OutArray | None = None
) -> Array:
    """Each slice along ``axis`` divided by its Lp norm, clamped below by ``eps``:
    ``x / max(‖x‖_p, eps)`` (``torch.nn.functional.normalize(x, p, dim=axis, eps=eps)``). ``p`` is
    a number >= 1 or ``inf`` (the largest magnitude); ``eps=0`` gives the plain norm, as ONNX's
    ``LpNormalization``."""
    return _rsnorm.normalize(x, p, axis, eps, out)


@op
def normalize_backward(
    grad: ArrayLike,
    x: ArrayLike,
    p: float = 2.0,
    axis: int = -1,
    eps: float = 1e-12,
    *,
    out: OutArray | None = None,
) -> Array:
    """Gradient ``dx`` of ``normalize`` (for ``p=inf`` the gradient of the largest magnitude is
    shared equally by the values that reach it, as PyTorch does); ``out`` may be ``grad`` or ``x``."""
    return _rsnorm.normalize_backward(grad, x, p, axis, eps, out)


@op
def weight_norm(v: ArrayLike, g: ArrayLike, dim: int | None = 0, *, out: OutArray | None = None) -> Array:
    """Weight normalization ``w = g · v / ‖v‖``, the norm over all dims but ``dim`` (None: the whole
    tensor), as ``torch._weight_norm``; ``g`` has shape ``(v.shape[dim],)`` or that with ones."""
    return _rsnorm.weight_norm(v, g, dim, out)


@op
def weight_norm_backward(
    grad_w: ArrayLike, v: ArrayLike, g: ArrayLike, *, dim: int | None = 0, out: OutArrays | None = None
) -> tuple[Array, Array]:
    """Gradients ``(dv, dg)`` of ``weight_norm`` from the gradient of ``w``; ``out`` as for
    ``layer_norm_backward`` (dv may be ``grad_w`` or ``v``)."""
    return _rsnorm.weight_norm_backward(grad_w, v, g, dim, out)


@op
def local_response_norm(
    x: ArrayLike,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
    *,
    out: OutArray | None = None,
) -> Array:
    """Local response normalization across channels (dim 1) of a 3-D, 4-D or 5-D array, as
    ``torch.nn.functional.local_response_norm``: ``x / (k + alpha/size · Σ x²)^beta`` over a window
    of ``size`` channels (TensorFlow's convention: scale alpha by size)."""
    return _rsnorm.local_response_norm(x, size, alpha, beta, k, out)


@op
def cosine_linear(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None, eps: float = 1e-8) -> Array:
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


@op
def cosine_linear_backward(
    grad_out: ArrayLike, x: ArrayLike, weight: ArrayLike, eps: float = 1e-8
) -> tuple[Array, Array]:
    """Gradients ``(dx, dweight)`` of ``cosine_linear(x, weight)`` (a bias's gradient is grad_out summed)."""
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
