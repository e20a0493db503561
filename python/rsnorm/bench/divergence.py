"""Softmax and the information measures: softmax and log-softmax, cross-entropy of logits and of
probabilities, entropy, KL and Jensen–Shannon, and the 1-D Wasserstein distance."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

import rsnorm as rn

from .workload import Workload, family, ort_call, scipy_or_none, torch_or_none


def _numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _numpy_channel_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _numpy_log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _numpy_softmax_backward(g, y):
    return y * (g - (g * y).sum(axis=-1, keepdims=True))


def _numpy_cross_entropy_backward(x, target):
    """The mean cross-entropy's gradient: (softmax(x) − onehot(target)) / N."""
    grad = _numpy_softmax(x)
    grad[np.arange(len(x)), target] -= 1
    grad /= len(x)
    return grad


def _numpy_cross_entropy(x, target):
    shifted = x - x.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=-1))
    return (log_sum - shifted[np.arange(len(x)), target]).mean()


def _numpy_weighted_cross_entropy(x, target, weight):
    shifted = x - x.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=-1))
    w = weight[target]
    return (w * (log_sum - shifted[np.arange(len(x)), target])).sum() / w.sum()


def _numpy_nll(log_probs, target, weight):
    w = weight[target]
    return -(w * np.take_along_axis(log_probs, target[:, None], -1)[:, 0]).sum() / w.sum()


def _numpy_kl(p, q):
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    return (p * np.log(p / q)).sum(-1)


def _numpy_entropy(p):
    p = p / p.sum(-1, keepdims=True)
    return -(p * np.log(p)).sum(-1)


def _numpy_cross_entropy_probs(p, q):
    return -(p * np.log(q)).sum(-1)


def _numpy_js_divergence(p, q):
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    m = (p + q) / 2
    return ((p * np.log(p / m)).sum(-1) + (q * np.log(q / m)).sum(-1)) / 2


def _rows(
    shape, threads: int, w1_samples: int | None, segmentation_shape=None, dtype=np.float32
) -> list[Workload]:
    """softmax, cross-entropy of logits and KL/JS over rows; (given) softmax over the channels of a
    segmentation output (N, classes, H, W) and Wasserstein-1 between two samples."""
    rng = np.random.default_rng(4)
    torch, scipy = torch_or_none(), scipy_or_none()
    x = rng.standard_normal(shape).astype(dtype)
    p = rng.random(shape).astype(np.float64) + 1e-3
    q = rng.random(shape).astype(np.float64) + 1e-3
    y = np.empty_like(x)
    soft: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.softmax, x, -1, out=y),
        "rsnorm alloc": partial(rn.softmax, x, -1),
        "numpy": partial(_numpy_softmax, x),
    }
    kl: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.kl_div, p, q),
        "numpy": partial(_numpy_kl, p, q),
    }
    js: dict[str, Callable[[], object]] = {"rsnorm": partial(rn.js_distance, p, q)}
    if scipy is not None:
        kl["scipy"] = partial(scipy.stats.entropy, p, q, axis=-1)
        js["scipy"] = partial(scipy.spatial.distance.jensenshannon, p, q, axis=-1)
    if torch is not None:
        soft["torch"] = partial(torch.softmax, torch.from_numpy(x), -1)
    _with_ort(soft, "Softmax", x, -1, threads)
    target = rng.integers(0, shape[-1], shape[0])
    xent: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.cross_entropy_with_logits, x, target),
        "numpy": partial(_numpy_cross_entropy, x, target),
    }
    if torch is not None:
        xent["torch"] = partial(
            torch.nn.functional.cross_entropy, torch.from_numpy(x), torch.from_numpy(target)
        )
    weight = rng.uniform(0.5, 2.0, shape[-1])
    weighted: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.cross_entropy_with_logits, x, target, weight=weight),
        "numpy": partial(_numpy_weighted_cross_entropy, x, target, weight),
    }
    g, sm = rng.standard_normal(shape).astype(dtype), _numpy_softmax(x)
    dx = np.empty_like(x)
    soft_back: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.softmax_backward, g, sm, out=dx),
        "numpy": partial(_numpy_softmax_backward, g, sm),
    }
    if torch is not None:
        soft_back["torch"] = partial(
            torch._softmax_backward_data,
            torch.from_numpy(g),
            torch.from_numpy(sm),
            -1,
            torch.from_numpy(x).dtype,
        )
    xent_back: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.cross_entropy_with_logits_backward, 1.0, x, target, out=dx),
        "numpy": partial(_numpy_cross_entropy_backward, x, target),
    }
    log_probs = _numpy_log_softmax(x)
    nll: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.nll_loss, log_probs, target, weight),
        "numpy": partial(_numpy_nll, log_probs, target, weight),
    }
    if torch is not None:
        w32 = torch.from_numpy(weight.astype(dtype))
        weighted["torch"] = partial(
            torch.nn.functional.cross_entropy, torch.from_numpy(x), torch.from_numpy(target), weight=w32
        )
        nll["torch"] = partial(
            torch.nn.functional.nll_loss, torch.from_numpy(log_probs), torch.from_numpy(target), weight=w32
        )
    dt = np.dtype(dtype).name
    loads = [
        Workload("softmax", tuple(shape), dt, 2 * x.nbytes, soft),
        Workload("cross_entropy logits", tuple(shape), dt, x.nbytes, xent, roofline="read"),
        Workload("cross_entropy logits weight", tuple(shape), dt, x.nbytes, weighted, roofline="read"),
        Workload("softmax backward", tuple(shape), dt, 3 * x.nbytes, soft_back),
        Workload("cross_entropy logits backward", tuple(shape), dt, 2 * x.nbytes, xent_back),
        # One element read per sample: the bytes that matter are the targets' rows' elements.
        Workload("nll_loss", tuple(shape), dt, shape[0] * x.itemsize, nll, roofline="read"),
        Workload("kl_div", tuple(shape), "float64", 2 * p.nbytes, kl, roofline="read"),
        Workload("js_distance", tuple(shape), "float64", 2 * p.nbytes, js, roofline="read"),
    ]
    if segmentation_shape:
        seg = rng.standard_normal(segmentation_shape).astype(dtype)
        seg_out = np.empty_like(seg)
        channel: dict[str, Callable[[], object]] = {
            "rsnorm": partial(rn.softmax, seg, 1, out=seg_out),
            "rsnorm alloc": partial(rn.softmax, seg, 1),
            "numpy": partial(_numpy_channel_softmax, seg),
        }
        if torch is not None:
            channel["torch"] = partial(torch.softmax, torch.from_numpy(seg), 1)
        _with_ort(channel, "Softmax", seg, 1, threads)
        loads.append(Workload("softmax axis=1", seg.shape, dt, 2 * seg.nbytes, channel))
    if w1_samples:
        u, v = rng.standard_normal(w1_samples), rng.standard_normal(w1_samples) * 2 + 0.5
        w1: dict[str, Callable[[], object]] = {"rsnorm": partial(rn.wasserstein_1d, u, v)}
        if scipy is not None:
            w1["scipy"] = partial(scipy.stats.wasserstein_distance, u, v)
        loads.append(Workload("wasserstein_1d", (w1_samples,), "float64", u.nbytes + v.nbytes, w1))
    return loads


