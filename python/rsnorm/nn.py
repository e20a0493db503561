"""Stateful layers over the functional kernels, with PyTorch's parameter and buffer names.

``state_dict()`` / ``load_state_dict()`` use torch.nn's keys and shapes (weight, bias, running_mean,
running_var, num_batches_tracked), so a PyTorch state dict converted with ``{k: v.numpy() for k, v in
sd.items()}`` loads unchanged and gives PyTorch's outputs.

``layer.to_device()`` moves a layer's parameters and running statistics to the GPU (``rsnorm.gpu``
arrays; ``num_batches_tracked`` stays a host counter): it then takes and returns device arrays, its
gradients are device arrays, and an optimizer over ``layer.parameters()`` steps on the device.
``state_dict()`` of such a layer returns host copies; ``load_state_dict`` takes host or device arrays
and copies them into the layer's own (so an optimizer holding them keeps working).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _rsnorm, gpu
from ._backend import host_array
from .channels import (
    batch_norm,
    batch_norm_backward,
    group_norm,
    group_norm_backward,
    instance_norm,
    instance_norm_backward,
)
from .norm import (
    cosine_linear,
    cosine_linear_backward,
    layer_norm,
    layer_norm_backward,
    local_response_norm,
    rms_norm,
    rms_norm_backward,
    weight_norm,
    weight_norm_backward,
)

Array = npt.NDArray[Any]

__all__ = [
    "BatchNorm",
    "CosineLinear",
    "GroupNorm",
    "InstanceNorm",
    "LayerNorm",
    "LocalResponseNorm",
    "Module",
    "RMSNorm",
    "SequenceBatchNorm",
    "WeightNormLinear",
]


class Module:
    """Parameters (learned) and buffers (running statistics) by PyTorch name; train/eval mode."""

    def __init__(self) -> None:
        self.training = True
        # NumPy arrays, or rsnorm.gpu arrays after to_device().
        self._parameters: dict[str, Any] = {}
        self._buffers: dict[str, Any] = {}
        #: Gradients of the last ``backward`` by parameter name (as in ``parameters()``).
        self.grad: dict[str, Array] = {}
        self._saved: tuple[Any, ...] | None = None

    def train(self, mode: bool = True) -> Module:
        self.training = bool(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def parameters(self) -> dict[str, Array]:
        """The learned arrays by name (updated in place by optimizers)."""
        return {k: v for k, v in self._parameters.items() if v is not None}

    def state_dict(self) -> dict[str, Array]:
        """Parameters and buffers by PyTorch's names: the arrays themselves, as PyTorch shares
        storage; host copies of a layer on the GPU."""
        state = self.parameters()
        state.update({k: v for k, v in self._buffers.items() if v is not None})
        return {k: gpu._to_numpy(v) for k, v in state.items()}

    def _own_arrays(self) -> dict[str, Any]:
        state: dict[str, Any] = {k: v for k, v in self._parameters.items() if v is not None}
        state.update({k: v for k, v in self._buffers.items() if v is not None})
        return state

    def _extra_state_keys(self) -> set[str]:
        """Keys of the state dict that are settings, not arrays of the layer."""
        return set()

    @property
    def on_device(self) -> bool:
        """Whether the layer's parameters and running statistics are on the GPU."""
        return any(isinstance(v, gpu.Array) for v in self._own_arrays().values())

    def to_device(self) -> Module:
        """Moves parameters and running statistics to the GPU (``rsnorm.gpu.asarray``); returns the
        layer. An optimizer made before holds the old host arrays: make it after."""
        for table in (self._parameters, self._buffers):
            for k, v in table.items():
                if v is not None and k != "num_batches_tracked" and not isinstance(v, gpu.Array):
                    table[k] = gpu.asarray(v)
        return self

    def to_host(self) -> Module:
        """Moves parameters and running statistics back to NumPy arrays; returns the layer."""
        for table in (self._parameters, self._buffers):
            for k, v in table.items():
                table[k] = gpu._to_numpy(v)
        return self

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        """Copies values into this layer's arrays (keeping their dtype). Strict: keys must match exactly."""
        own = self._own_arrays()
        keys = set(own) | self._extra_state_keys()
        missing = sorted(keys - set(state))
        unexpected = sorted(set(state) - keys)
        if strict and (missing or unexpected):
            raise ValueError(
                f"{type(self).__name__}.load_state_dict: missing keys {missing}, unexpected keys {unexpected}"
            )
        for name, target in own.items():
            if name not in state:
                continue
            value = np.asarray(gpu._to_numpy(state[name]))
            if value.shape != target.shape:
                raise ValueError(
                    f"{type(self).__name__}.load_state_dict: {name} has shape {value.shape}, "
                    f"expected {target.shape}"
                )
            if isinstance(target, gpu.Array):
                target._a.copy_from(gpu.asarray(value, dtype=target.dtype)._a)
            else:
                np.copyto(target, value, casting="unsafe")

    def __call__(self, x: npt.ArrayLike) -> Array:
        return self.forward(x)

    def _array(self, name: str) -> Array:
        """A parameter or buffer this layer always has."""
        value = self._parameters.get(name)
        if value is None:
            value = self._buffers.get(name)
        if value is None:
            raise KeyError(f"{type(self).__name__} has no {name}")
        return value

    def forward(self, x: npt.ArrayLike) -> Array:  # pragma: no cover - every layer overrides it
        raise TypeError(f"{type(self).__name__} defines no forward")

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        """Gradient with respect to the last forward's input; parameter gradients go to ``self.grad``."""
        raise TypeError(f"{type(self).__name__} has no backward pass")

    def _saved_for_backward(self) -> tuple[Any, ...]:
        if self._saved is None:
            raise ValueError(f"{type(self).__name__}.backward: call the layer (forward) first")
        return self._saved

    def _set_grads(self, **grads: Array | None) -> None:
        self.grad = {k: v for k, v in grads.items() if v is not None and self._parameters.get(k) is not None}


