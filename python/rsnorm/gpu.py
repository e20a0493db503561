"""rsnorm on the GPU, through wgpu (Vulkan, Metal, DX12), in the same wheel.

Arrays live on the device: ``asarray`` copies a NumPy array there, the public functions
(``rsnorm.layer_norm`` and the rest) take and return device arrays when given them, and nothing comes
back to the host until ``Array.numpy()``. Work is recorded and submitted in batches; ``numpy()`` and
``synchronize()`` wait for it. ``np.asarray(gpu_array)`` raises ``TypeError`` (as CuPy does), so a
copy to the host is never silent, and so does a NumPy array beside device arrays in one call.

The device opens on first use, not at import. Without one (no Vulkan, Metal or DX12 driver, or no
Vulkan loader), ``is_available()`` is False and ``asarray`` and friends raise
``GpuUnavailableError`` — a ``RuntimeError``; nothing silently runs on the CPU instead.

dtypes: float32 always; float16 (stored in 16 bits, computed in float32) where the adapter has
SHADER_F16; float64 where it has SHADER_F64; otherwise ``TypeError`` naming the missing feature.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import numpy as np

from . import _backend, _rsnorm
from ._rsnorm import GpuError, GpuUnavailableError
from ._typing import Shape

__all__ = [
    "Array",
    "GpuError",
    "GpuUnavailableError",
    "asarray",
    "device_info",
    "empty",
    "is_available",
    "synchronize",
]

_FLOATS = ("float16", "float32", "float64")


class Array:
    """An array in GPU memory (C-contiguous), made by ``asarray`` or ``empty`` or returned by an op.

    ``shape``, ``dtype``, ``ndim``, ``size``, ``nbytes`` as NumPy's; ``numpy()`` copies it to the host
    (waiting for the work that writes it); ``reshape`` and ``astype`` stay on the device.
    """

    __slots__ = ("_a",)
    # NumPy ufuncs and operators refuse it instead of converting it.
    __array_ufunc__ = None

    def __init__(self, handle: _rsnorm.GpuArray) -> None:
        if not isinstance(handle, _rsnorm.GpuArray):
            raise TypeError(
                "rsnorm.gpu.Array: make device arrays with rsnorm.gpu.asarray or rsnorm.gpu.empty"
            )
        self._a = handle

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self._a.shape)

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self._a.dtype)

    @property
    def ndim(self) -> int:
        return len(self._a.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self._a.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def numpy(self) -> np.ndarray[Any, Any]:
        """A NumPy array with the values: the one copy to the host."""
        return self._a.numpy()

    def reshape(self, *shape: int | tuple[int, ...]) -> Array:
        """The same device memory with another shape of as many elements (-1 once: inferred)."""
        dims = shape[0] if len(shape) == 1 and isinstance(shape[0], tuple) else shape
        resolved = np.empty(self.shape, dtype=np.bool_).reshape(dims).shape  # NumPy's rules for -1
        return Array(self._a.reshape(list(resolved)))

    def astype(self, dtype: Any) -> Array:
        """A copy converted to ``dtype`` on the device."""
        return Array(_rsnorm.gpu_astype(self._a, _dtype_name("astype", dtype)))

    def __array__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "rsnorm.gpu.Array does not convert to a NumPy array implicitly; call .numpy() to copy it "
            "to the host"
        )

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-dimensional rsnorm.gpu.Array")
        return self.shape[0]

    def __repr__(self) -> str:
        return f"rsnorm.gpu.Array(shape={self.shape}, dtype={self.dtype})"


def is_available() -> bool:
    """Whether a GPU adapter can be opened (opens it on the first call; never raises)."""
    return bool(_rsnorm.gpu_is_available())


def device_info() -> dict[str, str]:
    """The adapter: name, backend, device type, driver, limits and features.
    ``GpuUnavailableError`` without one."""
    return dict(_rsnorm.gpu_device_info())


def synchronize() -> None:
    """Waits until the device has done all work recorded so far."""
    _rsnorm.gpu_synchronize()


def _dtype_name(where: str, dtype: Any) -> str:
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise TypeError(f"{where}: dtype {dtype!r} is not a NumPy dtype") from None
    if name not in _FLOATS:
        raise TypeError(f"{where}: dtype {name}; rsnorm.gpu holds float16, float32 and float64 arrays")
    return name


def asarray(x: Any, dtype: Any = None) -> Array:
    """``x`` on the device: a device array as is (converted on the device if ``dtype`` differs),
    anything NumPy takes copied there C-contiguous (float arrays keep their dtype; other dtypes need
    ``dtype=``)."""
    if isinstance(x, Array):
        if dtype is None or np.dtype(dtype) == x.dtype:
            return x
        return x.astype(dtype)
    host = _backend.host_array("rsnorm.gpu.asarray", "x", x)
    if dtype is None:
        if host.dtype.kind != "f":
            raise TypeError(
                f"rsnorm.gpu.asarray: x has dtype {host.dtype}; rsnorm.gpu holds float16, float32 and "
                "float64 arrays (pass dtype=np.float32 to convert)"
            )
        dtype = host.dtype
    name = _dtype_name("rsnorm.gpu.asarray", dtype)
    host = np.asarray(host, dtype=np.dtype(name).newbyteorder("="), order="C")
    return Array(_rsnorm.gpu_upload(host.reshape(-1).view(np.uint8), list(host.shape), name))


def empty(shape: int | tuple[int, ...], dtype: Any = np.float32) -> Array:
    """An uninitialized device array."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(int(d) < 0 for d in dims):
        raise ValueError(f"rsnorm.gpu.empty: shape {dims} has a negative dimension")
    return Array(_rsnorm.gpu_empty([int(d) for d in dims], _dtype_name("rsnorm.gpu.empty", dtype)))


