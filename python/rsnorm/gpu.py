"""rsnorm on the GPU, through wgpu (Vulkan, Metal, DX12), in the same wheel.

Arrays live on the device: ``asarray`` copies a NumPy array there, the public functions
(``rsnorm.layer_norm`` and the rest) take and return device arrays when given them, and nothing comes
back to the host until ``Array.numpy()``. Work is recorded and submitted in batches; ``numpy()`` and
``synchronize()`` wait for it. ``np.asarray(gpu_array)`` raises ``TypeError`` (as CuPy does), so a
copy to the host is never silent, and so does a NumPy array beside device arrays in one call.

The device opens on first use, not at import. Without one (no Vulkan, Metal or DX12 driver, or no
Vulkan loader), ``is_available()`` is False and ``asarray`` and friends raise
``GpuUnavailableError`` — a ``RuntimeError``; nothing silently runs on the CPU instead.

Beside the public functions, three array utilities keep a training loop's other layers on the device
(NumPy has them for host arrays): ``matmul`` (a linear layer's forward and backward), ``relu`` and
``relu_backward``.

dtypes: float32 always; float16 (stored in 16 bits, computed in float32) where the adapter has
SHADER_F16; float64 where it has SHADER_F64; otherwise ``TypeError`` naming the missing feature.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any, cast

import numpy as np

from . import _backend, _rsnorm, activation, channels, divergence, norm
from ._rsnorm import GpuError, GpuUnavailableError

__all__ = [
    "Array",
    "GpuError",
    "GpuUnavailableError",
    "asarray",
    "device_info",
    "empty",
    "is_available",
    "matmul",
    "relu",
    "relu_backward",
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
        # One Array per handle: add_layer_norm_backward's dx and dresidual are one array, as on the CPU.
        arrays: dict[int, Array] = {}
        return tuple(None if r is None else arrays.setdefault(id(r), one(r)) for r in result)
    return one(result)


def _outs(op: str, name: str, value: Any) -> Any:
    """A backward's ``out=`` tuple with its device arrays as handles (the binding checks the rest:
    the tuple's length, each entry's shape and dtype)."""
    if type(value) is not tuple:
        return value
    return tuple(None if v is None else _dev(op, f"{name}[{i}]", v) for i, v in enumerate(value))


def _given(value: Any) -> tuple[Any, ...]:
    """The arrays of an ``out=`` tuple (what the results may be)."""
    return value if type(value) is tuple else ()


def _either(value: Any) -> Any:
    """A device array's handle, or a host value as it is (the binding tells which it takes)."""
    return value._a if isinstance(value, Array) else value


def _host(value: Any) -> Any:
    """A host value, a device array copied to the host (a few values: class weights)."""
    return value.numpy() if isinstance(value, Array) else value


def matmul(
    a: Array,
    b: Array,
    *,
    bias: Array | None = None,
    transpose_a: bool = False,
    transpose_b: bool = False,
    out: Array | None = None,
) -> Array:
    """``op(a) @ op(b) + bias`` of 2-D device arrays, ``op`` the transpose where asked: a linear
    layer's forward ``matmul(x, w, bias=b, transpose_b=True)`` and backward ``matmul(go, w)``,
    ``matmul(go, x, transpose_a=True)``. Summed in the compute dtype in a fixed order (the same bits on
    every run); b and bias are converted to a's dtype."""
    where = "rsnorm.gpu.matmul"
    handle = _rsnorm.gpu_matmul(
        _dev(where, "a", a),
        _dev(where, "b", b),
        _opt(where, "bias", bias),
        bool(transpose_a),
        bool(transpose_b),
        _opt(where, "out", out),
    )
    return _wrap(handle, out)


def relu(x: Array, *, out: Array | None = None) -> Array:
    """``max(x, 0)`` of a device array, NaN kept (``torch.relu``, ``np.maximum(x, 0)``)."""
    where = "rsnorm.gpu.relu"
    return _wrap(_rsnorm.gpu_relu(_dev(where, "x", x), _opt(where, "out", out)), out)


def relu_backward(grad_out: Array, x: Array, *, out: Array | None = None) -> Array:
    """ReLU's gradient: ``grad_out`` where ``x > 0``, else 0 (``torch``'s ``threshold_backward``)."""
    where = "rsnorm.gpu.relu_backward"
    handle = _rsnorm.gpu_relu_backward(
        _dev(where, "grad_out", grad_out), _dev(where, "x", x), _opt(where, "out", out)
    )
    return _wrap(handle, out)


