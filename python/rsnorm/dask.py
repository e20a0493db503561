"""rsnorm on Dask arrays: the same calls, lazy, on chunked data larger than memory or one machine.

Importing this module registers a backend for ``dask.array.Array``: ``rsnorm.layer_norm(dx)`` on a
dask array returns a dask array, and nothing is computed until the caller computes it.

- Row ops (``layer_norm``, ``rms_norm``, the fused ``add_layer_norm`` / ``add_rms_norm``,
  ``l2_normalize``, ``normalize``, ``softmax``, ``log_softmax`` and their backward, the information
  measures ``entropy``,
  ``kl_div``, ``cross_entropy``, ``js_divergence``, ``js_distance``) run chunk by chunk with rsnorm's
  kernels when each row lies in one chunk. When rows span chunks (and for ``return_stats``) they run
  in two phases: exact per-row statistics merged over the chunks as a tree (moments; for softmax the (max,
  Σexp) pairs; for the measures the row sums), then the normalization, lazily — never a rechunk or a
  full compute behind the caller's back. ``local_response_norm`` reads a halo of channels from the
  neighbouring chunks (``map_overlap``); ``cross_entropy_with_logits`` computes each sample's loss in
  its block (a sample's classes split over chunks is a ``ValueError`` naming the ``rechunk``).
- ``selu`` chunk by chunk; ``group_norm`` and ``instance_norm`` chunk by chunk when a sample lies in
  one chunk, otherwise in two phases (exact moments per (sample, group)); ``batch_norm`` and
  ``instance_norm`` with running statistics follow any chunking of the channel axis;
  ``batch_norm(training=True)`` normalizes with the exact statistics of the whole array, and
  ``fit_batch_norm`` computes a training set's population statistics for a layer.
- Global statistics: ``moments(x, axis)`` and ``partial_moments`` give lazy float64 statistics, each
  chunk's by rsnorm's exact kernel, merged as a tree (``split_every`` partials per node, each node in
  one Rust call) — exact where ``dask.array.var`` accumulates in the input dtype. ``mean_var(x, axis,
  ddof)`` gives the mean and variance.
- ``limit_threads(client)`` shares each host's cores between its workers' Dask threads and rsnorm's.

Arrays a dask op would update in place (``out=``, running statistics in training) are not taken:
dask arrays are immutable and the statistics lazy, so those calls raise ``rsnorm.InPlaceError`` (a
``TypeError``) naming the alternative.
Parameters (weight, bias, running statistics) may be dask arrays: they are a row or a channel
vector, and are computed when the call is made.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from types import SimpleNamespace
from typing import Any, cast

import dask.array as da
import numpy as np

from . import _backend, _errors, activation, channels, divergence, norm, statistics

__all__ = [
    "StandardScaler",
    "ThreadLimit",
    "fit_batch_norm",
    "limit_threads",
    "mean_var",
    "moments",
    "partial_moments",
]


def _axes(ndim: int, axis: int | Sequence[int] | None) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    items = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    resolved = []
    for a in items:
        if not -ndim <= int(a) < ndim:
            raise ValueError(f"moments: axis {a} is out of range for an array of {ndim} dims")
        resolved.append(int(a) % ndim)
    if len(set(resolved)) != len(resolved):
        raise ValueError(f"moments: axis {axis} repeats an axis")
    return tuple(sorted(resolved))


def _flatten(parts: Any) -> list[Any]:
    if isinstance(parts, list):
        return [p for item in parts for p in _flatten(item)]
    return [parts]


def _chunk_moments(x: np.ndarray, axis: tuple[int, ...], keepdims: bool, **_: Any) -> np.ndarray:
    return statistics.partial_moments(x, axis)


def _merge(parts: Any, axis: tuple[int, ...] = (), keepdims: bool = False, **_: Any) -> np.ndarray:
    """One node of the tree: every partial under it merged at once (in Rust, as a tree)."""
    return statistics.merge_partials(_flatten(parts))


def _aggregate(parts: Any, axis: tuple[int, ...] = (), keepdims: bool = False, **_: Any) -> np.ndarray:
    out = _merge(parts)
    if keepdims:
        for a in axis:
            out = np.expand_dims(out, a)
    return out


def partial_moments(
    x: da.Array, axis: int | Sequence[int] | None = None, *, split_every: int | None = None
) -> da.Array:
    """Lazy ``rsnorm.MOMENTS`` records of ``x`` over ``axis`` (None: all), as
    ``rsnorm.partial_moments`` gives for the whole array: each chunk's partials (float32 summed in
    float64 as read), merged as a tree of ``split_every`` partials per node, each node's in one
    Rust call. One array: compute it to read the data once."""
    if not isinstance(x, da.Array):
        x = da.asarray(x)
    axes = _axes(x.ndim, axis)
    # Reduced with keepdims and indexed down after: dask < 2024.9 (the last for Python 3.9) makes a
    # 0-d result's meta with meta.sum(), which record dtypes lack.
    kept = da.reduction(
        x,
        _chunk_moments,
        _aggregate,
        axis=axes,
        keepdims=True,
        dtype=statistics.MOMENTS,
        combine=_merge,
        split_every=split_every,
        concatenate=False,
        meta=np.empty((0,) * x.ndim, dtype=statistics.MOMENTS),
    )
    return cast(da.Array, kept[tuple(0 if a in axes else slice(None) for a in range(x.ndim))])


def moments(
    x: da.Array, axis: int | Sequence[int] | None = None, *, split_every: int | None = None
) -> tuple[da.Array, da.Array, da.Array]:
    """Lazy ``(count, mean, m2)`` of ``x`` over ``axis`` (None: all), in float64, as
    ``rsnorm.moments`` gives for the whole array: each chunk's moments, merged as a tree of
    ``split_every`` partials per node. The three arrays share one graph: compute them together
    (``dask.compute(*moments(x))``) to read the data once."""
    stats = partial_moments(x, axis, split_every=split_every)
    return stats["count"], stats["mean"], stats["m2"]


def mean_var(
    x: da.Array, axis: int | Sequence[int] | None = None, ddof: int = 0, *, split_every: int | None = None
) -> tuple[da.Array, da.Array]:
    """Lazy float64 mean and variance (``m2 / (count - ddof)``) of ``x`` over ``axis``, exact."""
    count, mean, m2 = moments(x, axis, split_every=split_every)
    return mean, m2 / (count - ddof)


class StandardScaler:
    """Feature standardization in the manner of scikit-learn's ``StandardScaler`` — ``fit``,
    ``partial_fit``, ``transform``, ``inverse_transform``, ``fit_transform``; ``mean_``, ``var_`` (biased),
    ``scale_``, ``n_samples_seen_``, ``n_features_in_`` — on NumPy arrays and on dask arrays of any
    size. The statistics are rsnorm's exact float64 moments, merged over chunks and over
    ``partial_fit`` calls; ``fit`` on a dask array computes them (one pass), ``transform`` of a dask
    array is lazy. A feature whose variance is within rounding of zero gets scale 1, as in
    scikit-learn. Unlike scikit-learn, NaN is not skipped: a feature with NaN gets NaN statistics.
    """

    n_features_in_: int
    n_samples_seen_: int
    mean_: np.ndarray[Any, Any] | None
    var_: np.ndarray[Any, Any] | None
    scale_: np.ndarray[Any, Any] | None

    def __init__(self, *, copy: bool = True, with_mean: bool = True, with_std: bool = True) -> None:
        self.copy = copy
        self.with_mean = with_mean
        self.with_std = with_std

    def _reset(self) -> None:
        for name in ("mean_", "var_", "scale_", "n_samples_seen_", "n_features_in_", "_moments"):
            self.__dict__.pop(name, None)

    @staticmethod
    def _check(where: str, X: Any) -> Any:
        if not isinstance(X, da.Array):
            X = np.asarray(X)
            if X.dtype.kind not in "fiu":
                raise TypeError(f"StandardScaler.{where}: X has dtype {X.dtype}; expected numbers")
        if X.ndim != 2:
            raise ValueError(
                f"StandardScaler.{where}: X must be 2-D (n_samples, n_features), got shape {X.shape}"
            )
        return X

    def fit(self, X: Any, y: Any = None) -> StandardScaler:
        """The statistics of X (n_samples, n_features), replacing any earlier ones."""
        self._reset()
        return self.partial_fit(X)

    def partial_fit(self, X: Any, y: Any = None) -> StandardScaler:
        """Merges X's statistics into the ones seen so far (exactly: moments, not running means)."""
        import dask

        X = self._check("partial_fit", X)
        if hasattr(self, "n_features_in_") and X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"StandardScaler.partial_fit: X has {X.shape[1]} features, the scaler was fit on "
                f"{self.n_features_in_}"
            )
        if isinstance(X, da.Array):
            (new,) = dask.compute(partial_moments(X if X.dtype.kind == "f" else X.astype(np.float64), 0))
        else:
            new = statistics.partial_moments(X if X.dtype.kind == "f" else X.astype(np.float64), 0)
        previous: np.ndarray | None = getattr(self, "_moments", None)
        merged = new if previous is None else statistics.merge_partials([previous, new])
        self._moments: np.ndarray = merged
        count, mean, m2 = merged["count"], merged["mean"], merged["m2"]
        self.n_features_in_ = X.shape[1]
        self.n_samples_seen_ = int(count.flat[0]) if count.size else 0
        if not (self.with_mean or self.with_std):
            self.mean_ = self.var_ = self.scale_ = None
            return self
        self.mean_ = mean.astype(np.float64)
        if not self.with_std:
            self.var_ = self.scale_ = None
            return self
        with np.errstate(invalid="ignore", divide="ignore"):
            self.var_ = m2 / count
        # scikit-learn's bound on the rounding error of a two-pass variance: within it the feature
        # is constant and keeps scale 1.
        eps = np.finfo(np.float64).eps
        constant = self.var_ <= count * eps * self.var_ + (count * self.mean_ * eps) ** 2
        self.scale_ = np.where(constant, 1.0, np.sqrt(self.var_))
        return self

    def _fitted(self, where: str, X: Any) -> Any:
        if not hasattr(self, "n_features_in_"):
            raise ValueError(f"StandardScaler.{where}: the scaler is not fitted yet; call fit first")
        X = self._check(where, X)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"StandardScaler.{where}: X has {X.shape[1]} features, the scaler was fit on "
                f"{self.n_features_in_}"
            )
        return X

    @staticmethod
    def _out_dtype(X: Any) -> np.dtype[Any]:
        return X.dtype if X.dtype.kind == "f" else np.dtype(np.float64)

    def transform(self, X: Any, copy: bool | None = None) -> Any:
        """(X - mean_) / scale_ (each part as with_mean, with_std say), in X's float dtype: one pass
        of ``rsnorm.apply_statistics`` per chunk."""
        X = self._fitted("transform", X)
        X = X.astype(self._out_dtype(X), copy=False)
        n = self.n_features_in_
        mean = self.mean_ if self.with_mean else np.zeros(n)
        scale = 1.0 / cast(np.ndarray, self.scale_) if self.with_std else np.ones(n)

        def apply(blk: np.ndarray, mean: Any, scale: Any) -> np.ndarray:
            return statistics.apply_statistics(blk, mean, scale, axis=0)

        if isinstance(X, da.Array):
            return _by_channel(X, 1, apply, [mean, scale])
        return apply(X, mean, scale)

    def inverse_transform(self, X: Any, copy: bool | None = None) -> Any:
        """X · scale_ + mean_: the inverse of ``transform``."""
        X = self._fitted("inverse_transform", X)
        dtype = self._out_dtype(X)
        y = X.astype(np.float64)
        if self.with_std:
            y = y * self.scale_
        if self.with_mean:
            y = y + self.mean_
        return y.astype(dtype)

    def fit_transform(self, X: Any, y: Any = None) -> Any:
        return self.fit(X).transform(X)


