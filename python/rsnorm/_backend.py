"""The backend seam: every public function is defined once (in Python, typed and documented) and runs
where its arrays live.

``@op`` wraps a public function. Its body is the implementation for host memory: NumPy arrays and
anything NumPy converts without computing (lists, scalars, objects with ``__array__``,
``__array_interface__`` or DLPack, e.g. PyTorch CPU tensors), which it hands to the Rust extension.
When an argument is an array type a backend registered (``register``), the call goes to that
backend's function of the same name instead. An array type that is lazy or device-resident and has no
registered backend (a dask array until ``rsnorm.dask`` is imported) raises ``TypeError`` naming what to
import: nothing is ever computed or copied to the host behind the caller's back.

The wrapper also holds the error contract: every ``TypeError``/``ValueError`` names the function, and
an out-of-range Python int is a ``ValueError`` naming the argument (see ``_errors``).
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import numpy as np

from . import _errors

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Backend:
    """Where arrays of some type are computed.

    ``ops`` holds the backend's implementations under the public names (a module, usually); a
    function it lacks raises ``TypeError``. ``asarray`` and ``to_numpy`` move NumPy arrays in and
    out: the test suite runs every parity test through them once per backend.
    """

    name: str
    ops: Any
    asarray: Callable[[Any], Any]
    to_numpy: Callable[[Any], Any]


def _identity(x: Any) -> Any:
    return x


#: The host backend: the public functions' own bodies (NumPy in, the Rust extension computing).
NUMPY = Backend("numpy", None, np.asarray, _identity)

# Array types known to be lazy or device-resident, by the top-level package defining them, with
# what to do about them. np.asarray would compute a dask graph into memory, or copy device memory.
_UNREGISTERED = {
    "dask": "import rsnorm.dask to run on the chunks (its backend registers itself), or pass "
    "x.compute() to compute the array into memory first",
    "cupy": "copy it to the host with x.get(), or to an rsnorm.gpu array with rsnorm.gpu.asarray(x.get())",
}

_registered: dict[type, Backend] = {}
# Resolution by exact type, filled on first sight: a Backend, None for host memory, or the
# message of a refused type (str). Cleared when a backend registers.
_resolved: dict[type, Backend | str | None] = {}
# Types that are host memory without looking further (the arguments of nearly every call).
_PLAIN = frozenset(
    {np.ndarray, type(None), bool, int, float, str, np.float16, np.float32, np.float64, np.int64, np.bool_}
)


def register(array_type: type, backend: Backend) -> None:
    """Sends calls with ``array_type`` arguments (and subclasses) to ``backend``."""
    _registered[array_type] = backend
    _resolved.clear()


def backends() -> list[Backend]:
    """The host backend and every registered one, in registration order."""
    seen = [NUMPY]
    for backend in _registered.values():
        if backend not in seen:
            seen.append(backend)
    return seen


def _resolve(kind: type) -> Backend | str | None:
    found = _resolved.get(kind, False)
    if found is not False:
        return found  # type: ignore[return-value]
    result: Backend | str | None = None
    for base in kind.__mro__:
        if base in _registered:
            result = _registered[base]
            break
    else:
        package = (getattr(kind, "__module__", None) or "").partition(".")[0]
        hint = _UNREGISTERED.get(package)
        if hint is not None:
            result = f"{kind.__module__}.{kind.__qualname__} has no rsnorm backend registered: {hint}"
    _resolved[kind] = result
    return result


def _backend_of(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Backend | None:
    """The backend of the call's arrays: None for host memory. Looks one level into lists and tuples
    (moments tuples, lists of arrays)."""
    found: Backend | None = None
    for value in (*args, *kwargs.values()):
        for item in value if type(value) in (list, tuple) else (value,):
            kind = type(item)
            if kind in _PLAIN:
                continue
            backend = _resolve(kind)
            if isinstance(backend, str):
                raise TypeError(f"{fn.__name__}: argument '{_name_of(fn, args, kwargs, value)}': {backend}")
            if backend is not None and found is not None and backend is not found:
                raise TypeError(
                    f"{fn.__name__}: arrays of two backends in one call ({found.name} and {backend.name}, "
                    f"argument '{_name_of(fn, args, kwargs, value)}'); move them to one first"
                )
            found = backend or found
    return found


def _name_of(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any], value: Any) -> str:
    """The parameter ``value`` was passed as (for messages only: it inspects the signature)."""
    names = [n for n, v in _errors.bound_arguments(fn, args, kwargs).items() if v is value]
    return names[0] if names else "?"


def _foreign_call(
    fn: Callable[..., Any], backend: Backend, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> Any:
    impl = getattr(backend.ops, fn.__name__, None)
    if impl is None:
        raise TypeError(f"the {backend.name} backend has no {fn.__name__}")
    return impl(*args, **kwargs)


def _route(fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    """A call with an argument that is not plainly host memory: to its backend, or to ``fn``."""
    backend = _backend_of(fn, args, kwargs)
    if backend is None:
        return fn(*args, **kwargs)
    return _foreign_call(fn, backend, args, kwargs)


# The dispatcher ``op`` compiles for a public function, with the function's own parameters. A
# generic ``def call(*args, **kwargs)`` forwarding with ``fn(*args, **kwargs)`` measured 0.35 µs more
# per call than a call with named parameters (which Python 3.11 runs without a C-level frame): a third
# of the time of layer_norm on (1, 64). The same reason has dataclasses compile their __init__.
_DISPATCHER = """
def {name}({parameters}):
    try:
        if {host_check}:
            return _impl({arguments})
        return _route(_impl, ({positional}), {{{keywords}}})
    except (OverflowError, TypeError, ValueError) as exc:
        renamed = _contract_error(_impl, ({positional}), {{{keywords}}}, exc)
        if renamed is None:
            raise
        raise renamed from None
