"""Shared fixtures: float64 references, recorded PyTorch cases, array layouts."""

from __future__ import annotations

import importlib
import json
import os
import shlex
import sys
import types
from pathlib import Path
from typing import Any

import boxed  # noqa: F401  (registers the toy backend the parity tests also run on)
import numpy as np
import pytest

import rsnorm
from rsnorm import _backend

# The interpreter tests start in subprocesses: this one, or the command in RSNORM_TEST_PYTHON when the
# suite itself runs under emulation (scripts/build_wheels.sh --aarch64-python: "qemu-aarch64 -L ...").
PYTHON = shlex.split(os.environ.get("RSNORM_TEST_PYTHON", "")) or [sys.executable]

# Backends that register themselves when imported, where they are installed and usable.
for _module in ("rsnorm.gpu", "rsnorm.dask"):
    try:
        importlib.import_module(_module)
    except ImportError:
        pass

DATA = Path(__file__).parent / "data"

FLOAT_DTYPES = [np.float16, np.float32, np.float64]
# Tolerance of a result against a float64 reference, by dtype.
TOL = {np.float16: 2e-2, np.float32: 2e-5, np.float64: 1e-12}


def layer_norm_ref(x, k=1, weight=None, bias=None, eps=1e-5):
    """Textbook LayerNorm in float64 over the last k dims."""
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(range(x.ndim - k, x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + eps)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64)
    if bias is not None:
        y = y + np.asarray(bias, dtype=np.float64)
    return y


def rms_norm_ref(x, k=1, weight=None, eps=1e-6):
    """Textbook RMSNorm in float64 over the last k dims."""
    x = np.asarray(x, dtype=np.float64)
    axes = tuple(range(x.ndim - k, x.ndim))
    y = x / np.sqrt((x**2).mean(axis=axes, keepdims=True) + eps)
    if weight is not None:
        y = y * np.asarray(weight, dtype=np.float64)
    return y


def golden_cases(*ops):
    """Recorded PyTorch/SciPy cases (tests/data, copied from the project's golden set) of these ops."""
    manifest = json.loads((DATA / "manifest.json").read_text())
    data = np.load(DATA / "cases.npz")
    cases = []
    for case in manifest["cases"]:
        if case["op"] in ops:
            inputs = {k: (None if v is None else data[v]) for k, v in case["inputs"].items()}
            expected = {k: data[v] for k, v in case["expected"].items()}
            cases.append(pytest.param(case, inputs, expected, id=case["id"]))
    return cases


def layouts(x):
    """The same values as x in several memory layouts: C, Fortran, a strided view, reversed."""
    yield "C", np.ascontiguousarray(x)
    yield "F", np.asfortranarray(x)
    padded = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), dtype=x.dtype)
    padded[..., ::2] = x
    yield "strided", padded[..., ::2]
    rev = np.ascontiguousarray(x[..., ::-1])
    yield "negative", rev[..., ::-1]
    if x.ndim >= 2:
        yield "transposed", np.ascontiguousarray(np.swapaxes(x, -1, -2)).swapaxes(-1, -2)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def pytest_addoption(parser):
    parser.addoption(
        "--fuzz-calls",
        type=int,
        default=int(os.environ.get("RSNORM_FUZZ_CALLS", "20000")),
        help="calls the fuzz campaign makes (env RSNORM_FUZZ_CALLS; default 20000)",
    )
    parser.addoption("--fuzz-seed", type=int, default=int(os.environ.get("RSNORM_FUZZ_SEED", "1")))


@pytest.fixture
def fuzz_calls(request):
    return request.config.getoption("--fuzz-calls")


@pytest.fixture
def fuzz_seed(request):
    return request.config.getoption("--fuzz-seed")


