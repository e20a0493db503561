"""A hostile-user campaign: random calls of every public function, layer and optimizer with random
dtypes, shapes (0-d, empty, long dims), strides, byte orders, alignments, read-only and overlapping
buffers and random scalar arguments.

Allowed outcomes of a call: a result — of the expected shape and dtype, equal to the result on
contiguous copies of the same arguments, read-only inputs unchanged, NaN confined to its row for the
row ops — or a ``TypeError``/``ValueError`` whose message names the function. Anything else (another
exception, a crash, a hang) is a finding.

Run directly: ``python tests/fuzz/campaign.py --seed 1 --start 0 --calls 2000`` prints one JSON line
per finding; each call ``i`` draws from ``numpy.random.default_rng([seed, i])``, so
``--start i --calls 1 --show`` replays it. ``tests/fuzz/test_fuzz.py`` runs batches of this in
subprocesses, so a crash or hang is reported with the call that caused it.
"""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

import rsnorm as rn
from rsnorm import nn, optim

FLOATS = [np.float16, np.float32, np.float64]
DIMS = [0, 1, 1, 2, 3, 4, 5, 7, 8, 16, 33]


class Arg:
    """An array argument: its values and how its memory is laid out, rebuilt identically on demand."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, ...] | None = None, dtype: Any = None):
        self.shape = shape if shape is not None else tuple(rng.choice(DIMS, size=int(rng.integers(0, 5))))
        kinds = FLOATS * 6 + [np.int64, np.bool_, np.complex64, np.uint8]
        self.dtype = dtype if dtype is not None else kinds[int(rng.integers(len(kinds)))]
        values = rng.standard_normal(self.shape)
        style = rng.random()
        if style < 0.1:
            values = values + 1e4
        elif style < 0.15:
            # Large or tiny: squares that overflow or underflow the row's type (or float64).
            values = values * rng.choice([1e15, 1e20, 1e30, 1e-25, 1e160, 1e-170])
        if rng.random() < 0.15 and values.size:
            values.flat[int(rng.integers(values.size))] = rng.choice([np.nan, np.inf, -np.inf])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.values = np.asarray(values.astype(self.dtype) if self.dtype is not np.bool_ else values > 0)
        layouts = ["C"] * 5 + ["F", "strided", "negative", "swapped", "unaligned", "readonly", "broadcast"]
        self.layout = layouts[int(rng.integers(len(layouts)))]

    def build(self, contiguous: bool = False) -> np.ndarray:
        v = self.values
        if contiguous:
            return np.array(self.build(), order="C", copy=True)
        if self.layout == "F":
            return np.asfortranarray(v) if v.ndim else v.copy()
        if self.layout == "strided" and v.ndim:
            big = np.zeros((*v.shape[:-1], 2 * v.shape[-1]), v.dtype)
            big[..., ::2] = v
            return big[..., ::2]
        if self.layout == "negative" and v.ndim:
            return np.ascontiguousarray(v[..., ::-1])[..., ::-1]
        if self.layout == "swapped" and v.dtype.kind in "fc":
            return v.astype(v.dtype.newbyteorder(">" if sys.byteorder == "little" else "<"))
        if self.layout == "unaligned" and v.dtype.itemsize > 1:
            raw = np.zeros(v.nbytes + 1, np.uint8)[1:].view(v.dtype).reshape(v.shape)
            raw[...] = v
            return raw
        if self.layout == "readonly":
            out = np.array(v, copy=True)
            out.flags.writeable = False
            return out
        if self.layout == "broadcast" and v.ndim and v.shape[0] > 1:
            return np.broadcast_to(v[:1], v.shape)
        return v.copy()

    def __repr__(self) -> str:
        return f"Arg(shape={self.shape}, dtype={np.dtype(self.dtype).name}, layout={self.layout})"


def scalar(rng: np.random.Generator, good: list[Any]) -> Any:
    """A valid value most of the time, else a hostile one."""
    if rng.random() < 0.8:
        return good[int(rng.integers(len(good)))]
    bad = [-1, 0, -1.5, np.nan, np.inf, 10**400, 2**63, -(2**70), "1", None, 1.5, True, (1,)]
    return bad[int(rng.integers(len(bad)))]


def like(rng: np.random.Generator, x: Arg, match: float = 0.85) -> Arg:
    """Another array, usually x's shape and dtype."""
    if rng.random() < match:
        return Arg(rng, x.shape, x.dtype)
    return Arg(rng)


