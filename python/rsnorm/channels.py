"""Channel normalizations — BatchNorm, InstanceNorm, GroupNorm — forward and backward side by side.

Statistics are per channel (BatchNorm, over every other axis), per (sample, channel) (InstanceNorm)
or per (sample, group) (GroupNorm); running statistics are updated in place with PyTorch's rules
(momentum weights the new batch; the running variance is unbiased). ``return_stats=True`` also
returns ``mean`` and ``rstd`` for the backward.
"""

from __future__ import annotations

from typing import Any

from . import _rsnorm
from ._backend import op
from ._typing import Array, ArrayLike, OutArray, OutArrays

__all__ = [
    "batch_norm",
    "batch_norm_backward",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
]


@op
def batch_norm(
    x: ArrayLike,
    running_mean: OutArray | None = None,
    running_var: OutArray | None = None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    *,
    axis: int = 1,
    out: OutArray | None = None,
    mean_only: bool = False,
    num_batches_tracked: int | None = None,
    return_stats: bool = False,
    running_var_correction: int = 1,
) -> Any:
    """Batch normalization of any rank with channels at ``axis`` (1: NCHW, -1: NHWC or (batch,
    features)), as ``torch.nn.functional.batch_norm``.

    Training (or no running statistics) normalizes with the batch's statistics and, where running
    statistics are given, updates them in place: ``running = (1 − momentum)·running +
    momentum·batch`` with the batch variance M2 / (n − ``running_var_correction``): 1 (default) is
    PyTorch's unbiased variance, 0 the biased one Keras and ONNX use. ``momentum=None`` is the
    cumulative average over ``num_batches_tracked + 1`` batches. Evaluation normalizes with the
    running statistics. ``mean_only=True`` subtracts the mean only (mean-only batch norm, paired with
    weight norm).
    """
    return _rsnorm.batch_norm(
        x,
        running_mean,
        running_var,
        weight,
        bias,
        training,
        momentum,
        eps,
        axis,
        out,
        mean_only,
        num_batches_tracked,
        return_stats,
        running_var_correction,
    )


@op
def batch_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    mean: ArrayLike,
    rstd: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    training: bool = True,
    axis: int = 1,
    mean_only: bool = False,
    out: OutArrays | None = None,
) -> tuple[Array, Array | None, Array]:
    """Gradients ``(dx, dweight, dbias)`` of ``batch_norm``; ``training=False`` is the evaluation-mode
    gradient (the statistics are constants), ``mean_only=True`` that of mean-only batch norm (which
    does not scale: ``rstd`` is not read). ``out``: arrays to write the results into, as for
    ``layer_norm_backward``."""
    return _rsnorm.batch_norm_backward(grad_out, x, mean, rstd, weight, training, axis, mean_only, out)


@op
def instance_norm(
    x: ArrayLike,
    running_mean: OutArray | None = None,
    running_var: OutArray | None = None,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    out: OutArray | None = None,
    return_stats: bool = False,
) -> Any:
    """Instance normalization of (N, C, ...): each (sample, channel) normalized alone, as
    ``torch.nn.functional.instance_norm``. Running statistics, when given, are updated with the
    average over the batch of the instances' statistics; ``use_input_stats=False`` normalizes with
    them instead."""
    return _rsnorm.instance_norm(
        x, running_mean, running_var, weight, bias, use_input_stats, momentum, eps, out, return_stats
    )


@op
def instance_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    mean: ArrayLike,
    rstd: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    use_input_stats: bool = True,
    out: OutArrays | None = None,
) -> tuple[Array, Array | None, Array]:
    """Gradients ``(dx, dweight, dbias)`` of ``instance_norm`` from its ``(N, C)`` statistics;
    ``use_input_stats=False`` (the forward normalized with running statistics) treats them as
    constants. ``out`` as for ``batch_norm_backward``."""
    return _rsnorm.instance_norm_backward(grad_out, x, mean, rstd, weight, use_input_stats, out)


@op
def group_norm(
    x: ArrayLike,
    num_groups: int,
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
    *,
    out: OutArray | None = None,
    return_stats: bool = False,
) -> Any:
    """Group normalization of (N, C, ...), statistics per sample and group of ``C / num_groups``
    channels, as ``torch.nn.functional.group_norm`` (one group: each sample layer-normalized; C
    groups: instance norm)."""
    return _rsnorm.group_norm(x, num_groups, weight, bias, eps, out, return_stats)


@op
def group_norm_backward(
    grad_out: ArrayLike,
    x: ArrayLike,
    mean: ArrayLike,
    rstd: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    num_groups: int,
    out: OutArrays | None = None,
) -> tuple[Array, Array | None, Array]:
    """Gradients ``(dx, dweight, dbias)`` of ``group_norm``; ``out`` as for ``batch_norm_backward``."""
    return _rsnorm.group_norm_backward(grad_out, x, mean, rstd, weight, num_groups=num_groups, out=out)