class OnBackend:
    """``rsnorm`` as seen from one backend: each public function takes the test's NumPy arrays, runs
    on copies moved to the backend, and returns NumPy results. Arrays the function updates in place
    (running statistics, ``out``) are copied back."""

    def __init__(self, backend: _backend.Backend) -> None:
        self.backend = backend

    def __getattr__(self, name: str) -> Any:
        fn = getattr(rsnorm, name)
        if not isinstance(fn, types.FunctionType) or not hasattr(fn, "__wrapped__"):
            return fn  # not an op on arrays (set_num_threads, classes, modules)
        backend = self.backend

        def on_backend(*args: Any, **kwargs: Any) -> Any:
            moved: list[tuple[np.ndarray, Any]] = []

            def to(value: Any) -> Any:
                if isinstance(value, np.ndarray) and value.dtype.kind in "iu" and backend.name == "gpu":
                    return value  # class indices: rsnorm.gpu holds floats and takes them from the host
                if isinstance(value, np.ndarray):
                    try:
                        moved.append((value, backend.asarray(value)))
                    except TypeError as exc:
                        # An adapter without SHADER_F16/F64 (lavapipe on a CPU without F16C, as
                        # under qemu -cpu Nehalem): the dtype is not on this device.
                        if "cannot compute with" not in str(exc):
                            raise
                        pytest.skip(f"not on this {backend.name} adapter: {exc}")
                    return moved[-1][1]
                return value

            arrays = any(isinstance(v, np.ndarray) for v in (*args, *kwargs.values()))
            if arrays and backend.ops is not None and not hasattr(backend.ops, name):
                pytest.skip(f"{name} is not on the {backend.name} backend")
            args = tuple(to(a) for a in args)
            kwargs = {k: to(v) for k, v in kwargs.items()}
            try:
                result = fn(*args, **kwargs)
            except rsnorm.InPlaceError as exc:
                pytest.skip(f"not on the {backend.name} backend: {exc}")
            for host, there in moved:
                if host.flags.writeable and there is not host:
                    host[...] = backend.to_numpy(there)
            return back(result, moved)

        def back(value: Any, moved: list[tuple[np.ndarray, Any]]) -> Any:
            if isinstance(value, tuple):
                return tuple(back(v, moved) for v in value)
            # A backend array the call was given (out=, in place) stands for its host array.
            for host, there in moved:
                if value is there:
                    return host
            return backend.to_numpy(value)

        setattr(self, name, on_backend)  # one function per name, as a module has
        return on_backend


class _Cluster:
    """One ``distributed.LocalCluster`` for the session (two worker processes, one thread each, on
    127.0.0.1), started on first use and shut down when the tests end. Results come back with a
    timeout, so a hang fails a test instead of the job."""

    TIMEOUT = 120
    client: Any = None

    @classmethod
    def available(cls) -> bool:
        if os.environ.get("RSNORM_TEST_CLUSTER") == "0":
            return False
        try:
            import distributed  # noqa: F401

            import rsnorm.dask  # noqa: F401
        except ImportError:
            return False
        return True

    @classmethod
    def get(cls) -> Any:
        if cls.client is None:
            import distributed

            cluster = distributed.LocalCluster(
                n_workers=2,
                threads_per_worker=1,
                processes=True,
                host="127.0.0.1",
                dashboard_address=":0",
                silence_logs=40,
            )
            cls.client = distributed.Client(cluster, set_as_default=False)
        return cls.client

    @classmethod
    def close(cls) -> None:
        if cls.client is not None:
            cluster = cls.client.cluster
            cls.client.close()
            cluster.close()
            cls.client = None

    @classmethod
    def fetch(cls, value: Any) -> Any:
        import dask.array as da

        if isinstance(value, da.Array):
            return cls.get().compute(value).result(timeout=cls.TIMEOUT)
        return value

    @classmethod
    def backend(cls) -> _backend.Backend:
        dask_backend = next(b for b in _backend.backends() if b.name == "dask")
        return _backend.Backend("dask-cluster", dask_backend.ops, dask_backend.asarray, cls.fetch)


def pytest_sessionfinish(session, exitstatus):
    _Cluster.close()


@pytest.fixture(scope="session")
def cluster_client():
    """The session's LocalCluster client (see ``_Cluster``)."""
    if not _Cluster.available():
        pytest.skip("dask.distributed is not installed (or RSNORM_TEST_CLUSTER=0)")
    return _Cluster.get()


def cluster_fetch(*arrays):
    """Each dask array computed on the session's cluster, with a timeout."""
    return [_Cluster.fetch(a) for a in arrays]


_BACKENDS = [b.name for b in _backend.backends()] + (["dask-cluster"] if _Cluster.available() else [])


@pytest.fixture(scope="session", params=_BACKENDS)
def rn(request):
    """The public API on each available backend (NumPy: the rsnorm module itself). A parity test
    that takes this fixture runs once per backend, so a new backend inherits it."""
    if request.param == "dask-cluster":
        return OnBackend(_Cluster.backend())
    backend = next(b for b in _backend.backends() if b.name == request.param)
    if backend.name == "gpu" and not rsnorm.gpu.is_available():
        if os.environ.get("RSNORM_REQUIRE_GPU") == "1":
            pytest.fail("RSNORM_REQUIRE_GPU=1 but rsnorm.gpu has no adapter")
        pytest.skip("no GPU adapter (rsnorm.gpu.is_available() is False)")
    return rsnorm if backend is _backend.NUMPY else OnBackend(backend)


def lrn_ref(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """PyTorch's LRN in float64: zero-padded channel window, alpha divided by size."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[1]
    sq = x**2
    div = np.zeros_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        div[:, ch] = sq[:, lo : hi + 1].sum(axis=1)
    return x / (k + alpha / size * div) ** beta