def _probabilities(shape) -> list[Workload]:
    """Entropy, cross-entropy of probabilities and the JS divergence over float64 rows."""
    rng = np.random.default_rng(7)
    scipy = scipy_or_none()
    p = rng.random(shape) + 1e-3
    q = rng.random(shape) + 1e-3
    impls: dict[str, dict[str, Callable[[], object]]] = {
        "entropy": {"rsnorm": partial(rn.entropy, p), "numpy": partial(_numpy_entropy, p)},
        "cross_entropy": {
            "rsnorm": partial(rn.cross_entropy, p, q),
            "numpy": partial(_numpy_cross_entropy_probs, p, q),
        },
        "js_divergence": {
            "rsnorm": partial(rn.js_divergence, p, q),
            "numpy": partial(_numpy_js_divergence, p, q),
        },
    }
    if scipy is not None:
        impls["entropy"]["scipy"] = partial(scipy.stats.entropy, p, axis=-1)
        impls["js_divergence"]["scipy"] = lambda: scipy.spatial.distance.jensenshannon(p, q, axis=-1) ** 2
    arrays = {"entropy": 1, "cross_entropy": 2, "js_divergence": 2}
    return [
        Workload(op, tuple(shape), "float64", arrays[op] * p.nbytes, i, roofline="read")
        for op, i in impls.items()
    ]


def _with_ort(impls: dict, node: str, x: np.ndarray, axis: int, threads: int) -> None:
    """ONNX Runtime's `node` (Softmax, LogSoftmax; opset 13: along `axis` alone) as a peer, where
    it is installed."""
    call = ort_call(node, {"X": x}, {"axis": axis}, 13, threads)
    if call is not None:
        impls["onnxruntime"] = call


def _log_softmax(shape, threads: int, dtype=np.float32) -> Workload:
    rng = np.random.default_rng(5)
    torch = torch_or_none()
    x = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
    y = np.empty_like(x)
    impls: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.log_softmax, x, -1, out=y),
        "numpy": partial(_numpy_log_softmax, x),
    }
    if torch is not None:
        impls["torch"] = partial(torch.log_softmax, torch.from_numpy(x), -1)
    _with_ort(impls, "LogSoftmax", x, -1, threads)
    return Workload("log_softmax", tuple(shape), np.dtype(dtype).name, 2 * x.nbytes, impls)


@family("divergence")
def divergence_workloads(suite, threads: int) -> list[Workload]:
    loads = []
    for k, shape in enumerate(suite.divergence_shapes):
        last = k == len(suite.divergence_shapes) - 1
        loads += _rows(
            shape, threads, suite.w1_samples if last else None, suite.segmentation_shape if last else None
        )
        loads += _probabilities(shape)
    for shape in suite.short_probability_shapes:
        loads += _probabilities(shape)
    return loads + [_log_softmax(shape, threads) for shape in suite.row_op_shapes]