# ---- the backend: the public ops on dask arrays ----


def _host(op: str, name: str, value: Any) -> Any:
    """A parameter (weight, bias, running statistics): NumPy as is, a dask array computed — it is
    the size of one row or one channel vector, never the data."""
    if isinstance(value, da.Array):
        return value.compute()
    return value


def _refuse(op: str, **given: Any) -> None:
    """Arguments a call would write in place: a dask array is immutable and its statistics lazy."""
    for name, value in given.items():
        if value is not None and value is not False:
            instead = (
                "the result is a new dask array — dask.array.store(y, target) writes it into any array"
                if name in ("out", "residual_out")
                else "running statistics come from rsnorm.dask.fit_batch_norm(x), computed explicitly"
            )
            raise _errors.InPlaceError(
                f"{op}: {name} would be written in place, which a dask array cannot be (it is immutable "
                f"and lazy); {instead}"
            )


def _blocks(fn: Callable[[np.ndarray], np.ndarray], x: da.Array) -> da.Array:
    return cast(da.Array, da.map_blocks(fn, x, dtype=x.dtype, meta=np.empty((0,) * x.ndim, dtype=x.dtype)))


def _inner(x: da.Array, normalized_shape: Any) -> list[int]:
    k = (
        1
        if normalized_shape is None or isinstance(normalized_shape, (int, np.integer))
        else len(normalized_shape)
    )
    return list(range(x.ndim - k, x.ndim))


