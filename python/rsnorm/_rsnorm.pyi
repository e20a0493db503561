"""The Rust extension: private, called positionally by the public Python functions."""

from collections.abc import Sequence
from typing import Any, Literal, final, overload

import numpy as np
import numpy.typing as npt

_Shape = int | Sequence[int] | None
_Array = npt.NDArray[np.floating]
_ArrayLike = npt.ArrayLike
# Arrays written in place (out=, running statistics): NumPy arrays by the time the host functions
# call the extension (device arrays go to their backend first), typed loosely as the public layer's.
_Out = Any
# A backward's out=: one entry per result, each an array or None.
_Outs = tuple[Any, ...]

__version__: str
__all__ = [
    "GpuArray",
    "GpuError",
    "GpuTimestamp",
    "GpuUnavailableError",
    "__version__",
    "_after_fork_in_child",
    "_after_fork_in_parent",
    "_before_fork",
    "_build_profile",
    "_check_num_groups",
    "_nontemporal_stores",
    "_parallel_copy",
    "_parallel_scale",
    "_parallel_sum",
    "_row_prefetch",
    "_streamed_row_prefetch",
    "_streaming_from",
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_backward",
    "apply_statistics",
    "batch_norm",
    "batch_norm_backward",
    "cross_entropy_with_logits",
    "cross_entropy_with_logits_backward",
    "get_num_threads",
    "gpu_add_layer_norm",
    "gpu_add_layer_norm_backward",
    "gpu_add_rms_norm",
    "gpu_add_rms_norm_backward",
    "gpu_astype",
    "gpu_batch_norm",
    "gpu_batch_norm_backward",
    "gpu_cross_entropy",
    "gpu_cross_entropy_backward",
    "gpu_device_info",
    "gpu_empty",
    "gpu_grad_norm",
    "gpu_group_norm",
    "gpu_group_norm_backward",
    "gpu_instance_norm",
    "gpu_instance_norm_backward",
    "gpu_is_available",
    "gpu_l2_normalize",
    "gpu_layer_norm",
    "gpu_layer_norm_backward",
    "gpu_matmul",
    "gpu_optim_step",
    "gpu_relu",
    "gpu_relu_backward",
    "gpu_rms_norm",
    "gpu_rms_norm_backward",
    "gpu_scale_grads",
    "gpu_selu",
    "gpu_selu_backward",
    "gpu_softmax",
    "gpu_softmax_backward",
    "gpu_synchronize",
    "gpu_timestamp",
    "gpu_upload",
    "grad_norm",
    "group_norm",
    "group_norm_backward",
    "information",
    "information_criterion",
    "information_criterion_direct",
    "instance_norm",
    "instance_norm_backward",
    "l2_normalize",
    "l2_normalize_backward",
    "layer_norm",
    "layer_norm_backward",
    "local_response_norm",
    "log_softmax",
    "merge_moments",
    "merge_partials",
    "moments",
    "nll_loss",
    "normalize",
    "normalize_backward",
    "optim_grads_ready",
    "optim_step",
    "optim_validate",
    "rms_norm",
    "rms_norm_backward",
    "selu",
    "selu_backward",
    "set_num_threads",
    "simd_level",
    "softmax",
    "softmax_backward",
    "wasserstein_1d",
    "weight_norm",
    "weight_norm_backward",
]