"""


def op(fn: F) -> F:
    """The public function ``fn`` (its body: the host implementation), dispatched on the types of
    its array parameters (those annotated ``ArrayLike``/``Array``) and held to the error contract."""
    params = list(inspect.signature(fn).parameters.values())
    positional = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    keyword = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    if len(positional) + len(keyword) != len(params):
        raise TypeError(f"op: {fn.__name__} may have positional-or-keyword and keyword-only parameters only")
    arrays = [p.name for p in params if "Array" in str(p.annotation)]
    source = _DISPATCHER.format(
        name=fn.__name__,
        parameters=", ".join(positional + (["*", *keyword] if keyword else [])),
        # ndarray first by identity: 35 ns less per (1, 64) LayerNorm than four set lookups.
        host_check=" and ".join(f"(type({a}) is _NDARRAY or type({a}) in _PLAIN)" for a in arrays) or "True",
        arguments=", ".join(positional + [f"{k}={k}" for k in keyword]),
        positional="".join(f"{a}, " for a in positional),
        keywords=", ".join(f"{k!r}: {k}" for k in keyword),
    )
    namespace: dict[str, Any] = {
        "_impl": fn,
        "_PLAIN": _PLAIN,
        "_NDARRAY": np.ndarray,
        "_route": _route,
        "_contract_error": _errors.contract_error,
    }
    exec(compile(source, f"<rsnorm dispatcher of {fn.__name__}>", "exec"), namespace)
    dispatcher: types.FunctionType = namespace[fn.__name__]
    dispatcher.__defaults__ = fn.__defaults__  # type: ignore[attr-defined]
    dispatcher.__kwdefaults__ = fn.__kwdefaults__  # type: ignore[attr-defined]
    return cast(F, functools.update_wrapper(dispatcher, fn))


def host_array(where: str, name: str, value: Any) -> np.ndarray[Any, Any]:
    """``np.asarray(value)`` for code that computes in NumPy itself (layers, optimizers), after
    refusing arrays of other backends with the same ``TypeError`` the public functions raise."""
    if type(value) not in _PLAIN:
        backend = _resolve(type(value))
        if isinstance(backend, str):
            raise TypeError(f"{where}: argument '{name}': {backend}")
        if backend is not None:
            raise TypeError(
                f"{where}: argument '{name}' is a {backend.name} array; {where} computes on NumPy arrays"
            )
    return np.asarray(value)