def last(x: Arg) -> int:
    return x.shape[-1] if x.shape else 1


def channels(x: Arg) -> int:
    return x.shape[1] if len(x.shape) > 1 else 1


# Each entry: name -> draw(rng) returning (function, positional Args/values, keyword Args/values,
# row_op), where row_op marks functions whose outputs have x's shape with rows along the last axis.
Draw = Callable[[np.random.Generator], tuple[Callable[..., Any], list[Any], dict[str, Any], bool]]
CASES: dict[str, Draw] = {}


def case(name: str) -> Callable[[Draw], Draw]:
    def register(draw: Draw) -> Draw:
        CASES[name] = draw
        return draw

    return register


def maybe(rng: np.random.Generator, value: Any, p: float = 0.5) -> Any:
    return value if rng.random() < p else None


@case("layer_norm")
def _(rng):
    x = Arg(rng)
    kw = {
        "weight": maybe(rng, Arg(rng, (last(x),), x.dtype)),
        "bias": maybe(rng, Arg(rng, (last(x),), x.dtype)),
    }
    if rng.random() < 0.3:
        kw["eps"] = scalar(rng, [1e-5, 0.0, 1e-3])
    if rng.random() < 0.2:
        kw["normalized_shape"] = scalar(rng, [last(x), list(x.shape[-2:])])
    return rn.layer_norm, [x], kw, "eps" not in kw and "normalized_shape" not in kw


@case("rms_norm")
def _(rng):
    x = Arg(rng)
    kw = {"weight": maybe(rng, Arg(rng, (last(x),), x.dtype))}
    if rng.random() < 0.3:
        kw["eps"] = scalar(rng, [1e-6, 0.0])
    return rn.rms_norm, [x], kw, "eps" not in kw


@case("add_layer_norm")
def _(rng):
    x = Arg(rng)
    return rn.add_layer_norm, [x, like(rng, x)], {"weight": maybe(rng, Arg(rng, (last(x),), x.dtype))}, False


@case("add_rms_norm")
def _(rng):
    x = Arg(rng)
    return rn.add_rms_norm, [x, like(rng, x)], {"weight": maybe(rng, Arg(rng, (last(x),), x.dtype))}, False


@case("batch_norm")
def _(rng):
    x = Arg(rng)
    c = channels(x)
    training = bool(rng.random() < 0.5)
    stats = [Arg(rng, (c,), np.float64), Arg(rng, (c,), np.float64)] if rng.random() < 0.6 else [None, None]
    if stats[1] is not None:
        stats[1].values = np.abs(stats[1].values)
    kw = {"training": training, "momentum": scalar(rng, [0.1, 0.5]), "eps": scalar(rng, [1e-5])}
    if rng.random() < 0.3:
        kw["axis"] = scalar(rng, [-1, 1, 0])
    if rng.random() < 0.3:
        kw["running_var_correction"] = scalar(rng, [0, 1])
    return rn.batch_norm, [x, *stats], kw, False


@case("instance_norm")
def _(rng):
    x = Arg(rng)
    return rn.instance_norm, [x], {"eps": scalar(rng, [1e-5])}, False


@case("group_norm")
def _(rng):
    x = Arg(rng)
    return rn.group_norm, [x, scalar(rng, [1, channels(x)])], {}, False


@case("local_response_norm")
def _(rng):
    x = Arg(rng)
    beta = scalar(rng, [0.75, 0.5, 0.6])
    return rn.local_response_norm, [x, scalar(rng, [1, 2, 5, 40])], {"beta": beta}, False


@case("weight_norm")
def _(rng):
    v = Arg(rng)
    dim = scalar(rng, [0, None, -1])
    n = v.shape[dim] if isinstance(dim, int) and v.shape and -len(v.shape) <= dim < len(v.shape) else 1
    return rn.weight_norm, [v, Arg(rng, (n,), v.dtype)], {"dim": dim}, False


@case("l2_normalize")
def _(rng):
    return rn.l2_normalize, [Arg(rng)], {}, True


@case("normalize")
def _(rng):
    p = scalar(rng, [1.0, 2.0, 3.0, 1.5, np.inf, 0.5, np.nan])
    axis = scalar(rng, [-1, 0, 1, 2, -3])
    eps = scalar(rng, [1e-12, 0.0, -1.0])
    if rng.random() < 0.3:
        go = Arg(rng)
        return rn.normalize_backward, [go, like(rng, go)], {"p": p, "axis": axis, "eps": eps}, False
    # NaN stays in its row: checked along the last axis, the one rows lie along for axis=-1.
    return rn.normalize, [Arg(rng)], {"p": p, "axis": axis, "eps": eps}, axis == -1