def layer_norm(
    x: _ArrayLike,
    normalized_shape: _Shape = None,
    weight: _ArrayLike | None = None,
    bias: _ArrayLike | None = None,
    eps: float = 1e-5,
    out: _Out | None = None,
    return_stats: bool = False,
) -> Any: ...
def rms_norm(
    x: _ArrayLike,
    normalized_shape: _Shape = None,
    weight: _ArrayLike | None = None,
    eps: float | None = None,
    out: _Out | None = None,
    return_stats: bool = False,
) -> Any: ...
def add_layer_norm(
    x: _ArrayLike,
    residual: _ArrayLike,
    weight: _ArrayLike | None = None,
    bias: _ArrayLike | None = None,
    eps: float = 1e-5,
    normalized_shape: _Shape = None,
    out: _Out | None = None,
    residual_out: _Out | None = None,
    return_stats: bool = False,
) -> tuple[_Array, ...]: ...
def add_rms_norm(
    x: _ArrayLike,
    residual: _ArrayLike,
    weight: _ArrayLike | None = None,
    eps: float | None = None,
    normalized_shape: _Shape = None,
    out: _Out | None = None,
    residual_out: _Out | None = None,
    return_stats: bool = False,
) -> tuple[_Array, ...]: ...
def batch_norm(
    x: _ArrayLike,
    running_mean: _Out | None = None,
    running_var: _Out | None = None,
    weight: _ArrayLike | None = None,
    bias: _ArrayLike | None = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    axis: int = 1,
    out: _Out | None = None,
    mean_only: bool = False,
    num_batches_tracked: int | None = None,
    return_stats: bool = False,
    running_var_correction: int = 1,
) -> Any: ...
def instance_norm(
    x: _ArrayLike,
    running_mean: _Out | None = None,
    running_var: _Out | None = None,
    weight: _ArrayLike | None = None,
    bias: _ArrayLike | None = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    out: _Out | None = None,
    return_stats: bool = False,
) -> Any: ...
def group_norm(
    x: _ArrayLike,
    num_groups: int,
    weight: _ArrayLike | None = None,
    bias: _ArrayLike | None = None,
    eps: float = 1e-5,
    out: _Out | None = None,
    return_stats: bool = False,
) -> Any: ...
def selu(x: _ArrayLike, out: _Out | None = None) -> _Array: ...
def local_response_norm(
    x: _ArrayLike,
    size: int,
    alpha: float = 1e-4,
    beta: float = 0.75,
    k: float = 1.0,
    out: _Out | None = None,
) -> _Array: ...
def weight_norm(v: _ArrayLike, g: _ArrayLike, dim: int | None = 0, out: _Out | None = None) -> _Array: ...
def l2_normalize(x: _ArrayLike, eps: float = 1e-12, out: _Out | None = None) -> _Array: ...
def normalize(
    x: _ArrayLike, p: float = 2.0, axis: int = -1, eps: float = 1e-12, out: _Out | None = None
) -> _Array: ...
@overload
def moments(
    x: _ArrayLike, axis: int | Sequence[int] | None = None, mean_lo: Literal[False] = False
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
@overload
def moments(
    x: _ArrayLike, axis: int | Sequence[int] | None, mean_lo: Literal[True]
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]: ...
def merge_partials(
    count: _ArrayLike, mean: _ArrayLike, m2: _ArrayLike, mean_lo: _ArrayLike
) -> tuple[
    npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]
]: ...
def apply_statistics(
    x: _ArrayLike,
    mean: _ArrayLike,
    scale: _ArrayLike,
    shift: _ArrayLike | None = None,
    axis: int | Sequence[int] | None = None,
    out: _Out | None = None,
) -> _Array: ...
def merge_moments(
    a: tuple[_ArrayLike, _ArrayLike, _ArrayLike], b: tuple[_ArrayLike, _ArrayLike, _ArrayLike]
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.float64]]: ...
def information_criterion(
    log_likelihood: _ArrayLike, k: _ArrayLike, n: _ArrayLike | None, models: int
) -> npt.NDArray[np.float64]: ...
def information_criterion_direct(
    log_likelihood: object, k: object, n: object | None
) -> float | npt.NDArray[np.float64] | None: ...
def layer_norm_backward(
    grad_out: _ArrayLike,
    x: _ArrayLike,
    mean: _ArrayLike,
    rstd: _ArrayLike,
    weight: _ArrayLike | None = None,
    bias: _ArrayLike | None = None,
    normalized_shape: _Shape = None,
    out: _Outs | None = None,
) -> tuple[_Array, _Array | None, _Array | None]: ...
def rms_norm_backward(
    grad_out: _ArrayLike,
    x: _ArrayLike,
    rstd: _ArrayLike,
    weight: _ArrayLike | None = None,
    normalized_shape: _Shape = None,
    out: _Outs | None = None,
) -> tuple[_Array, _Array | None]: ...
def add_layer_norm_backward(
    grad_out: _ArrayLike,
    residual_sum: _ArrayLike,
    mean: _ArrayLike,
    rstd: _ArrayLike,
    weight: _ArrayLike | None = None,
    bias: _ArrayLike | None = None,
    grad_residual_out: _ArrayLike | None = None,
    normalized_shape: _Shape = None,
    out: _Outs | None = None,
) -> tuple[_Array, _Array, _Array | None, _Array | None]: ...
def add_rms_norm_backward(
    grad_out: _ArrayLike,
    residual_sum: _ArrayLike,
    rstd: _ArrayLike,
    weight: _ArrayLike | None = None,
    grad_residual_out: _ArrayLike | None = None,
    normalized_shape: _Shape = None,
    out: _Outs | None = None,
) -> tuple[_Array, _Array, _Array | None]: ...
def batch_norm_backward(
    grad_out: _ArrayLike,
    x: _ArrayLike,
    mean: _ArrayLike,
    rstd: _ArrayLike,
    weight: _ArrayLike | None = None,
    training: bool = True,
    axis: int = 1,
    mean_only: bool = False,
    out: _Outs | None = None,
) -> tuple[_Array, _Array | None, _Array]: ...
def instance_norm_backward(
    grad_out: _ArrayLike,
    x: _ArrayLike,
    mean: _ArrayLike,
    rstd: _ArrayLike,
    weight: _ArrayLike | None = None,
    use_input_stats: bool = True,
    out: _Outs | None = None,
) -> tuple[_Array, _Array | None, _Array]: ...
def group_norm_backward(
    grad_out: _ArrayLike,
    x: _ArrayLike,
    mean: _ArrayLike,
    rstd: _ArrayLike,
    weight: _ArrayLike | None = None,
    *,
    num_groups: int,
    out: _Outs | None = None,
) -> tuple[_Array, _Array | None, _Array]: ...
def weight_norm_backward(
    grad_w: _ArrayLike, v: _ArrayLike, g: _ArrayLike, dim: int | None = 0, out: _Outs | None = None
) -> tuple[_Array, _Array]: ...
def l2_normalize_backward(
    grad: _ArrayLike, x: _ArrayLike, eps: float = 1e-12, out: _Out | None = None
) -> _Array: ...
def normalize_backward(
    grad: _ArrayLike,
    x: _ArrayLike,
    p: float = 2.0,
    axis: int = -1,
    eps: float = 1e-12,
    out: _Out | None = None,
) -> _Array: ...
def selu_backward(grad_out: _ArrayLike, x: _ArrayLike, out: _Out | None = None) -> _Array: ...
def optim_validate(name: str, group: dict[str, Any]) -> list[str]: ...
def optim_grads_ready(params: list[Any], grads: list[Any]) -> bool: ...
def optim_step(
    algorithm: str, group: dict[str, Any], tensors: dict[str, list[Any]], grad_scale: float = 1.0
) -> None: ...
def grad_norm(grads: list[_Array]) -> float: ...
def softmax(x: _ArrayLike, axis: int = -1, out: _Out | None = None) -> _Array: ...
def log_softmax(x: _ArrayLike, axis: int = -1, out: _Out | None = None) -> _Array: ...
def softmax_backward(
    grad_out: _ArrayLike, y: _ArrayLike, axis: int = -1, log: bool = False, out: _Out | None = None
) -> _Array: ...
def information(
    measure: str, p: _ArrayLike, q: _ArrayLike | None = None, axis: int = -1, base: float | None = None
) -> Any: ...
def cross_entropy_with_logits(
    logits: _ArrayLike,
    target: _ArrayLike,
    axis: int = -1,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    weight: _ArrayLike | None = None,
) -> Any: ...
def cross_entropy_with_logits_backward(
    grad_out: _ArrayLike,
    logits: _ArrayLike,
    target: _ArrayLike,
    axis: int = -1,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    weight: _ArrayLike | None = None,
    out: _Out | None = None,
) -> _Array: ...
def nll_loss(
    log_probs: _ArrayLike,
    target: _ArrayLike,
    weight: _ArrayLike | None = None,
    axis: int = -1,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Any: ...
def wasserstein_1d(
    u_values: _ArrayLike,
    v_values: _ArrayLike,
    u_weights: _ArrayLike | None = None,
    v_weights: _ArrayLike | None = None,
) -> float: ...
def set_num_threads(n: int) -> None: ...
def get_num_threads() -> int: ...
def simd_level() -> str: ...
def _after_fork_in_child() -> None: ...
def _after_fork_in_parent() -> None: ...
def _before_fork() -> None: ...
def _check_num_groups(op: str, num_groups: int, channels: int) -> None: ...
def _parallel_copy(src: _Array, dst: _Array) -> None: ...
def _row_prefetch() -> bool: ...
def _streamed_row_prefetch() -> bool: ...
def _nontemporal_stores() -> bool: ...
def _streaming_from() -> int: ...
def _build_profile() -> str: ...
def _parallel_scale(buf: _Array | list[_Array], factor: float) -> None: ...
def _parallel_sum(buf: _Array) -> float: ...

# ---- the GPU (rsnorm-gpu): device arrays and the ops on them ----

class GpuError(RuntimeError): ...
class GpuUnavailableError(GpuError): ...

@final
class GpuArray:
    @property
    def shape(self) -> tuple[int, ...]: ...
    @property
    def dtype(self) -> str: ...
    def numpy(self) -> _Array: ...
    def reshape(self, shape: Sequence[int]) -> GpuArray: ...
    def same_memory(self, other: GpuArray) -> bool: ...
    def copy_from(self, src: GpuArray) -> None: ...

@final
class GpuTimestamp:
    def nanoseconds(self) -> float: ...

_G = GpuArray | None
# out= of a device backward: its entries as handles (the binding checks the tuple).
_GOuts = tuple[GpuArray | None, ...] | None

def gpu_is_available() -> bool: ...
def gpu_device_info() -> dict[str, str]: ...
def gpu_upload(data: npt.NDArray[np.uint8], shape: Sequence[int], dtype: str) -> GpuArray: ...
def gpu_empty(shape: Sequence[int], dtype: str) -> GpuArray: ...
def gpu_astype(x: GpuArray, dtype: str) -> GpuArray: ...
def gpu_synchronize() -> None: ...
def gpu_timestamp() -> GpuTimestamp | None: ...
def gpu_layer_norm(
    x: GpuArray, normalized_shape: _Shape, weight: _G, bias: _G, eps: float, out: _G, return_stats: bool
) -> Any: ...
def gpu_rms_norm(
    x: GpuArray, normalized_shape: _Shape, weight: _G, eps: float | None, out: _G, return_stats: bool
) -> Any: ...
def gpu_add_layer_norm(
    x: GpuArray,
    residual: GpuArray,
    weight: _G,
    bias: _G,
    eps: float,
    normalized_shape: _Shape,
    out: _G,
    residual_out: _G,
    return_stats: bool,
) -> Any: ...
def gpu_add_rms_norm(
    x: GpuArray,
    residual: GpuArray,
    weight: _G,
    eps: float | None,
    normalized_shape: _Shape,
    out: _G,
    residual_out: _G,
    return_stats: bool,
) -> Any: ...
def gpu_l2_normalize(x: GpuArray, eps: float, out: _G) -> GpuArray: ...
def gpu_softmax(x: GpuArray, axis: int, log: bool, out: _G) -> GpuArray: ...
def gpu_softmax_backward(grad_out: GpuArray, y: GpuArray, axis: int, log: bool, out: _G) -> GpuArray: ...
def gpu_cross_entropy(
    logits: GpuArray,
    target: Any,
    weight: _ArrayLike | None,
    axis: int,
    reduction: str,
    label_smoothing: float,
    ignore_index: int,
) -> GpuArray: ...
def gpu_cross_entropy_backward(
    grad_out: Any,
    logits: GpuArray,
    target: Any,
    weight: _ArrayLike | None,
    axis: int,
    reduction: str,
    label_smoothing: float,
    ignore_index: int,
    out: _G,
) -> GpuArray: ...
def gpu_selu(x: GpuArray, out: _G) -> GpuArray: ...
def gpu_relu(x: GpuArray, out: _G) -> GpuArray: ...
def gpu_relu_backward(grad_out: GpuArray, x: GpuArray, out: _G) -> GpuArray: ...
def gpu_matmul(
    a: GpuArray, b: GpuArray, bias: _G, transpose_a: bool, transpose_b: bool, out: _G
) -> GpuArray: ...
def gpu_selu_backward(grad_out: GpuArray, x: GpuArray, out: _G) -> GpuArray: ...
def gpu_group_norm(
    x: GpuArray, num_groups: int, weight: _G, bias: _G, eps: float, out: _G, return_stats: bool
) -> Any: ...
def gpu_instance_norm(
    x: GpuArray,
    running_mean: _G,
    running_var: _G,
    weight: _G,
    bias: _G,
    use_input_stats: bool,
    momentum: float,
    eps: float,
    out: _G,
    return_stats: bool,
) -> Any: ...
def gpu_batch_norm(
    x: GpuArray,
    running_mean: _G,
    running_var: _G,
    weight: _G,
    bias: _G,
    training: bool,
    momentum: float | None,
    eps: float,
    axis: int,
    out: _G,
    mean_only: bool,
    num_batches_tracked: int | None,
    return_stats: bool,
    running_var_correction: int,
) -> Any: ...
def gpu_layer_norm_backward(
    grad_out: GpuArray,
    x: GpuArray,
    mean: GpuArray,
    rstd: GpuArray,
    weight: _G,
    bias: _G,
    normalized_shape: int | Sequence[int] | None,
    out: _GOuts,
) -> tuple[GpuArray, GpuArray | None, GpuArray | None]: ...
def gpu_rms_norm_backward(
    grad_out: GpuArray,
    x: GpuArray,
    rstd: GpuArray,
    weight: _G,
    normalized_shape: int | Sequence[int] | None,
    out: _GOuts,
) -> tuple[GpuArray, GpuArray | None]: ...
def gpu_add_layer_norm_backward(
    grad_out: GpuArray,
    residual_sum: GpuArray,
    mean: GpuArray,
    rstd: GpuArray,
    weight: _G,
    bias: _G,
    grad_residual_out: _G,
    normalized_shape: int | Sequence[int] | None,
    out: _GOuts,
) -> tuple[GpuArray, GpuArray, GpuArray | None, GpuArray | None]: ...
def gpu_add_rms_norm_backward(
    grad_out: GpuArray,
    residual_sum: GpuArray,
    rstd: GpuArray,
    weight: _G,
    grad_residual_out: _G,
    normalized_shape: int | Sequence[int] | None,
    out: _GOuts,
) -> tuple[GpuArray, GpuArray, GpuArray | None]: ...
def gpu_optim_step(
    algorithm: str,
    group: dict[str, Any],
    params: Sequence[GpuArray],
    grads: Sequence[GpuArray],
    states: Sequence[Sequence[GpuArray]],
    steps: Sequence[int],
    fresh: Sequence[bool],
    clip: tuple[float, GpuArray] | None,
) -> None: ...
def gpu_grad_norm(grads: Sequence[GpuArray]) -> GpuArray: ...
def gpu_scale_grads(grads: Sequence[GpuArray], max_norm: float, norm: GpuArray) -> None: ...
def gpu_batch_norm_backward(
    grad_out: GpuArray,
    x: GpuArray,
    mean: GpuArray,
    rstd: GpuArray,
    weight: _G,
    training: bool,
    axis: int,
    mean_only: bool,
    out: _GOuts,
) -> tuple[GpuArray, GpuArray | None, GpuArray]: ...
def gpu_group_norm_backward(
    grad_out: GpuArray,
    x: GpuArray,
    mean: GpuArray,
    rstd: GpuArray,
    weight: _G,
    num_groups: int,
    out: _GOuts,
) -> tuple[GpuArray, GpuArray | None, GpuArray]: ...
def gpu_instance_norm_backward(
    grad_out: GpuArray,
    x: GpuArray,
    mean: GpuArray,
    rstd: GpuArray,
    weight: _G,
    use_input_stats: bool,
    out: _GOuts,
) -> tuple[GpuArray, GpuArray | None, GpuArray]: ...