# The ops on device arrays, under the public names (the backend seam calls them with the public
# function's arguments). Every array argument must be a device array.


def _dev(op: str, name: str, value: Any) -> Any:
    if isinstance(value, Array):
        return value._a
    raise TypeError(
        f"{op}: argument '{name}' is a {type(value).__module__}.{type(value).__qualname__}, but the "
        f"call's arrays are on the GPU; move it there with rsnorm.gpu.asarray({name})"
    )


def _opt(op: str, name: str, value: Any) -> Any:
    return None if value is None else _dev(op, name, value)


def _wrap(result: Any, *given: Any) -> Any:
    """The op's result as Arrays: an output the caller passed (``out=``) is returned as that same
    object, as NumPy's functions return ``out``."""

    def one(handle: _rsnorm.GpuArray) -> Array:
        for array in given:
            if (
                isinstance(array, Array)
                and array._a.same_memory(handle)
                and array.shape == tuple(handle.shape)
            ):
                return array
        return Array(handle)

    if isinstance(result, tuple):
        return tuple(one(r) for r in result)
    return one(result)


def _layer_norm(
    x: Any,
    normalized_shape: Shape = None,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    out: Any = None,
    return_stats: bool = False,
) -> Any:
    op = "layer_norm"
    return _wrap(
        _rsnorm.gpu_layer_norm(
            _dev(op, "x", x),
            normalized_shape,
            _opt(op, "weight", weight),
            _opt(op, "bias", bias),
            eps,
            _opt(op, "out", out),
            return_stats,
        ),
        out,
    )


def _rms_norm(
    x: Any,
    normalized_shape: Shape = None,
    weight: Any = None,
    eps: float | None = None,
    *,
    out: Any = None,
    return_stats: bool = False,
) -> Any:
    op = "rms_norm"
    return _wrap(
        _rsnorm.gpu_rms_norm(
            _dev(op, "x", x),
            normalized_shape,
            _opt(op, "weight", weight),
            eps,
            _opt(op, "out", out),
            return_stats,
        ),
        out,
    )


def _add_layer_norm(
    x: Any,
    residual: Any,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    normalized_shape: Shape = None,
    out: Any = None,
    residual_out: Any = None,
    return_stats: bool = False,
) -> Any:
    op = "add_layer_norm"
    return _wrap(
        _rsnorm.gpu_add_layer_norm(
            _dev(op, "x", x),
            _dev(op, "residual", residual),
            _opt(op, "weight", weight),
            _opt(op, "bias", bias),
            eps,
            normalized_shape,
            _opt(op, "out", out),
            _opt(op, "residual_out", residual_out),
            return_stats,
        ),
        out,
        residual_out,
    )