def _split(x: da.Array, axes: Sequence[int]) -> bool:
    return any(len(x.chunks[a]) > 1 for a in axes)


def _probe(fn: Callable[[np.ndarray], Any], x: da.Array, axes: Sequence[int]) -> None:
    """Runs ``fn`` on one zero row of x's normalized shape, so a bad argument (normalized_shape,
    weight's shape, eps) is an error of the call, not of a later compute."""
    shape = tuple(n if i in axes else min(n, 1) for i, n in enumerate(x.shape))
    if int(np.prod(shape)) <= 1 << 22:
        fn(np.zeros(shape, dtype=x.dtype))


def _compute_dtype(dtype: np.dtype[Any]) -> np.dtype[Any]:
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _row_statistics(x: da.Array, axes: list[int]) -> tuple[da.Array, da.Array]:
    """Per row over ``axes`` (the trailing ones): the float64 mean and biased variance, keeping the
    reduced dims as ones so they broadcast against x."""
    count, mean, m2 = moments(x, axes)
    keep = (Ellipsis, *([None] * len(axes)))
    return mean[keep], (m2 / count)[keep]


def _rounded(param: Any, dtype: np.dtype[Any]) -> Any:
    """A weight or bias rounded through x's dtype, as the CPU kernels take it, in float64."""
    return None if param is None else np.asarray(param).astype(dtype).astype(np.float64)


def _apply(x: da.Array, centered: da.Array, w: Any, b: Any, dtype: np.dtype[Any]) -> da.Array:
    if w is not None:
        centered = centered * _rounded(w, dtype)
    if b is not None:
        centered = centered + _rounded(b, dtype)
    return centered.astype(dtype)


def _layer_norm(
    x: Any,
    normalized_shape: Any = None,
    weight: Any = None,
    bias: Any = None,
    eps: float = 1e-5,
    *,
    out: Any = None,
    return_stats: bool = False,
) -> Any:
    """Chunk by chunk when each row lies in one chunk; otherwise (and for the statistics) in two
    phases: exact row moments as a tree, then the normalization, lazily."""
    _refuse("layer_norm", out=out)
    axes = _inner(x, normalized_shape)
    w, b = _host("layer_norm", "weight", weight), _host("layer_norm", "bias", bias)
    _probe(lambda blk: norm.layer_norm(blk, normalized_shape, w, b, eps), x, axes)
    if not _split(x, axes) and not return_stats:
        return _blocks(lambda blk: norm.layer_norm(blk, normalized_shape, w, b, eps), x)
    mean, var = _row_statistics(x, axes)
    rstd = 1.0 / da.sqrt(var + eps)
    y = _apply(x, (x.astype(np.float64) - mean) * rstd, w, b, x.dtype)
    if not return_stats:
        return y
    compute = _compute_dtype(x.dtype)
    return y, mean.astype(compute), rstd.astype(compute)


def _rms_norm(
    x: Any,
    normalized_shape: Any = None,
    weight: Any = None,
    eps: float | None = None,
    *,
    out: Any = None,
    return_stats: bool = False,
) -> Any:
    _refuse("rms_norm", out=out)
    axes = _inner(x, normalized_shape)
    w = _host("rms_norm", "weight", weight)
    _probe(lambda blk: norm.rms_norm(blk, normalized_shape, w, eps), x, axes)
    if not _split(x, axes) and not return_stats:
        return _blocks(lambda blk: norm.rms_norm(blk, normalized_shape, w, eps), x)
    mean, var = _row_statistics(x, axes)
    eps_value = float(np.finfo(x.dtype).eps) if eps is None else eps
    rstd = 1.0 / da.sqrt(var + mean * mean + eps_value)  # mean of squares = var + mean²
    y = _apply(x, x.astype(np.float64) * rstd, w, None, x.dtype)
    return (y, rstd.astype(_compute_dtype(x.dtype))) if return_stats else y


def _l2_normalize(x: Any, eps: float = 1e-12, *, out: Any = None) -> Any:
    _refuse("l2_normalize", out=out)
    axes = [x.ndim - 1]
    _probe(lambda blk: norm.l2_normalize(blk, eps), x, axes)
    if not _split(x, axes):
        return _blocks(lambda blk: norm.l2_normalize(blk, eps), x)
    return _normalize(x, 2.0, -1, eps)