def _shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    if isinstance(normalized_shape, (int, np.integer)):
        return (int(normalized_shape),)
    return tuple(int(d) for d in normalized_shape)


class LayerNorm(Module):
    """``torch.nn.LayerNorm``: normalizes the last ``len(normalized_shape)`` dims."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        bias: bool = True,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = eps
        affine = elementwise_affine
        self._parameters["weight"] = np.ones(self.normalized_shape, dtype) if affine else None
        self._parameters["bias"] = np.zeros(self.normalized_shape, dtype) if affine and bias else None

    def forward(self, x: npt.ArrayLike) -> Array:
        p = self._parameters
        y, mean, rstd = layer_norm(
            x, self.normalized_shape, p["weight"], p["bias"], self.eps, return_stats=True
        )
        self._saved = (x, mean, rstd)
        return y

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        x, mean, rstd = self._saved_for_backward()
        p = self._parameters
        dx, dw, db = layer_norm_backward(
            grad_out, x, mean, rstd, p["weight"], p["bias"], normalized_shape=self.normalized_shape
        )
        self._set_grads(weight=dw, bias=db)
        return dx


class RMSNorm(Module):
    """``torch.nn.RMSNorm``: eps None is the input dtype's machine epsilon."""

    def __init__(
        self,
        normalized_shape: int | Sequence[int],
        eps: float | None = None,
        elementwise_affine: bool = True,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        self.normalized_shape = _shape(normalized_shape)
        self.eps = eps
        self._parameters["weight"] = np.ones(self.normalized_shape, dtype) if elementwise_affine else None

    def forward(self, x: npt.ArrayLike) -> Array:
        y, rstd = rms_norm(x, self.normalized_shape, self._parameters["weight"], self.eps, return_stats=True)
        self._saved = (x, rstd)
        return y

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        x, rstd = self._saved_for_backward()
        dx, dw = rms_norm_backward(
            grad_out, x, rstd, self._parameters["weight"], normalized_shape=self.normalized_shape
        )
        self._set_grads(weight=dw)
        return dx


class _RunningStats(Module):
    """Shared state of BatchNorm and InstanceNorm: affine parameters and running statistics."""

    def __init__(
        self,
        num_features: int,
        eps: float,
        momentum: float | None,
        affine: bool,
        track_running_stats: bool,
        dtype: npt.DTypeLike,
    ) -> None:
        super().__init__()
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.track_running_stats = track_running_stats
        self._parameters["weight"] = np.ones(num_features, dtype) if affine else None
        self._parameters["bias"] = np.zeros(num_features, dtype) if affine else None
        if track_running_stats:
            self._buffers["running_mean"] = np.zeros(num_features, dtype)
            self._buffers["running_var"] = np.ones(num_features, dtype)
            self._buffers["num_batches_tracked"] = np.zeros((), np.int64)

    def _batches_before(self) -> int | None:
        """num_batches_tracked before this batch, in training (None when not counting)."""
        tracked = self._buffers.get("num_batches_tracked")
        if tracked is None or not self.training:
            return None
        return int(tracked)

    def _count_batch(self, before: int | None) -> None:
        """Counts a batch the forward pass completed (a refused call leaves the count alone)."""
        if before is not None:
            self._buffers["num_batches_tracked"][...] = before + 1  # type: ignore[index]

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            zeros = np.zeros(self.num_features)
            self.load_state_dict({"running_mean": zeros, "running_var": zeros + 1}, strict=False)
            self._buffers["num_batches_tracked"][...] = 0  # type: ignore[index]


class _BatchNormBase(_RunningStats):
    """BatchNorm's running-variance convention (``running_var_correction``: 1 is PyTorch's unbiased
    variance, 0 the biased one of Keras and ONNX). A layer not on PyTorch's convention keeps it in
    its state dict (key ``running_var_correction``), so saving and loading round-trips; a
    PyTorch-convention layer's state dict has PyTorch's keys only."""

    running_var_correction = 1

    def _set_correction(self, correction: int) -> None:
        if isinstance(correction, bool) or not isinstance(correction, (int, np.integer)) or correction < 0:
            raise ValueError(
                f"{type(self).__name__}: running_var_correction must be an int >= 0 (1: PyTorch, "
                f"0: Keras/ONNX), got {correction!r}"
            )
        self.running_var_correction = int(correction)

    def state_dict(self) -> dict[str, Array]:
        state = super().state_dict()
        if self.running_var_correction != 1:
            state["running_var_correction"] = np.array(self.running_var_correction, np.int64)
        return state

    def _extra_state_keys(self) -> set[str]:
        return {"running_var_correction"} if self.running_var_correction != 1 else set()

    def load_state_dict(self, state: dict[str, Any], strict: bool = True) -> None:
        state = dict(state)
        if "running_var_correction" in state:
            self._set_correction(int(state["running_var_correction"]))
        elif self.running_var_correction != 1:  # a PyTorch state dict: the layer keeps its convention
            state["running_var_correction"] = np.array(self.running_var_correction, np.int64)
        super().load_state_dict(state, strict)


class BatchNorm(_BatchNormBase):
    """``torch.nn.BatchNorm1d/2d/3d`` for any rank, channels at ``axis`` (1: NCHW, -1: NHWC).

    ``momentum=None`` keeps a cumulative average. ``mean_only=True`` subtracts the batch mean only
    (mean-only batch norm, paired with weight norm). ``running_var_correction=0`` moves the running
    variance towards the biased batch variance, as Keras and ONNX do (1, the default: PyTorch's
    unbiased one).
    """

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        *,
        axis: int = 1,
        mean_only: bool = False,
        running_var_correction: int = 1,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)
        self.axis, self.mean_only = axis, mean_only
        self._set_correction(running_var_correction)

    def forward(self, x: npt.ArrayLike) -> Array:
        before = self._batches_before()
        p, b = self._parameters, self._buffers
        batch_stats = self.training or not self.track_running_stats
        y, mean, rstd = batch_norm(
            x,
            b.get("running_mean"),
            b.get("running_var"),
            p["weight"],
            p["bias"],
            training=batch_stats,
            momentum=self.momentum,
            eps=self.eps,
            axis=self.axis,
            mean_only=self.mean_only,
            num_batches_tracked=before,
            return_stats=True,
            running_var_correction=self.running_var_correction,
        )
        self._count_batch(before)
        self._saved = (x, mean, rstd, batch_stats)
        return y

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        x, mean, rstd, batch_stats = self._saved_for_backward()
        weight = self._parameters["weight"]
        dx, dw, db = batch_norm_backward(
            grad_out, x, mean, rstd, weight, training=batch_stats, axis=self.axis, mean_only=self.mean_only
        )
        self._set_grads(weight=dw, bias=db)
        return dx