@case("selu")
def _(rng):
    return rn.selu, [Arg(rng)], {}, False


@case("softmax")
def _(rng):
    kw = {"axis": scalar(rng, [-1])} if rng.random() < 0.3 else {}
    return rn.softmax, [Arg(rng)], kw, not kw


@case("log_softmax")
def _(rng):
    return rn.log_softmax, [Arg(rng)], {}, True


@case("moments")
def _(rng):
    return rn.moments, [Arg(rng)], {"axis": scalar(rng, [None, 0, -1])}, False


@case("merge_moments")
def _(rng):
    a = (Arg(rng, (3,), np.float64), Arg(rng, (3,)), Arg(rng, (3,)))
    a[0].values = np.abs(np.round(a[0].values * 3))
    a[2].values = np.abs(a[2].values)
    return rn.merge_moments, [a, (2.0, 0.5, scalar(rng, [1.0]))], {}, False


@case("partial_moments")
def _(rng):
    return rn.partial_moments, [Arg(rng)], {"axis": scalar(rng, [None, 0, -1, (0, -1)])}, False


@case("apply_statistics")
def _(rng):
    x = Arg(rng)
    stats = [scalar(rng, [0.0, 1e4, np.nan]), scalar(rng, [1.0, 0.5, np.inf])]
    return rn.apply_statistics, [x, *stats], {"axis": scalar(rng, [None, 0, -1])}, False


@case("information")
def _(rng):
    name = ["entropy", "kl_div", "cross_entropy", "js_divergence", "js_distance"][int(rng.integers(5))]
    p = Arg(rng)
    p.values = np.abs(p.values)
    args = [p] if name == "entropy" else [p, like(rng, p)]
    if len(args) == 2:
        args[1].values = np.abs(args[1].values)
    return getattr(rn, name), args, {"axis": scalar(rng, [-1, 0])}, False


def logits_and_target(rng: np.random.Generator) -> tuple[Arg, Arg, dict[str, Any]]:
    x = Arg(rng)
    n = x.shape[0] if x.shape else 1
    target = Arg(rng, (n,), np.int64) if rng.random() < 0.7 else like(rng, x)
    if target.dtype == np.int64:
        target.values = rng.integers(-1, last(x) + 1, size=(n,))
    kw = {"reduction": scalar(rng, ["mean", "sum", "none"]), "label_smoothing": scalar(rng, [0.0, 0.1])}
    if rng.random() < 0.3:
        kw["weight"] = Arg(rng, (last(x),), np.float64)
    return x, target, kw


@case("cross_entropy_with_logits")
def _(rng):
    x, target, kw = logits_and_target(rng)
    return rn.cross_entropy_with_logits, [x, target], kw, False


@case("cross_entropy_with_logits_backward")
def _(rng):
    x, target, kw = logits_and_target(rng)
    grad = Arg(rng, x.shape[:-1]) if kw["reduction"] == "none" else scalar(rng, [1.0, 0.5])
    return rn.cross_entropy_with_logits_backward, [grad, x, target], kw, False


@case("softmax_backward")
def _(rng):
    y = Arg(rng)
    fn = rn.softmax_backward if rng.random() < 0.5 else rn.log_softmax_backward
    # Not NaN-confined: y need not be a forward's output, and y·g or exp(y) of large ones overflow.
    return fn, [like(rng, y), y], {"axis": scalar(rng, [-1, 0])}, False


@case("nll_loss")
def _(rng):
    x = Arg(rng)
    n = x.shape[0] if x.shape else 1
    dtype = [np.int64, np.int8, np.uint8, np.uint64][int(rng.integers(4))]
    target = Arg(rng, (n,), np.int64)
    target.values = rng.integers(0 if dtype in (np.uint8, np.uint64) else -1, last(x) + 1, size=(n,)).astype(
        dtype
    )
    weight = Arg(rng, (last(x),), np.float64) if rng.random() < 0.5 else None
    kw = {"reduction": scalar(rng, ["mean", "sum", "none"])}
    return rn.nll_loss, [x, target, weight], kw, False


@case("wasserstein_1d")
def _(rng):
    u, v = Arg(rng, (int(rng.choice(DIMS)),)), Arg(rng, (int(rng.choice(DIMS)),))
    return rn.wasserstein_1d, [u, v], {}, False