def _normalize(x: Any, p: float = 2.0, axis: int = -1, eps: float = 1e-12, *, out: Any = None) -> Any:
    _refuse("normalize", out=out)
    # The arguments' errors (p, axis, eps) now, from the CPU function, not at compute time.
    norm.normalize(np.zeros((1,) * x.ndim, dtype=x.dtype), p, axis, eps)
    ax = axis % x.ndim if x.ndim else 0
    if x.ndim == 0 or not _split(x, [ax]):
        return _blocks(lambda blk: norm.normalize(blk, p, axis, eps), x)
    # Slices across chunks: the norm as (max |x|)·(Σ (|x|/max)^p)^(1/p) in float64, as the kernel
    # computes it (no power overflows); an infinite or NaN max is the norm itself.
    x64 = x.astype(np.float64)
    size = abs(x64)
    top = size.max(axis=ax, keepdims=True)
    if p == np.inf:
        length = top
    else:
        usable = da.isfinite(top) & (top > 0)
        scaled = (size / da.where(usable, top, 1.0)) ** p
        length = da.where(usable, top * scaled.sum(axis=ax, keepdims=True) ** (1.0 / p), top)
    # A zero slice (eps = 0) stays zeros, as the kernel leaves it.
    divisor = da.maximum(length, eps)
    zero = divisor == 0
    return da.where(zero, 0.0, x64 / da.where(zero, 1.0, divisor)).astype(x.dtype)


_SOFTMAX = np.dtype([("max", np.float64), ("sum", np.float64)])


def _softmax_chunk(x: np.ndarray, axis: tuple[int, ...], keepdims: bool, **_: Any) -> np.ndarray:
    out = np.empty(np.delete(x.shape, axis), dtype=_SOFTMAX)
    if x.shape[axis[0]] == 0:
        out["max"], out["sum"] = -np.inf, 0.0
        return out
    m = np.max(x, axis=axis[0], keepdims=True).astype(np.float64)
    out["max"] = np.squeeze(m, axis[0])
    with np.errstate(invalid="ignore"):
        out["sum"] = np.exp(x.astype(np.float64) - np.where(np.isneginf(m), 0.0, m)).sum(axis=axis[0])
    return out


def _softmax_combine(parts: Any, **_: Any) -> np.ndarray:
    return _softmax_merge(parts)


def _softmax_merge(parts: Any, axis: tuple[int, ...] = (), keepdims: bool = False, **_: Any) -> np.ndarray:
    flat = _flatten(parts)
    m = np.max([p["max"] for p in flat], axis=0)
    safe = np.where(np.isneginf(m), 0.0, m)
    with np.errstate(invalid="ignore"):
        total = sum(
            p["sum"] * np.exp(np.where(np.isneginf(p["max"]), -np.inf, p["max"] - safe)) for p in flat
        )
    out = np.empty(np.shape(m), dtype=_SOFTMAX)
    out["max"], out["sum"] = m, total
    if keepdims:
        out = np.expand_dims(out, axis[0])
    return out


def _softmax_apply(x: np.ndarray, pairs: np.ndarray, log: bool) -> np.ndarray:
    """A block's softmax from its rows' merged (max, Σexp) pairs, in float64; rows of -inf or with
    +inf give NaN, as on one machine, without NumPy's warnings."""
    with np.errstate(invalid="ignore", divide="ignore"):
        shifted = x.astype(np.float64) - pairs["max"]
        y = shifted - np.log(pairs["sum"]) if log else np.exp(shifted) / pairs["sum"]
    return y.astype(x.dtype)