class InstanceNorm(_RunningStats):
    """``torch.nn.InstanceNorm1d/2d/3d`` on (N, C, ...): each (sample, channel) normalized alone."""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float = 0.1,
        affine: bool = False,
        track_running_stats: bool = False,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        super().__init__(num_features, eps, momentum, affine, track_running_stats, dtype)

    def forward(self, x: npt.ArrayLike) -> Array:
        before = self._batches_before()
        p, b = self._parameters, self._buffers
        use_input_stats = self.training or not self.track_running_stats
        y, mean, rstd = instance_norm(
            x,
            b.get("running_mean"),
            b.get("running_var"),
            p["weight"],
            p["bias"],
            use_input_stats=use_input_stats,
            momentum=self.momentum if self.momentum is not None else 0.1,
            eps=self.eps,
            return_stats=True,
        )
        self._count_batch(before)
        self._saved = (x, mean, rstd, use_input_stats)
        return y

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        x, mean, rstd, use_input_stats = self._saved_for_backward()
        weight = self._parameters["weight"]
        dx, dw, db = instance_norm_backward(grad_out, x, mean, rstd, weight, use_input_stats=use_input_stats)
        self._set_grads(weight=dw, bias=db)
        return dx


class GroupNorm(Module):
    """``torch.nn.GroupNorm`` on (N, C, ...)."""

    def __init__(
        self,
        num_groups: int,
        num_channels: int,
        eps: float = 1e-5,
        affine: bool = True,
        dtype: npt.DTypeLike = np.float32,
    ) -> None:
        super().__init__()
        _rsnorm._check_num_groups("GroupNorm", num_groups, num_channels)
        self.num_groups, self.num_channels, self.eps = num_groups, num_channels, eps
        self._parameters["weight"] = np.ones(num_channels, dtype) if affine else None
        self._parameters["bias"] = np.zeros(num_channels, dtype) if affine else None

    def forward(self, x: npt.ArrayLike) -> Array:
        p = self._parameters
        y, mean, rstd = group_norm(x, self.num_groups, p["weight"], p["bias"], self.eps, return_stats=True)
        self._saved = (x, mean, rstd)
        return y

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        x, mean, rstd = self._saved_for_backward()
        dx, dw, db = group_norm_backward(
            grad_out, x, mean, rstd, self._parameters["weight"], num_groups=self.num_groups
        )
        self._set_grads(weight=dw, bias=db)
        return dx


