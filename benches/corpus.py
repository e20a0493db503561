"""A fixed corpus of calls whose outputs a refactor must leave bit-identical.

    python benches/corpus.py save before.npz       # on the old build
    python benches/corpus.py save after.npz        # on the new build
    python benches/corpus.py compare before.npz after.npz

Inputs are seeded: every public function on float16/32/64 data of noise and of 1e4 + noise, in
C order and as strided views, short and long rows, channel-first and channel-last, with a few
NaN/inf rows. `compare` reports every output whose bits differ (NaNs compare equal to NaNs).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

import rsnorm

DTYPES = (np.float16, np.float32, np.float64)


def _data(rng: np.random.Generator, shape: tuple[int, ...], dtype: Any, offset: float) -> Any:
    return (offset + rng.standard_normal(shape)).astype(dtype)


def _layouts(x: Any) -> Iterator[tuple[str, Any]]:
    yield "c", x
    yield "strided", _strided(x)
    yield "fortran", np.asfortranarray(x)


def _strided(x: Any) -> Any:
    """The values of `x` as every other element of a twice-as-wide buffer."""
    wide = np.zeros((*x.shape[:-1], 2 * x.shape[-1]), x.dtype)
    wide[..., ::2] = x
    return wide[..., ::2]


def _calls(rng: np.random.Generator) -> Iterator[tuple[str, Callable[[], Any]]]:
    for dtype in DTYPES:
        name = np.dtype(dtype).name
        for offset in (0.0, 1e4 if dtype != np.float16 else 100.0):
            for shape in ((5, 7), (4, 70), (3, 1500), (2, 3, 4100)):
                base = _data(rng, shape, dtype, offset)
                if shape == (4, 70):
                    base[1, 3] = np.nan
                    base[2, 5] = np.inf
                res = _data(rng, shape, dtype, 0.0)
                w = _data(rng, shape[-1:], dtype, 1.0)
                b = _data(rng, shape[-1:], dtype, 0.0)
                g = _data(rng, shape, dtype, 0.0)
                for lay, x in _layouts(base):
                    key = f"{name}/{offset}/{shape}/{lay}"
                    yield (
                        f"{key}/layer_norm",
                        lambda x=x, w=w, b=b: rsnorm.layer_norm(x, w.shape, w, b, return_stats=True),
                    )
                    yield (
                        f"{key}/rms_norm",
                        lambda x=x, w=w: rsnorm.rms_norm(x, w.shape, w, return_stats=True),
                    )
                    yield (
                        f"{key}/add_layer_norm",
                        lambda x=x, r=res, w=w, b=b: rsnorm.add_layer_norm(x, r, w, b, return_stats=True),
                    )
                    yield (
                        f"{key}/add_rms_norm",
                        lambda x=x, r=res, w=w: rsnorm.add_rms_norm(x, r, w, return_stats=True),
                    )
                    yield (
                        f"{key}/layer_norm_backward",
                        lambda x=x, w=w, b=b, g=g: rsnorm.layer_norm_backward(
                            g,
                            x,
                            *rsnorm.layer_norm(x, w.shape, w, b, return_stats=True)[1:],
                            w,
                            b,
                        ),
                    )
                    yield (
                        f"{key}/rms_norm_backward",
                        lambda x=x, w=w, g=g: rsnorm.rms_norm_backward(
                            g, x, rsnorm.rms_norm(x, w.shape, w, return_stats=True)[1], w
                        ),
                    )
                    yield (
                        f"{key}/add_layer_norm_backward",
                        lambda x=x, r=res, w=w, b=b, g=g: rsnorm.add_layer_norm_backward(
                            g, *rsnorm.add_layer_norm(x, r, w, b, return_stats=True)[1:], w, b, r
                        ),
                    )
                    yield (
                        f"{key}/add_rms_norm_backward",
                        lambda x=x, r=res, w=w, g=g: rsnorm.add_rms_norm_backward(
                            g, *rsnorm.add_rms_norm(x, r, w, return_stats=True)[1:], w, r
                        ),
                    )
                    yield f"{key}/l2_normalize", lambda x=x: rsnorm.l2_normalize(x)
                    yield f"{key}/l2_normalize_backward", lambda x=x, g=g: rsnorm.l2_normalize_backward(g, x)
                    for p in (1.0, 3.0, np.inf):
                        yield f"{key}/normalize{p}", lambda x=x, p=p: rsnorm.normalize(x, p, 0)
                        yield (
                            f"{key}/normalize_backward{p}",
                            lambda x=x, g=g, p=p: rsnorm.normalize_backward(g, x, p, 0),
                        )
                    yield f"{key}/selu", lambda x=x: rsnorm.selu(x)
                    for axis in (-1, 0):
                        yield f"{key}/softmax{axis}", lambda x=x, a=axis: rsnorm.softmax(x, a)
                        yield f"{key}/log_softmax{axis}", lambda x=x, a=axis: rsnorm.log_softmax(x, a)
                    for axis in (None, 0, -1):
                        yield f"{key}/moments{axis}", lambda x=x, a=axis: rsnorm.moments(x, a)
                    if x.ndim == 2 and dtype != np.float16:
                        yield (
                            f"{key}/weight_norm",
                            lambda x=x: rsnorm.weight_norm(
                                x, np.linspace(0.5, 2.0, x.shape[0]).astype(x.dtype)
                            ),
                        )
                        yield f"{key}/cosine_linear", lambda x=x: rsnorm.cosine_linear(x, x[:3])
        # Divergences and the rest of the row ops.
        for shape in ((5, 7), (40, 100), (3, 4100)):
            p = rng.random(shape).astype(dtype)
            q = rng.random(shape).astype(dtype)
            for lay, pv in _layouts(p):
                key = f"{name}/{shape}/{lay}"
                yield f"{key}/entropy", lambda p=pv: rsnorm.entropy(p)
                yield f"{key}/entropy2", lambda p=pv: rsnorm.entropy(p, base=2.0)
                yield f"{key}/kl_div", lambda p=pv, q=q: rsnorm.kl_div(p, q)
                yield f"{key}/cross_entropy", lambda p=pv, q=q: rsnorm.cross_entropy(p, q)
                yield f"{key}/js_divergence", lambda p=pv, q=q: rsnorm.js_divergence(p, q)
                yield f"{key}/js_distance", lambda p=pv, q=q: rsnorm.js_distance(p, q, base=2.0)
                target = rng.integers(0, shape[-1], shape[:-1])
                for reduction in ("mean", "sum", "none"):
                    yield (
                        f"{key}/ce_logits_{reduction}",
                        lambda p=pv, t=target, r=reduction: rsnorm.cross_entropy_with_logits(
                            p, t, reduction=r, label_smoothing=0.1
                        ),
                    )
                yield (
                    f"{key}/ce_logits_probs",
                    lambda p=pv, q=q: rsnorm.cross_entropy_with_logits(p, q / q.sum(-1, keepdims=True)),
                )
                yield f"{key}/selu_backward", lambda p=pv, q=q: rsnorm.selu_backward(q, p - 0.5)
                yield (
                    f"{key}/softmax_backward",
                    lambda p=pv, q=q: rsnorm.softmax_backward(q, rsnorm.softmax(p)),
                )
                yield (
                    f"{key}/log_softmax_backward",
                    lambda p=pv, q=q: rsnorm.log_softmax_backward(q, rsnorm.log_softmax(p)),
                )
                yield (
                    f"{key}/ce_logits_backward",
                    lambda p=pv, t=target: rsnorm.cross_entropy_with_logits_backward(
                        1.0, p, t, label_smoothing=0.1
                    ),
                )
        # nll_loss over enough rows for its loads issued ahead, targets 1 ignored (its own
        # generator: the data of the calls around it stay as they were).
        nll_rng = np.random.default_rng(11)
        for shape, axis in (((300, 10), -1), ((40, 100), -1), ((4, 7, 30), 1)):
            log_probs = (nll_rng.random(shape) - 1.0).astype(dtype)
            target = nll_rng.integers(0, shape[axis], np.delete(shape, axis % len(shape)))
            weight = np.linspace(0.5, 2.0, shape[axis])
            for lay, lp in _layouts(log_probs):
                for reduction in ("mean", "sum", "none"):
                    for w in (None, weight):
                        yield (
                            f"{name}/{shape}/{lay}/nll_{reduction}_{w is None}",
                            lambda lp=lp, t=target, r=reduction, w=w, a=axis: rsnorm.nll_loss(
                                lp, t, w, axis=a, reduction=r, ignore_index=1
                            ),
                        )
        for n in (1, 1000, 100_000):
            u, v = rng.standard_normal(n).astype(dtype), rng.standard_normal(n + 3).astype(dtype)
            yield f"{name}/{n}/wasserstein", lambda u=u, v=v: rsnorm.wasserstein_1d(u, v)
            yield (
                f"{name}/{n}/wasserstein_w",
                lambda u=u, v=v: rsnorm.wasserstein_1d(u, v, np.abs(u) + 0.1, np.abs(v) + 0.1),
            )
        ll = rng.standard_normal(10) * 100
        yield f"{name}/aic", lambda ll=ll: rsnorm.aic(ll, 3)
        yield f"{name}/bic", lambda ll=ll: rsnorm.bic(ll, 3, 1000)
        # Channel norms: (N, C, H, W) and its channel-last view.
        for offset in (0.0, 50.0):
            for shape in ((4, 6, 7, 7), (2, 8, 33, 33), (64, 16, 1, 1)):
                base = _data(rng, shape, dtype, offset)
                if shape == (4, 6, 7, 7):
                    base[1, 2, 3, 3] = np.inf
                c = shape[1]
                w = _data(rng, (c,), dtype, 1.0)
                b = _data(rng, (c,), dtype, 0.0)
                g = _data(rng, shape, dtype, 0.0)
                views = [
                    ("c", base, 1),
                    ("strided", _strided(base), 1),
                    ("nhwc", np.ascontiguousarray(base.transpose(0, 2, 3, 1)), -1),
                    ("nhwc-view", base.transpose(0, 2, 3, 1), -1),
                ]
                for lay, x, axis in views:
                    key = f"{name}/{offset}/{shape}/{lay}"
                    for training in (True, False):
                        yield (
                            f"{key}/batch_norm{training}",
                            lambda x=x, a=axis, t=training, w=w, b=b, c=c: rsnorm.batch_norm(
                                x,
                                np.zeros(c),
                                np.ones(c),
                                w,
                                b,
                                training=t,
                                axis=a,
                                return_stats=True,
                            ),
                        )
                    yield (
                        f"{key}/batch_norm_backward",
                        lambda x=x, a=axis, w=w, g=g: rsnorm.batch_norm_backward(
                            np.ascontiguousarray(g.transpose(0, 2, 3, 1)) if a == -1 else g,
                            x,
                            *rsnorm.batch_norm(x, None, None, w, training=True, axis=a, return_stats=True)[
                                1:
                            ],
                            w,
                            axis=a,
                        ),
                    )
                    if axis == 1:
                        yield (
                            f"{key}/group_norm",
                            lambda x=x, w=w, b=b: rsnorm.group_norm(x, 2, w, b, return_stats=True),
                        )
                        yield (
                            f"{key}/group_norm_backward",
                            lambda x=x, w=w, g=g: rsnorm.group_norm_backward(
                                g,
                                x,
                                *rsnorm.group_norm(x, 2, w, return_stats=True)[1:],
                                w,
                                num_groups=2,
                            ),
                        )
                        yield (
                            f"{key}/instance_norm",
                            lambda x=x, w=w, b=b: rsnorm.instance_norm(
                                x, None, None, w, b, return_stats=True
                            ),
                        )
                        yield (
                            f"{key}/instance_norm_backward",
                            lambda x=x, w=w, g=g: rsnorm.instance_norm_backward(
                                g, x, *rsnorm.instance_norm(x, weight=w, return_stats=True)[1:], w
                            ),
                        )
                        yield (
                            f"{key}/InstanceNorm.eval.backward",
                            lambda x=x, w=w, g=g: _layer_pass(
                                rsnorm.nn.InstanceNorm(
                                    x.shape[1], affine=True, track_running_stats=True, dtype=x.dtype
                                ).eval(),
                                x,
                                g,
                                w,
                            ),
                        )
                    for training in (True, False):
                        yield (
                            f"{key}/BatchNorm.mean_only{training}.backward",
                            lambda x=x, a=axis, t=training, w=w, g=g: _layer_pass(
                                rsnorm.nn.BatchNorm(x.shape[a], axis=a, mean_only=True, dtype=x.dtype).train(
                                    t
                                ),
                                x,
                                np.ascontiguousarray(g.transpose(0, 2, 3, 1)) if a == -1 else g,
                                w,
                            ),
                        )
                    if axis == 1:
                        yield f"{key}/lrn", lambda x=x: rsnorm.local_response_norm(x, 3)
                        yield f"{key}/lrn40", lambda x=x: rsnorm.local_response_norm(x, 40)


def _layer_pass(layer: Any, x: Any, grad_out: Any, weight: Any) -> list[Any]:
    """A layer's forward and backward from set parameters and running statistics: outputs and
    gradients. Evaluation mode uses running statistics of a training pass on `x` first."""
    layer.parameters()["weight"][...] = weight
    training = layer.training
    layer.train()(x)
    layer.train(training)
    y = layer(x)
    dx = layer.backward(grad_out)
    return [y, dx, *(layer.grad[name] for name in sorted(layer.grad))]


def _optimizer_calls(rng: np.random.Generator) -> Iterator[tuple[str, Callable[[], Any]]]:
    """Ten steps of every optimizer variant on two parameters, in float32 and float64, every other
    step clipped, one gradient with NaN, ±inf and -0.0 entries: the trajectories."""
    from rsnorm import optim

    variants: dict[str, Callable[[list[Any]], Any]] = {
        "sgd": lambda ps: optim.SGD(ps, lr=0.1),
        "sgd decay maximize": lambda ps: optim.SGD(ps, lr=0.1, weight_decay=0.01, maximize=True),
        "momentum": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.01),
        "momentum dampened": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, dampening=0.2),
        "nesterov": lambda ps: optim.SGD(ps, lr=0.1, momentum=0.9, nesterov=True),
        "adagrad": lambda ps: optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
        "adagrad decay": lambda ps: optim.Adagrad(ps, lr=0.1, weight_decay=0.01),
        "adadelta": lambda ps: optim.Adadelta(ps),
        "adadelta decay": lambda ps: optim.Adadelta(ps, weight_decay=0.01),
        "rmsprop": lambda ps: optim.RMSprop(ps, momentum=0.5, centered=True),
        "rmsprop plain": lambda ps: optim.RMSprop(ps),
        "rmsprop decay momentum": lambda ps: optim.RMSprop(ps, weight_decay=0.01, momentum=0.5),
        "adam": lambda ps: optim.Adam(ps, amsgrad=True, weight_decay=0.01),
        "adamw": lambda ps: optim.AdamW(ps),
        "adam plain": lambda ps: optim.Adam(ps),
        "adam decay": lambda ps: optim.Adam(ps, weight_decay=0.01),
        "adamw amsgrad maximize": lambda ps: optim.AdamW(ps, amsgrad=True, maximize=True),
    }
    for dtype in (np.float32, np.float64):
        start = [rng.standard_normal(1000).astype(dtype), rng.standard_normal((7, 9)).astype(dtype)]
        grads = [[rng.standard_normal(p.shape).astype(dtype) for p in start] for _ in range(10)]
        grads[4][0][5:9] = [np.nan, np.inf, -np.inf, -0.0]
        for name, make in variants.items():

            def run(make: Callable[[list[Any]], Any] = make, start: Any = start, grads: Any = grads) -> Any:
                params = [p.copy() for p in start]
                opt = make(params)
                for k, g in enumerate(grads):
                    opt.step(g, clip_grad_norm=5.0 if k % 2 else None)
                return params

            yield f"optim/{name} {np.dtype(dtype).name}", run


def _flatten(value: Any) -> list[Any]:
    if isinstance(value, (tuple, list)):
        return [v for item in value for v in _flatten(item)]
    return [np.asarray(value)]


def save(path: str) -> None:
    rng = np.random.default_rng(20261203)
    arrays: dict[str, Any] = {}
    for key, call in [*_calls(rng), *_optimizer_calls(rng)]:
        try:
            out = _flatten(call())
        except (TypeError, ValueError) as exc:
            arrays[f"{key}#error"] = np.array(str(exc))
            continue
        for i, arr in enumerate(out):
            arrays[f"{key}#{i}"] = arr
    np.savez(path, **arrays)
    print(f"{len(arrays)} arrays -> {path}")


def compare(before: str, after: str) -> int:
    a, b = np.load(before), np.load(after)
    differ = [k for k in a.files if k not in b.files]
    for key in a.files:
        if key in b.files:
            x, y = a[key], b[key]
            same = x.shape == y.shape and x.dtype == y.dtype
            if same and x.dtype.kind == "f":
                same = bool(np.array_equal(x, y, equal_nan=True)) and bool(
                    np.array_equal(np.signbit(x), np.signbit(y)) or np.isnan(x).any()
                )
            elif same:
                same = bool(np.array_equal(x, y))
            if not same:
                differ.append(key)
    for key in differ:
        print("differs:", key)
    print(f"{len(a.files)} arrays, {len(differ)} differ")
    return 1 if differ else 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["save"]:
        save(sys.argv[2])
    elif sys.argv[1:2] == ["compare"]:
        sys.exit(compare(sys.argv[2], sys.argv[3]))
    else:
        sys.exit(__doc__)