def _device_op(
    public: Callable[..., Any], binding: Callable[..., Any], host: dict[str, str] | None = None
) -> Callable[..., Any]:
    """``public`` on device arrays: a function with its parameters and defaults that unwraps each
    array argument (a ``TypeError`` naming it when it is not a device array), calls ``binding`` with
    all the arguments in order, and wraps the results (an ``out=`` the caller gave comes back as that
    same object). ``host`` names the arguments that may be host values instead, each with how it is
    passed: "_either" (a device array's handle or the host value) or "_host" (host values, a device
    array copied there). Compiled from source, as the seam's dispatchers are, so a call costs no
    ``Signature.bind``."""
    name = public.__name__
    params = list(inspect.signature(public).parameters.values())
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]

    def argument(p: inspect.Parameter) -> str:
        if host and p.name in host:
            return f"{host[p.name]}({p.name})"
        if "OutArrays" in str(p.annotation):
            return f"_outs({name!r}, {p.name!r}, {p.name})"
        if "Array" not in str(p.annotation):
            return p.name
        check = "_dev" if p.default is inspect.Parameter.empty else "_opt"
        return f"{check}({name!r}, {p.name!r}, {p.name})"

    outs = {p.name for p in params if "OutArrays" in str(p.annotation)}
    given = [f"*_given({n})" if n in outs else n for n in ("out", "residual_out") if n in keyword]
    source = (
        f"def {name}({', '.join(positional + (['*', *keyword] if keyword else []))}):\n"
        f"    return _wrap(_binding({', '.join(map(argument, params))}), {', '.join(given)})\n"
    )
    namespace: dict[str, Any] = {
        "_dev": _dev,
        "_opt": _opt,
        "_outs": _outs,
        "_given": _given,
        "_either": _either,
        "_host": _host,
        "_wrap": _wrap,
        "_binding": binding,
    }
    exec(compile(source, f"<rsnorm.gpu {name}>", "exec"), namespace)
    device_op = namespace[name]
    device_op.__defaults__ = public.__defaults__
    device_op.__kwdefaults__ = public.__kwdefaults__
    device_op.__doc__ = f"``rsnorm.{name}`` on device arrays."
    return cast(Callable[..., Any], device_op)


def _softmax(x: Any, axis: int, out: Any) -> Any:
    return _rsnorm.gpu_softmax(x, axis, False, out)


def _log_softmax(x: Any, axis: int, out: Any) -> Any:
    return _rsnorm.gpu_softmax(x, axis, True, out)


def _softmax_backward(grad_out: Any, y: Any, axis: int, out: Any) -> Any:
    return _rsnorm.gpu_softmax_backward(grad_out, y, axis, False, out)


def _log_softmax_backward(grad_out: Any, y: Any, axis: int, out: Any) -> Any:
    return _rsnorm.gpu_softmax_backward(grad_out, y, axis, True, out)


# Cross-entropy's class indices stay on the host (device arrays hold floats; a batch's indices are
# data like its inputs), probabilities are a device array; weights are a few host values.
_CE_HOST = {"target": "_either", "weight": "_host", "grad_out": "_either"}


# Each public op the GPU runs, with its binding (and the arguments that may be host values).
_BINDINGS: list[tuple[Any, ...]] = [
    (norm.layer_norm, _rsnorm.gpu_layer_norm),
    (norm.rms_norm, _rsnorm.gpu_rms_norm),
    (norm.add_layer_norm, _rsnorm.gpu_add_layer_norm),
    (norm.add_rms_norm, _rsnorm.gpu_add_rms_norm),
    (norm.l2_normalize, _rsnorm.gpu_l2_normalize),
    (activation.softmax, _softmax),
    (activation.log_softmax, _log_softmax),
    (activation.softmax_backward, _softmax_backward),
    (activation.log_softmax_backward, _log_softmax_backward),
    (divergence.cross_entropy_with_logits, _rsnorm.gpu_cross_entropy, _CE_HOST),
    (divergence.cross_entropy_with_logits_backward, _rsnorm.gpu_cross_entropy_backward, _CE_HOST),
    (activation.selu, _rsnorm.gpu_selu),
    (activation.selu_backward, _rsnorm.gpu_selu_backward),
    (channels.group_norm, _rsnorm.gpu_group_norm),
    (channels.instance_norm, _rsnorm.gpu_instance_norm),
    (channels.batch_norm, _rsnorm.gpu_batch_norm),
    (norm.layer_norm_backward, _rsnorm.gpu_layer_norm_backward),
    (norm.rms_norm_backward, _rsnorm.gpu_rms_norm_backward),
    (norm.add_layer_norm_backward, _rsnorm.gpu_add_layer_norm_backward),
    (norm.add_rms_norm_backward, _rsnorm.gpu_add_rms_norm_backward),
    (channels.batch_norm_backward, _rsnorm.gpu_batch_norm_backward),
    (channels.group_norm_backward, _rsnorm.gpu_group_norm_backward),
    (channels.instance_norm_backward, _rsnorm.gpu_instance_norm_backward),
]

#: The ops the GPU runs, under the public names.
OPS = SimpleNamespace(**{entry[0].__name__: _device_op(*entry) for entry in _BINDINGS})


def _to_numpy(value: Any) -> Any:
    return value.numpy() if isinstance(value, Array) else value


_backend.register(Array, _backend.Backend("gpu", OPS, asarray, _to_numpy))