class LocalResponseNorm(Module):
    """``torch.nn.LocalResponseNorm`` (alpha is divided by size; see ``local_response_norm``)."""

    def __init__(self, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0) -> None:
        super().__init__()
        if size < 1:
            raise ValueError(f"LocalResponseNorm: size must be >= 1, got {size}")
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x: npt.ArrayLike) -> Array:
        return local_response_norm(x, self.size, self.alpha, self.beta, self.k)


class WeightNormLinear(Module):
    """A linear layer with weight normalization, w = g · v/‖v‖ per output row.

    State keys as ``torch.nn.utils.weight_norm(nn.Linear(...))``: ``weight_g`` (out, 1),
    ``weight_v`` (out, in), ``bias`` (out,). ``init_from_batch(x)`` is the data-dependent
    initialization of Salimans & Kingma (2016): g and bias are set so that this first batch's
    pre-activations have zero mean and unit variance per output.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        dtype: npt.DTypeLike = np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self._rng = np.random.default_rng(seed)
        v = self._rng.normal(0.0, 0.05, (out_features, in_features)).astype(dtype)
        self._parameters["weight_g"] = np.linalg.norm(v.astype(np.float64), axis=1, keepdims=True).astype(
            dtype
        )
        self._parameters["weight_v"] = v
        self._parameters["bias"] = np.zeros(out_features, dtype) if bias else None

    @property
    def weight(self) -> Array:
        """The effective weight g · v/‖v‖."""
        return weight_norm(self._array("weight_v"), self._array("weight_g"), 0)

    def forward(self, x: npt.ArrayLike) -> Array:
        x = host_array("WeightNormLinear", "x", x)
        weight = self.weight.astype(x.dtype, copy=False)
        y = x @ weight.T
        if self._parameters["bias"] is not None:
            y += self._parameters["bias"].astype(y.dtype, copy=False)
        self._saved = (x, weight)
        return y

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        x, weight = self._saved_for_backward()
        go = host_array("WeightNormLinear.backward", "grad_out", grad_out).astype(x.dtype, copy=False)
        grad_w = go.reshape(-1, self.out_features).T @ x.reshape(-1, self.in_features)
        v, g = self._array("weight_v"), self._array("weight_g")
        dv, dg = weight_norm_backward(grad_w.astype(v.dtype, copy=False), v, g, dim=0)
        bias_grad = go.reshape(-1, self.out_features).sum(axis=0)
        self._set_grads(weight_v=dv, weight_g=dg, bias=bias_grad)
        return go @ weight

    def init_from_batch(self, x: npt.ArrayLike) -> Array:
        """Data-dependent init from a batch (N, in_features); returns the batch's new outputs."""
        x = host_array("WeightNormLinear.init_from_batch", "x", x)
        v, g, bias = self._array("weight_v"), self._array("weight_g"), self._parameters["bias"]
        v[...] = self._rng.normal(0.0, 0.05, v.shape)
        unit = weight_norm(v, np.ones(self.out_features, v.dtype), 0)
        t = (x @ unit.astype(x.dtype, copy=False).T).astype(np.float64)
        mean = t.mean(axis=0)
        std = np.sqrt(t.var(axis=0) + 1e-10)
        g[...] = (1.0 / std).reshape(g.shape)
        if bias is not None:
            bias[...] = -mean / std
        return self.forward(x)