@case("aic_bic")
def _(rng):
    ll = Arg(rng)
    k = Arg(rng, ll.shape)
    k.values = np.abs(k.values)
    if rng.random() < 0.5:
        return rn.aic, [ll, k], {}, False
    if rng.random() < 0.6:
        return rn.bic, [ll, k, scalar(rng, [10, 100])], {}, False
    # n per model (a row of it, broadcast against ll, some of the time).
    n = Arg(rng, ll.shape[-1:] if ll.shape and rng.random() < 0.3 else ll.shape)
    with np.errstate(over="ignore"):  # uint8 255 + 1
        n.values = np.abs(n.values) + 1
    return rn.bic, [ll, k, n], {}, False


@case("cosine_linear")
def _(rng):
    x = Arg(rng)
    w = Arg(rng, (3, last(x)), x.dtype) if rng.random() < 0.8 else Arg(rng)
    return rn.cosine_linear, [x, w], {"bias": maybe(rng, Arg(rng, (3,)), 0.3)}, False


@case("backward")
def _(rng):
    x = Arg(rng, None, FLOATS[int(rng.integers(3))])
    go = like(rng, x)
    which = int(rng.integers(6))
    if which == 0:
        return rn.selu_backward, [go, x], {}, False
    if which == 1:
        return rn.l2_normalize_backward, [go, x], {}, False

    def with_stats(
        forward: Callable[..., Any], backward: Callable[..., Any], **extra: Any
    ) -> Callable[..., Any]:
        def call(g: np.ndarray, x: np.ndarray) -> Any:
            stats = forward(x, return_stats=True, **extra)[1:]
            return backward(g, x, *stats, **extra)

        call.__name__ = f"{backward.__name__}/{forward.__name__}"
        return call

    if which == 2:
        return with_stats(rn.layer_norm, rn.layer_norm_backward), [go, x], {}, False
    if which == 3:
        return with_stats(rn.rms_norm, rn.rms_norm_backward), [go, x], {}, False
    if which == 4:
        return with_stats(rn.batch_norm, rn.batch_norm_backward), [go, x], {}, False
    return with_stats(rn.group_norm, rn.group_norm_backward, num_groups=1), [go, x], {}, False


@case("layers")
def _(rng):
    x = Arg(rng)
    c, n = channels(x), last(x)
    layer = [
        lambda: nn.LayerNorm(n),
        lambda: nn.RMSNorm(n),
        lambda: nn.BatchNorm(c),
        lambda: nn.GroupNorm(1, c),
        lambda: nn.InstanceNorm(c),
        lambda: nn.LocalResponseNorm(3),
    ][int(rng.integers(6))]

    def call(x: np.ndarray) -> Any:
        lay = layer()
        y = lay(x)
        if hasattr(lay, "backward") and not isinstance(lay, nn.LocalResponseNorm):
            return y, lay.backward(np.ones_like(y))
        return y

    call.__name__ = "layer"
    return call, [x], {}, False


@case("optimizers")
def _(rng):
    shapes = [tuple(rng.choice(DIMS, size=int(rng.integers(0, 3)))) for _ in range(int(rng.integers(1, 4)))]
    dtype = [np.float32, np.float64][int(rng.integers(2))]
    params = [Arg(rng, s, dtype) for s in shapes]
    grads = [like(rng, p, 0.9) for p in params]
    kinds = [optim.SGD, optim.Adam, optim.AdamW, optim.Adagrad, optim.Adadelta, optim.RMSprop]
    kind = kinds[int(rng.integers(6))]
    lr = scalar(rng, [1e-3, 0.1])

    def call(*arrays: np.ndarray) -> Any:
        ps = [p.copy() for p in arrays[: len(params)]]  # parameters must be writeable and contiguous
        opt = kind(ps, lr=lr)
        opt.step(list(arrays[len(params) :]))
        opt.step(list(arrays[len(params) :]))
        return ps

    call.__name__ = kind.__name__
    return call, [*params, *grads], {}, False


def materialize(value: Any, contiguous: bool) -> Any:
    if isinstance(value, Arg):
        return value.build(contiguous)
    if isinstance(value, tuple):
        return tuple(materialize(v, contiguous) for v in value)
    return value