def _add_rms_norm(
    x: Any,
    residual: Any,
    weight: Any = None,
    eps: float | None = None,
    *,
    normalized_shape: Shape = None,
    out: Any = None,
    residual_out: Any = None,
    return_stats: bool = False,
) -> Any:
    op = "add_rms_norm"
    return _wrap(
        _rsnorm.gpu_add_rms_norm(
            _dev(op, "x", x),
            _dev(op, "residual", residual),
            _opt(op, "weight", weight),
            eps,
            normalized_shape,
            _opt(op, "out", out),
            _opt(op, "residual_out", residual_out),
            return_stats,
        ),
        out,
        residual_out,
    )


def _l2_normalize(x: Any, eps: float = 1e-12, *, out: Any = None) -> Any:
    op = "l2_normalize"
    return _wrap(_rsnorm.gpu_l2_normalize(_dev(op, "x", x), eps, _opt(op, "out", out)), out)


def _softmax(x: Any, axis: int = -1, *, out: Any = None) -> Any:
    op = "softmax"
    return _wrap(_rsnorm.gpu_softmax(_dev(op, "x", x), axis, False, _opt(op, "out", out)), out)


def _log_softmax(x: Any, axis: int = -1, *, out: Any = None) -> Any:
    op = "log_softmax"
    return _wrap(_rsnorm.gpu_softmax(_dev(op, "x", x), axis, True, _opt(op, "out", out)), out)


def _selu(x: Any, *, out: Any = None) -> Any:
    return _wrap(_rsnorm.gpu_selu(_dev("selu", "x", x), _opt("selu", "out", out)), out)


def _group_norm(
    x: Any,
    num_groups: int,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    out: Any = None,
    return_stats: bool = False,
) -> Any:
    op = "group_norm"
    return _wrap(
        _rsnorm.gpu_group_norm(
            _dev(op, "x", x),
            num_groups,
            _opt(op, "weight", weight),
            _opt(op, "bias", bias),
            eps,
            _opt(op, "out", out),
            return_stats,
        ),
        out,
    )


def _instance_norm(
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    use_input_stats: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    *,
    out: Any = None,
    return_stats: bool = False,
) -> Any:
    op = "instance_norm"
    return _wrap(
        _rsnorm.gpu_instance_norm(
            _dev(op, "x", x),
            _opt(op, "running_mean", running_mean),
            _opt(op, "running_var", running_var),
            _opt(op, "weight", weight),
            _opt(op, "bias", bias),
            use_input_stats,
            momentum,
            eps,
            _opt(op, "out", out),
            return_stats,
        ),
        out,
    )


def _batch_norm(
    x: Any,
    running_mean: Any = None,
    running_var: Any = None,
    weight: Any = None,
    bias: Any = None,
    training: bool = False,
    momentum: float | None = 0.1,
    eps: float = 1e-5,
    *,
    axis: int = 1,
    out: Any = None,
    mean_only: bool = False,
    num_batches_tracked: int | None = None,
    return_stats: bool = False,
    running_var_correction: int = 1,
) -> Any:
    op = "batch_norm"
    return _wrap(
        _rsnorm.gpu_batch_norm(
            _dev(op, "x", x),
            _opt(op, "running_mean", running_mean),
            _opt(op, "running_var", running_var),
            _opt(op, "weight", weight),
            _opt(op, "bias", bias),
            training,
            momentum,
            eps,
            axis,
            _opt(op, "out", out),
            mean_only,
            num_batches_tracked,
            return_stats,
            running_var_correction,
        ),
        out,
    )


#: The ops the GPU runs, under the public names.
OPS = SimpleNamespace(
    layer_norm=_layer_norm,
    rms_norm=_rms_norm,
    add_layer_norm=_add_layer_norm,
    add_rms_norm=_add_rms_norm,
    l2_normalize=_l2_normalize,
    softmax=_softmax,
    log_softmax=_log_softmax,
    selu=_selu,
    group_norm=_group_norm,
    instance_norm=_instance_norm,
    batch_norm=_batch_norm,
)


def _to_numpy(value: Any) -> Any:
    return value.numpy() if isinstance(value, Array) else value


_backend.register(Array, _backend.Backend("gpu", OPS, asarray, _to_numpy))