def _softmax_like(op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    log = op == "log_softmax"

    def call(x: Any, axis: int = -1, *, out: Any = None) -> Any:
        _refuse(op, out=out)
        if x.ndim and not -x.ndim <= axis < x.ndim:
            raise ValueError(f"{op}: axis {axis} is out of range for an array of {x.ndim} dims")
        axes = [axis % x.ndim] if x.ndim else []
        _probe(lambda blk: fn(blk, axis), x, axes)
        if not _split(x, axes):
            return _blocks(lambda blk: fn(blk, axis), x)
        # Two phases: the (max, Σexp(x - max)) of each row merged over its chunks, then the values.
        (a,) = axes
        pairs = da.reduction(
            x,
            _softmax_chunk,
            _softmax_merge,
            axis=a,
            keepdims=True,
            dtype=_SOFTMAX,
            combine=_softmax_combine,
            concatenate=False,
            meta=np.empty((0,) * x.ndim, dtype=_SOFTMAX),
        )
        meta = np.empty((0,) * x.ndim, dtype=x.dtype)
        return cast(da.Array, da.map_blocks(_softmax_apply, x, pairs, log=log, dtype=x.dtype, meta=meta))

    call.__name__ = op
    return call


def _softmax_backward_like(op: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """softmax_backward / log_softmax_backward: chunk by chunk when each row lies in one chunk (of the
    same chunks in both arrays); otherwise each row's Σ grad·y (or Σ grad) over its chunks in float64,
    then each element's gradient from it."""
    log = op == "log_softmax_backward"

    def call(grad_out: Any, y: Any, axis: int = -1, *, out: Any = None) -> Any:
        _refuse(op, out=out)
        g, y = da.asarray(grad_out), da.asarray(y)
        fn(np.zeros((1,) * g.ndim, g.dtype), np.zeros((1,) * y.ndim, y.dtype), axis)  # checks at the call
        if g.shape != y.shape:
            raise ValueError(f"{op}: grad_out has shape {g.shape}, y has {y.shape}")
        axes = [axis % y.ndim] if y.ndim else []
        meta = np.empty((0,) * y.ndim, dtype=y.dtype)
        if not _split(y, axes) and g.chunks == y.chunks:
            return cast(da.Array, da.map_blocks(lambda a, b: fn(a, b, axis), g, y, dtype=y.dtype, meta=meta))
        (a,) = axes
        g64, y64 = g.astype(np.float64), y.astype(np.float64)
        if log:
            dx = g64 - da.exp(y64) * g64.sum(axis=a, keepdims=True)
        else:
            dx = y64 * (g64 - (g64 * y64).sum(axis=a, keepdims=True))
        return dx.astype(y.dtype)

    call.__name__ = op
    return call


def _selu(x: Any, *, out: Any = None) -> Any:
    _refuse("selu", out=out)
    return _blocks(activation.selu, x)


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
    """Chunk by chunk when each sample lies in one chunk; otherwise (and for the statistics) in two
    phases: exact moments of each (sample, group), then the normalization, lazily."""
    _refuse("group_norm", out=out)
    w, b = _host("group_norm", "weight", weight), _host("group_norm", "bias", bias)
    _probe(lambda blk: channels.group_norm(blk, num_groups, w, b, eps), x, range(1, x.ndim))
    if not _split(x, range(1, x.ndim)) and not return_stats:
        return _blocks(lambda blk: channels.group_norm(blk, num_groups, w, b, eps), x)
    mean, scale, shift, rstd = _sample_statistics(x, num_groups, w, b, eps)
    y = _apply_kept(x, [0, 1], mean, scale, shift)
    if not return_stats:
        return y
    compute = _compute_dtype(x.dtype)
    spread = x.shape[1] // num_groups
    return y, mean[:, ::spread].astype(compute), rstd.astype(compute)


def _channel_vectors(op: str, running_mean: Any, running_var: Any, weight: Any, bias: Any) -> list[Any]:
    """The per-channel vectors of a channel norm, each as ``_host`` takes it."""
    names = ("running_mean", "running_var", "weight", "bias")
    return [_host(op, n, v) for n, v in zip(names, (running_mean, running_var, weight, bias), strict=True)]


def _by_channel(x: da.Array, ax: int, fn: Callable[..., np.ndarray], vectors: list[Any]) -> da.Array:
    """``fn(block, *vectors cut to the block's channels)`` on each block: per-channel vectors (running
    statistics, weight, bias) follow the chunks along the channel axis ``ax``."""

    def block(blk: np.ndarray, block_info: Any = None) -> np.ndarray:
        lo, hi = block_info[0]["array-location"][ax]
        return fn(blk, *(None if v is None else np.asarray(v)[lo:hi] for v in vectors))

    return cast(da.Array, da.map_blocks(block, x, dtype=x.dtype, meta=np.empty((0,) * x.ndim, dtype=x.dtype)))


def _apply_statistics_block(blk: np.ndarray, mean: Any, scale: Any, shift: Any, axes: Any) -> np.ndarray:
    m, s, t = (np.squeeze(v, axis=axes) for v in (mean, scale, shift))
    return statistics.apply_statistics(blk, m, s, t, axes)


def _apply_kept(
    x: da.Array, kept: Sequence[int], mean: da.Array, scale: da.Array, shift: da.Array
) -> da.Array:
    """``rsnorm.apply_statistics`` on each block with the lazy statistics of its positions of the
    ``kept`` axes (each statistic shaped like x on those axes): the apply phase of two-phase
    statistics, one pass per chunk in x's dtype."""
    shape = [n if a in kept else 1 for a, n in enumerate(x.shape)]
    chunks = {a: x.chunks[a] for a in kept}

    def spread(v: Any) -> da.Array:
        return da.asarray(v).astype(np.float64).reshape(shape).rechunk(chunks)

    return cast(
        da.Array,
        da.map_blocks(
            _apply_statistics_block,
            x,
            spread(mean),
            spread(scale),
            spread(shift),
            axes=tuple(a for a in range(x.ndim) if a not in kept),
            dtype=x.dtype,
            meta=np.empty((0,) * x.ndim, dtype=x.dtype),
        ),
    )


def _sample_statistics(
    x: da.Array, groups: int, w: Any, b: Any, eps: float
) -> tuple[da.Array, da.Array, da.Array, da.Array]:
    """GroupNorm's two phases over any chunking: exact moments of every (sample, channel) over the
    spatial dims, merged within each group of channels (the (N, C) records are small: one chunk),
    then each (sample, channel)'s mean, scale and shift. Returns those (N, C) and the (N, G) rstd."""
    n, c = x.shape[:2]
    per_channel = partial_moments(x, tuple(range(2, x.ndim))).rechunk(-1)

    def by_group(records: np.ndarray) -> np.ndarray:
        return statistics.merge_partials(records.reshape(n, groups, c // groups), axis=2)

    grouped = per_channel.map_blocks(by_group, chunks=((n,), (groups,)), dtype=statistics.MOMENTS)
    rstd = 1.0 / da.sqrt(grouped["m2"] / grouped["count"] + eps)
    spread = c // groups
    mean = da.repeat(grouped["mean"], spread, axis=1)
    scale = da.repeat(rstd, spread, axis=1)
    if w is not None:
        scale = scale * _rounded(w, x.dtype)
    shift = da.zeros((n, c)) if b is None else da.broadcast_to(da.from_array(_rounded(b, x.dtype)), (n, c))
    return mean, scale, shift, rstd


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
    """With the input's statistics: chunk by chunk when each (sample, channel) lies in one chunk,
    otherwise (and for the statistics) in two phases, as GroupNorm with a group per channel. With
    running statistics (``use_input_stats=False``): each block with its channels'."""
    op = "instance_norm"
    _refuse(op, out=out)
    vectors = _channel_vectors(op, running_mean, running_var, weight, bias)
    if use_input_stats:
        _refuse(op, running_mean=running_mean, running_var=running_var)
        _, _, w, b = vectors
        probe = partial(channels.instance_norm, weight=w, bias=b, eps=eps)
        _probe(probe, x, range(1, x.ndim))
        if _split(x, range(2, x.ndim)) or return_stats:
            mean, scale, shift, rstd = _sample_statistics(x, x.shape[1], w, b, eps)
            y = _apply_kept(x, [0, 1], mean, scale, shift)
            if not return_stats:
                return y
            compute = _compute_dtype(x.dtype)
            return y, mean.astype(compute), rstd.astype(compute)

    def apply(blk: np.ndarray, rm: Any, rv: Any, w: Any, b: Any) -> np.ndarray:
        return channels.instance_norm(blk, rm, rv, w, b, use_input_stats, momentum, eps)

    y = _by_channel(x, 1, apply, vectors)
    if not return_stats:
        return y
    # The running statistics' mean and rstd, as the CPU gives them, for every sample.
    one = np.zeros((1, x.shape[1]) + (1,) * (x.ndim - 2), x.dtype)
    rm, rv, w, b = (None if v is None else np.array(v, copy=True) for v in vectors)
    _, mean, rstd = channels.instance_norm(one, rm, rv, w, b, False, momentum, eps, return_stats=True)
    n = x.shape[0]
    return y, np.repeat(mean, n, axis=0), np.repeat(rstd, n, axis=0)


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
    """With running statistics and not training: each block with its channels' statistics. Training
    (or no running statistics): normalized with the exact statistics of the whole array (merged over
    every chunk, as one machine's BatchNorm over the full batch), lazily; ``return_stats`` gives
    them. Running statistics are not updated in place (dask arrays are immutable, the statistics
    lazy): ``fit_batch_norm`` computes the population statistics to load into a layer."""
    op = "batch_norm"
    _refuse(op, out=out)
    if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
        raise ValueError(f"{op}: axis {axis} is out of range for x of shape {x.shape}")
    ax = axis % x.ndim
    vectors = _channel_vectors(op, running_mean, running_var, weight, bias)
    rm, rv, w, b = vectors
    # The argument checks run in eval mode on copies: a training call would update the running
    # statistics it is given, and one zero row is too few values per channel to train on.
    c = x.shape[ax]
    probe_rm = np.zeros(c, x.dtype) if rm is None else np.array(rm, copy=True)
    probe_rv = np.ones(c, x.dtype) if rv is None else np.array(rv, copy=True)

    def evaluate(blk: np.ndarray, **extra: Any) -> Any:
        """The CPU op in evaluation mode on those copies: the checks, and eval's statistics."""
        return channels.batch_norm(
            blk,
            probe_rm,
            probe_rv,
            w,
            b,
            False,
            momentum,
            eps,
            axis=ax,
            mean_only=mean_only,
            running_var_correction=running_var_correction,
            **extra,
        )

    _probe(lambda blk: evaluate(blk, num_batches_tracked=num_batches_tracked), x, [ax])
    batch_statistics = training or running_mean is None or (running_var is None and not mean_only)
    if batch_statistics:
        if training and running_mean is not None:
            raise _errors.InPlaceError(
                f"{op}: training on a dask array does not update running statistics in place (the "
                "array is lazy); normalize without them, or load rsnorm.dask.fit_batch_norm(x)'s into "
                "the layer"
            )
        others = tuple(a for a in range(x.ndim) if a != ax)
        stats = partial_moments(x, others)
        mean = stats["mean"]
        rstd = da.ones_like(mean) if mean_only else 1.0 / da.sqrt(stats["m2"] / stats["count"] + eps)
        scale = rstd if w is None else rstd * _rounded(w, x.dtype)
        shift = da.zeros_like(mean) if b is None else da.from_array(_rounded(b, x.dtype))
        y = _apply_kept(x, [ax], mean, scale, shift)
        if not return_stats:
            return y
        compute = _compute_dtype(x.dtype)
        return y, mean.astype(compute), rstd.astype(compute)

    def apply(blk: np.ndarray, rm: Any, rv: Any, w: Any, b: Any) -> np.ndarray:
        return channels.batch_norm(
            blk,
            rm,
            rv,
            w,
            b,
            False,
            momentum,
            eps,
            axis=ax,
            mean_only=mean_only,
            running_var_correction=running_var_correction,
        )

    y = _by_channel(x, ax, apply, vectors)
    if not return_stats:
        return y
    # Evaluation: the statistics are the running ones (as the CPU turns them into mean and rstd).
    one = np.zeros([c if a == ax else 1 for a in range(x.ndim)], x.dtype)
    _, mean, rstd = evaluate(one, return_stats=True)
    return y, mean, rstd


def fit_batch_norm(
    x: Any, axis: int = 1, *, ddof: int = 0, step_axis: int | None = None, split_every: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The population mean and variance (``m2 / (count - ddof)``) of each channel (``axis``) over a
    whole training set — a dask array of any size, or a NumPy one — computed exactly in float64, to
    load into ``nn.BatchNorm``'s ``running_mean`` and ``running_var``. With ``step_axis`` (the time
    axis of (T, N, C, ...) sequences), the statistics of each step: (T, C), for
    ``nn.SequenceBatchNorm``. Computes (reads the data once)."""
    import dask

    x = x if isinstance(x, da.Array) else da.asarray(x)
    for name, a in (("axis", axis), ("step_axis", step_axis)):
        if a is not None and not -x.ndim <= a < x.ndim:
            raise ValueError(f"fit_batch_norm: {name} {a} is out of range for x of shape {x.shape}")
    kept = [axis % x.ndim] if step_axis is None else [step_axis % x.ndim, axis % x.ndim]
    if len(set(kept)) != len(kept):
        raise ValueError(f"fit_batch_norm: axis {axis} and step_axis {step_axis} are the same axis")
    count, mean, m2 = dask.compute(
        *moments(x, [a for a in range(x.ndim) if a not in kept], split_every=split_every)
    )
    if kept[0] > kept[-1]:  # the statistics come in axis order; return them (step, channel)
        mean, m2, count = mean.T, m2.T, count.T
    return mean, m2 / (count - ddof)


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # dask without distributed: the plugin is only for clusters
    _WorkerPlugin = object  # type: ignore[misc,assignment]


class ThreadLimit(_WorkerPlugin):
    """A ``distributed`` worker plugin: rsnorm computes with ``threads`` threads in each worker
    process (default: the host's cores shared among its workers and their Dask threads, at least 1),
    so rsnorm threads × Dask threads per worker × workers per host stays within the cores instead
    of oversubscribing them (every worker process would otherwise start a pool of one thread per
    core). Register with ``limit_threads(client)`` or ``client.register_plugin(ThreadLimit())``."""

    name = "rsnorm-thread-limit"

    def __init__(self, threads: int | None = None, workers_per_host: dict[str, int] | None = None) -> None:
        if threads is not None and not 1 <= threads <= 1024:
            raise ValueError(f"ThreadLimit: threads must be 1 to 1024, got {threads}")
        self.threads = threads
        self.workers_per_host = dict(workers_per_host or {})

    def threads_for(self, host: str, dask_threads: int, cores: int) -> int:
        if self.threads is not None:
            return self.threads
        return max(1, cores // (max(dask_threads, 1) * self.workers_per_host.get(host, 1)))

    def setup(self, worker: Any) -> None:
        import os

        from . import set_num_threads

        host = str(worker.address).rsplit(":", 1)[0].split("://")[-1]
        set_num_threads(self.threads_for(host, worker.state.nthreads, os.cpu_count() or 1))


def limit_threads(client: Any, threads: int | None = None) -> dict[str, int]:
    """Registers ``ThreadLimit`` on the cluster's workers (those present and those that join) and
    returns each worker's rsnorm thread count."""
    from collections import Counter

    from . import get_num_threads

    workers = client.scheduler_info()["workers"].values()
    per_host = Counter(str(w["host"]) for w in workers)
    client.register_plugin(ThreadLimit(threads, dict(per_host)))
    return cast(dict[str, int], client.run(get_num_threads))


def _add_norm(op: str) -> Callable[..., Any]:
    """``add_layer_norm`` / ``add_rms_norm``: the residual stream ``x + residual`` (in x's dtype, as
    the CPU stores it), then the row norm of it — chunk by chunk or in two phases, as the norm."""
    norm_fn = _layer_norm if op == "add_layer_norm" else _rms_norm
    cpu = getattr(norm, op)

    def call(
        x: Any, residual: Any, *params: Any, out: Any = None, residual_out: Any = None, **kw: Any
    ) -> Any:
        _refuse(op, out=out, residual_out=residual_out)
        x, residual = da.asarray(x), da.asarray(residual)
        one = tuple(min(n, 1) for n in x.shape[:-1]) + x.shape[-1:]
        params = tuple(_host(op, "param", p) for p in params)
        kw = {k: _host(op, k, v) for k, v in kw.items()}
        cpu(np.zeros(one, x.dtype), np.zeros(one, residual.dtype), *params, **kw)  # checks at the call
        summed = x + residual
        shape = kw.pop("normalized_shape", None)
        normed = norm_fn(summed, shape, *params, **kw)
        return (normed[0], summed, *normed[1:]) if isinstance(normed, tuple) else (normed, summed)

    call.__name__ = op
    return call


def _lrn(
    x: Any, size: int, alpha: float = 1e-4, beta: float = 0.75, k: float = 1.0, *, out: Any = None
) -> Any:
    """Chunk by chunk; where channels span chunks, each block with a halo of ``size // 2`` channels
    from its neighbours (``map_overlap``), the window LRN reads."""
    _refuse("local_response_norm", out=out)
    _probe(lambda blk: norm.local_response_norm(blk, size, alpha, beta, k), x, [1] if x.ndim > 1 else [])

    def fn(blk: np.ndarray) -> np.ndarray:
        return norm.local_response_norm(blk, size, alpha, beta, k)

    if x.ndim < 2 or not _split(x, [1]):
        return _blocks(fn, x)
    depth = {a: (size // 2 if a == 1 else 0) for a in range(x.ndim)}
    if min(x.chunks[1]) < size // 2:  # the halo must come from the next chunk alone
        raise ValueError(
            f"local_response_norm: channel chunks of {min(x.chunks[1])} are narrower than the window's "
            f"half-width {size // 2}; rechunk axis 1 to chunks of at least {size // 2}"
        )
    return cast(da.Array, da.map_overlap(fn, x, depth=depth, boundary="none", dtype=x.dtype, meta=x._meta))


def _information(op: str) -> Callable[..., Any]:
    """The information measures over rows along ``axis``: chunk by chunk when each row lies in one
    chunk; otherwise two phases — each row's sums (the measures normalize p and q to sum 1, as
    SciPy), then each element's term in float64 summed over the row's chunks."""
    two = op != "entropy"
    with_base = op in ("entropy", "js_divergence", "js_distance")
    cpu = getattr(divergence, op)

    def term(u: np.ndarray, v: np.ndarray | None) -> np.ndarray:
        """Each element's share of the measure, from the normalized u = p/Σp (and v = q/Σq)."""
        if op == "entropy":
            return np.where(u > 0, -u * np.log(u), 0.0)
        assert v is not None
        if op == "kl_div":
            return np.where(u > 0, u * np.log(u / v), 0.0)
        if op == "cross_entropy":
            return np.where(u > 0, -u * np.log(v), 0.0)
        m = (u + v) / 2
        return np.where(u > 0, u * np.log(u / m), 0.0) / 2 + np.where(v > 0, v * np.log(v / m), 0.0) / 2

    def call(*args: Any, axis: int = -1) -> Any:
        arrays = [da.asarray(a) for a in args[: 2 if two else 1]]
        base = args[len(arrays)] if with_base and len(args) > len(arrays) else None
        p = arrays[0]
        if p.ndim == 0 or not -p.ndim <= axis < p.ndim:
            raise ValueError(f"{op}: axis {axis} is out of range for p of shape {p.shape}")
        ax = axis % p.ndim
        extra = (base,) if with_base else ()
        cpu(*(np.full((1,) * p.ndim, 0.5, a.dtype) for a in arrays), *extra, axis=ax)  # checks at the call
        dtype = np.result_type(*(a.dtype for a in arrays))
        if not _split(p, [ax]) and all(a.chunks == p.chunks for a in arrays):

            def fn(*blks: np.ndarray) -> np.ndarray:
                return np.asarray(cpu(*blks, *extra, axis=ax))

            meta = np.empty((0,) * (p.ndim - 1), dtype)
            return cast(da.Array, da.map_blocks(fn, *arrays, drop_axis=ax, dtype=dtype, meta=meta))
        wide = [a.astype(np.float64) for a in arrays]
        units = [w / w.sum(axis=ax, keepdims=True) for w in wide]

        def block_terms(u: np.ndarray, v: np.ndarray | None = None) -> np.ndarray:
            with np.errstate(divide="ignore", invalid="ignore"):  # at compute time, in the block
                return term(u, v)

        total = da.map_blocks(block_terms, *units, dtype=np.float64, meta=np.empty((0,) * p.ndim))
        result = cast(da.Array, total).sum(axis=ax)
        if base is not None:
            result = result / np.log(base)
        if op == "js_distance":
            result = da.sqrt(result)
        return result.astype(dtype)

    call.__name__ = op
    return call


def _class_loss(op: str) -> Callable[..., Any]:
    """``cross_entropy_with_logits`` and ``nll_loss``: each sample's loss in its block (a sample's
    classes in one chunk), then the reduction over the blocks — the sum, or the mean over the
    weights of the targets not ignored (index targets; their count without weights) or over the
    samples (probability targets), as PyTorch's."""
    cpu = getattr(divergence, op)

    def call(
        x: Any,
        target: Any,
        weight: Any = None,
        *,
        axis: int = -1,
        reduction: str = "mean",
        ignore_index: int = -100,
        **kw: Any,
    ) -> Any:
        x, target = da.asarray(x), da.asarray(target)
        w = None if weight is None else np.asarray(_host(op, "weight", weight), np.float64)
        if x.ndim == 0 or not -x.ndim <= axis < x.ndim:
            raise ValueError(f"{op}: axis {axis} is out of range for an input of shape {x.shape}")
        ax = axis % x.ndim
        if reduction not in ("mean", "sum", "none"):
            raise ValueError(f"{op}: reduction must be 'none', 'mean' or 'sum', got {reduction!r}")
        if _split(x, [ax]):
            raise ValueError(
                f"{op}: the input is split into {len(x.chunks[ax])} chunks along the class axis {ax}; "
                f"join them with x.rechunk({{{ax}: -1}}) (a sample's classes are read together)"
            )
        indices = target.dtype.kind in "iu"
        sample = "".join(chr(ord("a") + i) for i in range(x.ndim))
        out_index = sample[:ax] + sample[ax + 1 :]
        args = {"weight": w, "axis": ax, "reduction": "none", "ignore_index": ignore_index, **kw}

        def losses(blk: np.ndarray, tg: np.ndarray) -> np.ndarray:
            return np.asarray(cpu(blk, tg, **args))

        t_index = out_index if indices else sample
        per_sample = da.blockwise(
            losses, out_index, x, sample, target, t_index, dtype=x.dtype, concatenate=True
        )
        if reduction == "none":
            return per_sample
        total = per_sample.astype(np.float64).sum()
        if reduction == "sum":
            return total.astype(x.dtype)
        if not indices:
            return (total / int(np.prod(per_sample.shape))).astype(x.dtype)

        def target_weights(t: np.ndarray) -> np.ndarray:
            kept = t != ignore_index
            return np.where(kept, 1.0 if w is None else w[np.where(kept, t, 0)], 0.0)

        denominator = target.map_blocks(target_weights, dtype=np.float64).sum()
        return (total / denominator).astype(x.dtype)

    call.__name__ = op
    return call


#: The ops on dask arrays, under the public names.
OPS = SimpleNamespace(
    layer_norm=_layer_norm,
    rms_norm=_rms_norm,
    l2_normalize=_l2_normalize,
    normalize=_normalize,
    softmax=_softmax_like("softmax", activation.softmax),
    log_softmax=_softmax_like("log_softmax", activation.log_softmax),
    softmax_backward=_softmax_backward_like("softmax_backward", activation.softmax_backward),
    log_softmax_backward=_softmax_backward_like("log_softmax_backward", activation.log_softmax_backward),
    selu=_selu,
    group_norm=_group_norm,
    instance_norm=_instance_norm,
    batch_norm=_batch_norm,
    add_layer_norm=_add_norm("add_layer_norm"),
    add_rms_norm=_add_norm("add_rms_norm"),
    local_response_norm=_lrn,
    entropy=_information("entropy"),
    kl_div=_information("kl_div"),
    cross_entropy=_information("cross_entropy"),
    js_divergence=_information("js_divergence"),
    js_distance=_information("js_distance"),
    cross_entropy_with_logits=_class_loss("cross_entropy_with_logits"),
    nll_loss=_class_loss("nll_loss"),
)


def _to_numpy(value: Any) -> Any:
    return value.compute() if isinstance(value, da.Array) else value


_backend.register(da.Array, _backend.Backend("dask", OPS, lambda a: da.from_array(np.asarray(a)), _to_numpy))