def same(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)):
        return (
            isinstance(b, (tuple, list))
            and len(a) == len(b)
            and all(same(x, y) for x, y in zip(a, b, strict=True))
        )
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.dtype.names:  # records (partial_moments): field by field
        return all(same(a[f], b[f]) for f in a.dtype.names)
    if a.dtype.kind in "fc":
        return bool(np.array_equal(a, b, equal_nan=True))
    return bool(np.array_equal(a, b))


# Results allowed to differ from the contiguous copy's in the last bits: cosine_linear's product is
# NumPy's matmul, whose rounding depends on the layout. Everything else must give the same bits.
ROUNDING_MAY_DIFFER = {"cosine_linear"}


def close(a: Any, b: Any) -> bool:
    if isinstance(a, (tuple, list)):
        return (
            isinstance(b, (tuple, list))
            and len(a) == len(b)
            and all(close(x, y) for x, y in zip(a, b, strict=True))
        )
    if a is None or b is None:
        return a is b
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    both = np.isfinite(a) & np.isfinite(b)
    return bool(np.allclose(a[both], b[both], rtol=1e-3, atol=1e-5))


def run_call(seed: int, index: int) -> dict[str, Any] | None:
    """One call; a finding as a dict, or None."""
    rng = np.random.default_rng([seed, index])
    name = list(CASES)[int(rng.integers(len(CASES)))]
    fn, args, kwargs, row_op = CASES[name](rng)
    label = getattr(fn, "__name__", name)
    where = {"seed": seed, "call": index, "case": name, "fn": label}
    where |= {"args": repr(args), "kwargs": repr(kwargs)}
    real_args = [materialize(a, False) for a in args]
    real_kwargs = {k: materialize(v, False) for k, v in kwargs.items()}
    snapshots = [a.copy() for a in real_args if isinstance(a, np.ndarray) and not a.flags.writeable]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(*real_args, **real_kwargs)
    except (TypeError, ValueError) as exc:
        names = {label, name, *label.split("/"), label.split(".")[0]}
        named = any(n in str(exc) for n in names) or (name == "layers" and ":" in str(exc).split()[0])
        if not named:
            return {**where, "finding": f"{type(exc).__name__} not naming {label}: {exc}"}
        return None
    except BaseException as exc:
        return {**where, "finding": f"{type(exc).__name__}: {exc}"}
    readonly = [a for a in real_args if isinstance(a, np.ndarray) and not a.flags.writeable]
    if not all(same(a, b) for a, b in zip(readonly, snapshots, strict=True)):
        return {**where, "finding": "a read-only input changed"}
    contiguous_args = [materialize(a, True) for a in args]
    contiguous_kwargs = {k: materialize(v, True) for k, v in kwargs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            again = fn(*contiguous_args, **contiguous_kwargs)
        except BaseException as exc:
            return {**where, "finding": f"contiguous copy raised {type(exc).__name__}: {exc}"}
    if not same(result, again) and not (label in ROUNDING_MAY_DIFFER and close(result, again)):
        return {**where, "finding": "result differs from the result on contiguous copies"}
    x = real_args[0] if real_args and isinstance(real_args[0], np.ndarray) else None
    if row_op and x is not None and x.dtype.kind == "f" and all(v is None for v in kwargs.values()):
        y = result[0] if isinstance(result, tuple) else result
        if y.shape != x.shape or y.dtype != x.dtype.newbyteorder("="):
            return {**where, "finding": f"result {y.shape} {y.dtype} for x {x.shape} {x.dtype}"}
        if x.ndim and x.size and np.isfinite(x.astype(np.float64)).all(axis=-1).any():
            with np.errstate(all="ignore"):
                tame = np.abs(x.astype(np.float64)).max(axis=-1) < 1e3
            clean = np.isfinite(x).all(axis=-1) & tame
            if not np.isfinite(y[clean]).all():
                return {**where, "finding": "NaN/inf outside the rows that hold one"}
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--show", action="store_true", help="print each call before making it")
    parser.add_argument("--progress", help="file the index of the call in flight is written to")
    opts = parser.parse_args()
    for index in range(opts.start, opts.start + opts.calls):
        if opts.progress:
            with open(opts.progress, "w") as f:
                f.write(str(index))
        if opts.show:
            rng = np.random.default_rng([opts.seed, index])
            name = list(CASES)[int(rng.integers(len(CASES)))]
            print(index, name, CASES[name](rng)[1:3], flush=True)
        finding = run_call(opts.seed, index)
        if finding:
            print(json.dumps(finding), flush=True)


if __name__ == "__main__":
    main()