class CosineLinear(Module):
    """Cosine normalization layer: (x · wᵀ) / (‖x‖ ‖w‖) (+ bias), see ``cosine_linear``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = False,
        eps: float = 1e-8,
        dtype: npt.DTypeLike = np.float32,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"CosineLinear: {name} must be a positive int, got {value!r}")
        bound = 1.0 / np.sqrt(in_features)
        rng = np.random.default_rng(seed)
        self.eps = eps
        self._parameters["weight"] = rng.uniform(-bound, bound, (out_features, in_features)).astype(dtype)
        self._parameters["bias"] = np.zeros(out_features, dtype) if bias else None

    def forward(self, x: npt.ArrayLike) -> Array:
        self._saved = (x,)
        return cosine_linear(x, self._array("weight"), self._parameters["bias"], self.eps)

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        (x,) = self._saved_for_backward()
        weight = self._array("weight")
        dx, dw = cosine_linear_backward(grad_out, x, weight, self.eps)
        go = np.asarray(grad_out)
        self._set_grads(weight=dw.astype(weight.dtype), bias=go.reshape(-1, weight.shape[0]).sum(axis=0))
        return dx


class SequenceBatchNorm(_BatchNormBase):
    """Batch norm with per-time-step statistics for sequences (T, N, C, ...): recurrent batch
    normalization (Cooijmans et al. 2016). Step t keeps its own running statistics for
    t < max_steps; steps at or beyond max_steps share those of step max_steps − 1, in training
    and in inference. weight and bias are shared by all steps.

    State keys: weight, bias (C,), running_mean and running_var (max_steps, C), num_batches_tracked
    (and running_var_correction when not 1, as in ``BatchNorm``).
    """

    def __init__(
        self,
        num_features: int,
        max_steps: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        dtype: npt.DTypeLike = np.float32,
        *,
        running_var_correction: int = 1,
    ) -> None:
        if max_steps < 1:
            raise ValueError(f"SequenceBatchNorm: max_steps must be >= 1, got {max_steps}")
        super().__init__(num_features, eps, momentum, affine, True, dtype)
        self.max_steps = max_steps
        self._set_correction(running_var_correction)
        self._buffers["running_mean"] = np.zeros((max_steps, num_features), dtype)
        self._buffers["running_var"] = np.ones((max_steps, num_features), dtype)

    def forward(self, x: npt.ArrayLike) -> Array:
        x = host_array("SequenceBatchNorm", "x", x)
        if x.ndim < 3 or x.shape[2] != self.num_features:
            raise ValueError(
                f"SequenceBatchNorm: x must be (T, N, {self.num_features}, ...), got shape {x.shape}"
            )
        before = self._batches_before()
        p = self._parameters
        y = np.empty(x.shape, dtype=x.dtype)
        stats = []
        for t in range(x.shape[0]):
            step = min(t, self.max_steps - 1)
            _, mean, rstd = batch_norm(
                x[t],
                self._array("running_mean")[step],
                self._array("running_var")[step],
                p["weight"],
                p["bias"],
                training=self.training,
                momentum=self.momentum,
                eps=self.eps,
                num_batches_tracked=before,
                out=y[t],
                return_stats=True,
                running_var_correction=self.running_var_correction,
            )
            stats.append((mean, rstd))
        self._count_batch(before)
        self._saved = (x, stats, self.training)
        return y

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        x, stats, training = self._saved_for_backward()
        go = host_array("SequenceBatchNorm.backward", "grad_out", grad_out)
        dx = np.empty(x.shape, dtype=x.dtype)
        weight = self._parameters["weight"]
        dw_total = np.zeros(self.num_features, dtype=x.dtype)
        db_total = np.zeros(self.num_features, dtype=x.dtype)
        for t, (mean, rstd) in enumerate(stats):
            dx[t], dw, db = batch_norm_backward(go[t], x[t], mean, rstd, weight, training=training)
            if dw is not None:
                dw_total += dw
            db_total += db
        self._set_grads(weight=dw_total, bias=db_total)
        return dx
