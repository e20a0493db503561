"""``python -m rsnorm bench``: rsnorm against NumPy, PyTorch CPU and ONNX Runtime, side by side.

Every implementation of a workload is timed in the same run, interleaved round by round so
machine noise hits all of them alike; the table reports medians. Bandwidth is bytes read plus
bytes written per second. Each workload is also timed against a copy of the same number of bytes
by rsnorm's threads, interleaved with it: "% copy" is that copy's time over rsnorm's, so a busy
moment on a shared machine moves both alike. The header also gives a large-buffer copy ceiling.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Any, Callable, ClassVar

import numpy as np

from . import _rsnorm, optim
from ._config import config
from .divergence import cross_entropy, entropy, js_divergence
from .norm import cosine_linear, cosine_linear_backward
from .selection import aic, bic

DEFAULT_SHAPES = [(1, 64), (64, 768), (4096, 1024), (8192, 4096)]
QUICK_SHAPES = [(1, 64), (64, 768), (512, 1024)]
EPS = 1e-5


@dataclass
class Workload:
    op: str
    shape: tuple[int, ...]
    dtype: str
    bytes_moved: int
    impls: dict[str, Callable[[], object]] = field(repr=False)


@dataclass
class Result:
    op: str
    shape: tuple[int, ...]
    dtype: str
    bytes_moved: int
    median_s: dict[str, float]

    def gbps(self, impl: str) -> float:
        return self.bytes_moved / self.median_s[impl] / 1e9


# ---------------------------------------------------------------- peers (optional)


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


def _onnxruntime():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return None
    return onnx, onnxruntime


def _ort_call(node_type: str, feeds: dict, attrs: dict, opset: int, threads: int):
    """A callable running a one-node ONNX model `node_type` on `feeds` (name → array, first one the
    data), or None when ONNX Runtime is absent or lacks the node."""
    peers = _onnxruntime()
    if peers is None:
        return None
    _, ort = peers
    from onnx import TensorProto, helper

    first = next(iter(feeds.values()))
    elem = TensorProto.FLOAT if first.dtype == np.float32 else TensorProto.DOUBLE
    inputs = [helper.make_tensor_value_info(k, elem, list(v.shape)) for k, v in feeds.items()]
    node = helper.make_node(node_type, list(feeds), ["Y"], **attrs)
    output = helper.make_tensor_value_info("Y", elem, list(first.shape))
    model = helper.make_model(
        helper.make_graph([node], node_type, inputs, [output]), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = min(model.ir_version, 10)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ORT's workers otherwise spin for a while after each run, stealing the cores from whatever
    # is timed next in the interleaved rounds.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
    except Exception:  # this runtime does not implement the node (or the opset)
        return None
    return partial(session.run, None, feeds)


# ---------------------------------------------------------------- workloads


def _numpy_layer_norm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(-1, keepdims=True)
    return centered / np.sqrt(var + EPS) * w + b


def _numpy_rms_norm(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w


def workloads(shapes, dtype=np.float32, threads: int = 1) -> list[Workload]:
    rng = np.random.default_rng(0)
    torch = _torch()
    if torch is not None:
        torch.set_num_threads(threads)
    out = []
    for shape in shapes:
        n = shape[-1]
        x = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
        w = rng.standard_normal(n).astype(dtype)
        b = rng.standard_normal(n).astype(dtype)
        y = np.empty_like(x)
        moved = 2 * x.nbytes
        ln: dict[str, Callable[[], object]] = {
            "rsnorm": partial(_rsnorm.layer_norm, x, n, w, b, EPS, out=y),
            "rsnorm alloc": partial(_rsnorm.layer_norm, x, n, w, b, EPS),
            "numpy": partial(_numpy_layer_norm, x, w, b),
        }
        rms: dict[str, Callable[[], object]] = {
            "rsnorm": partial(_rsnorm.rms_norm, x, n, w, EPS, out=y),
            "rsnorm alloc": partial(_rsnorm.rms_norm, x, n, w, EPS),
            "numpy": partial(_numpy_rms_norm, x, w),
        }
        if torch is not None:
            tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
            ln["torch"] = partial(torch.nn.functional.layer_norm, tx, (n,), tw, tb, EPS)
            if hasattr(torch.nn.functional, "rms_norm"):
                rms["torch"] = partial(torch.nn.functional.rms_norm, tx, (n,), tw, EPS)
        ln_ort = _ort_call(
            "LayerNormalization", {"X": x, "W": w, "B": b}, {"axis": -1, "epsilon": EPS}, 17, threads
        )
        rms_feeds, rms_attrs = {"X": x, "W": w}, {"axis": -1, "epsilon": EPS}
        rms_ort = _ort_call("RMSNormalization", rms_feeds, rms_attrs, 23, threads) or _ort_call(
            "SimplifiedLayerNormalization", rms_feeds, rms_attrs, 17, threads
        )
        for op, impls, ort_call in (("layer_norm", ln, ln_ort), ("rms_norm", rms, rms_ort)):
            if ort_call is not None:
                impls["onnxruntime"] = ort_call
            out.append(Workload(op, tuple(shape), np.dtype(dtype).name, moved, impls))
    return out


GROUPS = 32
LRN_SIZE = 5


def _numpy_batch_norm(x, mean, var, w, b):
    shape = (1, -1) + (1,) * (x.ndim - 2)
    scale = (w / np.sqrt(var + EPS)).reshape(shape)
    return (x - mean.reshape(shape)) * scale + b.reshape(shape)


def _numpy_batch_norm_train(x, w, b):
    axes = (0, *range(2, x.ndim))
    return _numpy_batch_norm(x, x.mean(axis=axes), x.var(axis=axes), w, b)


def _numpy_group_norm(x, groups, w, b):
    n, c = x.shape[:2]
    g = x.reshape(n, groups, -1)
    g = (g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + EPS)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return g.reshape(x.shape) * w.reshape(shape) + b.reshape(shape)


def _numpy_lrn(x, size, alpha=1e-4, beta=0.75, k=1.0):
    sq = np.pad(x * x, ((0, 0), (size // 2, (size - 1) // 2)) + ((0, 0),) * (x.ndim - 2))
    window = sum(sq[:, i : i + x.shape[1]] for i in range(size))
    return x / (k + alpha / size * window) ** beta


def channel_workloads(shape, dtype=np.float32, threads: int = 1) -> list[Workload]:
    """BatchNorm (train, eval), GroupNorm, InstanceNorm and LRN on an NCHW activation."""
    rng = np.random.default_rng(1)
    torch = _torch()
    x = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
    c = shape[1]
    groups = math.gcd(GROUPS, max(c // 2, 1))
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    mean, var = rng.standard_normal(c).astype(dtype), (rng.random(c) + 0.5).astype(dtype)
    rm, rv = mean.copy(), var.copy()
    y = np.empty_like(x)
    moved = 2 * x.nbytes
    impls: dict[str, dict[str, Callable[[], object]]] = {
        "batch_norm train": {
            "rsnorm": partial(_rsnorm.batch_norm, x, rm, rv, w, b, True, 0.1, EPS, out=y),
            "numpy": partial(_numpy_batch_norm_train, x, w, b),
        },
        "batch_norm eval": {
            "rsnorm": partial(_rsnorm.batch_norm, x, mean, var, w, b, False, 0.1, EPS, out=y),
            "numpy": partial(_numpy_batch_norm, x, mean, var, w, b),
        },
        "group_norm": {
            "rsnorm": partial(_rsnorm.group_norm, x, groups, w, b, EPS, out=y),
            "numpy": partial(_numpy_group_norm, x, groups, w, b),
        },
        "instance_norm": {
            "rsnorm": partial(_rsnorm.instance_norm, x, None, None, w, b, True, 0.1, EPS, out=y),
            "numpy": partial(_numpy_group_norm, x, c, w, b),
        },
        "lrn": {
            "rsnorm": partial(_rsnorm.local_response_norm, x, LRN_SIZE, out=y),
            "numpy": partial(_numpy_lrn, x, LRN_SIZE),
        },
    }
    impls["batch_norm train"]["rsnorm alloc"] = partial(_rsnorm.batch_norm, x, rm, rv, w, b, True, 0.1, EPS)
    impls["batch_norm eval"]["rsnorm alloc"] = partial(
        _rsnorm.batch_norm, x, mean, var, w, b, False, 0.1, EPS
    )
    impls["group_norm"]["rsnorm alloc"] = partial(_rsnorm.group_norm, x, groups, w, b, EPS)
    impls["instance_norm"]["rsnorm alloc"] = partial(_rsnorm.instance_norm, x, None, None, w, b)
    impls["lrn"]["rsnorm alloc"] = partial(_rsnorm.local_response_norm, x, LRN_SIZE)
    if torch is not None:
        f = torch.nn.functional
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        tm, tv, trm, trv = (torch.from_numpy(a.copy()) for a in (mean, var, mean, var))
        impls["batch_norm train"]["torch"] = partial(f.batch_norm, tx, trm, trv, tw, tb, True, 0.1, EPS)
        impls["batch_norm eval"]["torch"] = partial(f.batch_norm, tx, tm, tv, tw, tb, False, 0.1, EPS)
        impls["group_norm"]["torch"] = partial(f.group_norm, tx, groups, tw, tb, EPS)
        impls["instance_norm"]["torch"] = partial(f.instance_norm, tx, None, None, tw, tb, True, 0.1, EPS)
        impls["lrn"]["torch"] = partial(f.local_response_norm, tx, LRN_SIZE)
    ort_calls = {
        "batch_norm eval": _ort_call(
            "BatchNormalization", {"X": x, "S": w, "B": b, "M": mean, "V": var}, {"epsilon": EPS}, 15, threads
        ),
        "group_norm": _ort_call(
            "GroupNormalization",
            {"X": x, "S": w, "B": b},
            {"epsilon": EPS, "num_groups": groups},
            21,
            threads,
        ),
        "instance_norm": _ort_call(
            "InstanceNormalization", {"X": x, "S": w, "B": b}, {"epsilon": EPS}, 6, threads
        ),
        "lrn": _ort_call(
            "LRN", {"X": x}, {"size": LRN_SIZE, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, 13, threads
        ),
    }
    for op, call in ort_calls.items():
        if call is not None:
            impls[op]["onnxruntime"] = call
    loads = [
        Workload(op, tuple(shape), np.dtype(dtype).name, moved, by_impl) for op, by_impl in impls.items()
    ]
    return loads + channels_last_workloads(x, w, b, mean, var)


def channels_last_workloads(x_nchw, w, b, mean, var) -> list[Workload]:
    """BatchNorm over the last axis of an NHWC array (Keras' layout, or a (rows, features) table)."""
    x = np.ascontiguousarray(np.moveaxis(x_nchw, 1, -1))
    y = np.empty_like(x)
    rm, rv = mean.copy(), var.copy()
    axes = tuple(range(x.ndim - 1))
    train: dict[str, Callable[[], object]] = {
        "rsnorm": partial(_rsnorm.batch_norm, x, rm, rv, w, b, True, 0.1, EPS, axis=-1, out=y),
        "rsnorm alloc": partial(_rsnorm.batch_norm, x, rm, rv, w, b, True, 0.1, EPS, axis=-1),
        "numpy": partial(_numpy_channels_last_train, x, w, b, axes),
    }
    evaluate: dict[str, Callable[[], object]] = {
        "rsnorm": partial(_rsnorm.batch_norm, x, mean, var, w, b, False, 0.1, EPS, axis=-1, out=y),
        "rsnorm alloc": partial(_rsnorm.batch_norm, x, mean, var, w, b, False, 0.1, EPS, axis=-1),
        "numpy": partial(_numpy_channels_last, x, mean, var, w, b),
    }
    torch = _torch()
    if torch is not None:
        f = torch.nn.functional
        tx = torch.from_numpy(x_nchw).contiguous(memory_format=torch.channels_last)
        tw, tb = torch.from_numpy(w), torch.from_numpy(b)
        tm, tv, trm, trv = (torch.from_numpy(a.copy()) for a in (mean, var, mean, var))
        train["torch"] = partial(f.batch_norm, tx, trm, trv, tw, tb, True, 0.1, EPS)
        evaluate["torch"] = partial(f.batch_norm, tx, tm, tv, tw, tb, False, 0.1, EPS)
    dtype, moved = x.dtype.name, 2 * x.nbytes
    return [
        Workload("batch_norm train nhwc", x.shape, dtype, moved, train),
        Workload("batch_norm eval nhwc", x.shape, dtype, moved, evaluate),
    ]


def _numpy_channels_last(x, mean, var, w, b):
    scale = w / np.sqrt(var + EPS)
    return (x - mean) * scale + b


def _numpy_channels_last_train(x, w, b, axes):
    return _numpy_channels_last(x, x.mean(axis=axes), x.var(axis=axes), w, b)


def _rsnorm_layer_norm_train_step(x, w, b, go):
    _, mean, rstd = _rsnorm.layer_norm(x, x.shape[-1], w, b, EPS, return_stats=True)
    return _rsnorm.layer_norm_backward(go, x, mean, rstd, w, b)


def _numpy_layer_norm_train_step(x, w, b, go):
    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    rstd = 1 / np.sqrt((centered * centered).mean(-1, keepdims=True) + EPS)
    xhat = centered * rstd
    _ = xhat * w + b
    g = go * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (go * xhat).sum(0), go.sum(0)


def _rsnorm_batch_norm_train_step(x, w, b, go):
    _, mean, rstd = _rsnorm.batch_norm(x, None, None, w, b, True, 0.1, EPS, return_stats=True)
    return _rsnorm.batch_norm_backward(go, x, mean, rstd, w)


def _numpy_batch_norm_train_step(x, w, b, go):
    axes = (0, *range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=axes, keepdims=True)
    centered = x - mean
    rstd = 1 / np.sqrt((centered * centered).mean(axis=axes, keepdims=True) + EPS)
    xhat = centered * rstd
    _ = xhat * w.reshape(shape) + b.reshape(shape)
    g = go * w.reshape(shape)
    dx = rstd * (g - g.mean(axis=axes, keepdims=True) - xhat * (g * xhat).mean(axis=axes, keepdims=True))
    return dx, (go * xhat).sum(axis=axes), go.sum(axis=axes)


def _torch_layer_norm(torch, tx, tw, tb):
    return torch.nn.functional.layer_norm(tx, (tx.shape[-1],), tw, tb, EPS)


def _torch_batch_norm(torch, tx, tw, tb):
    return torch.nn.functional.batch_norm(tx, None, None, tw, tb, True, 0.1, EPS)


def _torch_train_step(torch, forward, x, w, b, go):
    tx = torch.from_numpy(x).requires_grad_()
    tw, tb = torch.from_numpy(w).requires_grad_(), torch.from_numpy(b).requires_grad_()
    y = forward(tx, tw, tb)
    return torch.autograd.grad(y, (tx, tw, tb), torch.from_numpy(go))


def backward_workloads(ln_shape, bn_shape, dtype=np.float32) -> list[Workload]:
    """Forward + backward (a training step's norm work) of LayerNorm and BatchNorm."""
    rng = np.random.default_rng(2)
    torch = _torch()
    loads = []
    for op, shape, ours, theirs in (
        ("layer_norm fwd+bwd", ln_shape, _rsnorm_layer_norm_train_step, _numpy_layer_norm_train_step),
        ("batch_norm fwd+bwd", bn_shape, _rsnorm_batch_norm_train_step, _numpy_batch_norm_train_step),
    ):
        x = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
        go = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
        c = shape[-1] if op.startswith("layer") else shape[1]
        w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
        impls: dict[str, Callable[[], object]] = {
            "rsnorm": partial(ours, x, w, b, go),
            "numpy": partial(theirs, x, w, b, go),
        }
        if torch is not None:
            forward = partial(_torch_layer_norm if op.startswith("layer") else _torch_batch_norm, torch)
            impls["torch"] = partial(_torch_train_step, torch, forward, x, w, b, go)
        # Forward reads x, writes y; backward reads grad_out and x, writes dx.
        loads.append(Workload(op, tuple(shape), np.dtype(dtype).name, 5 * x.nbytes, impls))
    return loads


class _NumpyAdam:
    """Adam written as in-place NumPy, the everyday peer."""

    def __init__(self, params, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        """`weight_decay` is AdamW's decoupled decay (0: Adam)."""
        self.params, self.lr, self.betas, self.eps, self.t = params, lr, betas, eps, 0
        self.weight_decay = weight_decay
        self.m = [np.zeros_like(p) for p in params]
        self.v = [np.zeros_like(p) for p in params]

    def step(self, grads):
        self.t += 1
        b1, b2 = self.betas
        step_size = self.lr / (1 - b1**self.t)
        bc2_sqrt = math.sqrt(1 - b2**self.t)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            if self.weight_decay:
                p *= 1 - self.lr * self.weight_decay
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            denom = np.sqrt(v)
            denom /= bc2_sqrt
            denom += self.eps
            p -= step_size * m / denom


class _NumpySgdMomentum:
    def __init__(self, params, lr=1e-3, momentum=0.9, nesterov=False):
        self.params, self.lr, self.momentum, self.nesterov = params, lr, momentum, nesterov
        self.buf = [np.zeros_like(p) for p in params]

    def step(self, grads):
        for p, g, b in zip(self.params, grads, self.buf):
            b *= self.momentum
            b += g
            p -= self.lr * (g + self.momentum * b if self.nesterov else b)


class _NumpyOptimizer:
    """torch.optim's single-tensor updates for the optimizers without a class above, written as
    in-place NumPy."""

    STATE_ARRAYS: ClassVar[dict[str, int]] = {"sgd": 0, "adagrad": 1, "adadelta": 2, "rmsprop": 1}

    def __init__(self, kind, params, lr=1e-3):
        self.kind, self.params, self.lr, self.t = kind, params, lr, 0
        self.state = [[np.zeros_like(p) for _ in range(self.STATE_ARRAYS[kind])] for p in params]

    def step(self, grads):
        self.t += 1
        update = getattr(self, "_" + self.kind.replace(" ", "_"))
        for p, g, state in zip(self.params, grads, self.state):
            update(p, g, *state)

    def _sgd(self, p, g):
        p -= self.lr * g

    def _adagrad(self, p, g, total, eps=1e-10):
        total += g * g
        p -= self.lr * g / (np.sqrt(total) + eps)

    def _adadelta(self, p, g, square_avg, acc_delta, rho=0.9, eps=1e-6):
        square_avg *= rho
        square_avg += (1 - rho) * g * g
        delta = np.sqrt(acc_delta + eps) / np.sqrt(square_avg + eps) * g
        acc_delta *= rho
        acc_delta += (1 - rho) * delta * delta
        p -= self.lr * delta

    def _rmsprop(self, p, g, square_avg, alpha=0.99, eps=1e-8):
        square_avg *= alpha
        square_avg += (1 - alpha) * g * g
        p -= self.lr * g / (np.sqrt(square_avg) + eps)


def _torch_optimizer(torch, cls, params, grads, **options):
    tensors = [torch.from_numpy(p) for p in params]
    for t, g in zip(tensors, grads):
        t.grad = torch.from_numpy(g)
    try:
        step = cls(tensors, **options).step
        step()
    except (RuntimeError, TypeError, ValueError):  # this torch lacks the variant (e.g. fused on CPU)
        return None
    return step


# (op, class name in rsnorm.optim and torch.optim, its options, the NumPy peer's constructor or
# `_NumpyOptimizer` kind, bytes per float32 parameter: the parameter and gradient read, the
# parameter and each state array read and written).
OPTIMIZERS: tuple[tuple[str, str, dict[str, object], Callable[..., Any] | str, int], ...] = (
    ("adam", "Adam", {}, _NumpyAdam, 28),
    ("adamw", "AdamW", {}, partial(_NumpyAdam, weight_decay=0.01), 28),
    ("sgd", "SGD", {}, "sgd", 12),
    ("sgd momentum", "SGD", {"momentum": 0.9}, _NumpySgdMomentum, 20),
    (
        "sgd nesterov",
        "SGD",
        {"momentum": 0.9, "nesterov": True},
        partial(_NumpySgdMomentum, nesterov=True),
        20,
    ),
    ("adagrad", "Adagrad", {}, "adagrad", 20),
    ("adadelta", "Adadelta", {}, "adadelta", 28),
    ("rmsprop", "RMSprop", {}, "rmsprop", 20),
)


def optimizer_workloads(sizes: dict[str, tuple[int, ...]], dtype=np.float32) -> list[Workload]:
    """Every optimizer's step over one large tensor and over many small ones, at lr 1e-3 and
    otherwise default settings."""
    rng = np.random.default_rng(3)
    torch = _torch()
    loads = []
    for label, shapes in sizes.items():
        n = sum(shapes)
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]

        def params(shapes=shapes):
            return [rng.standard_normal(s).astype(dtype) for s in shapes]

        for op, cls_name, options, peer, bytes_per in OPTIMIZERS:
            ours = getattr(optim, cls_name)(params(), lr=1e-3, **options)
            theirs = peer(params(), lr=1e-3) if not isinstance(peer, str) else _NumpyOptimizer(peer, params())
            impls: dict[str, Callable[[], object]] = {
                "rsnorm": partial(ours.step, grads),
                "numpy": partial(theirs.step, grads),
            }
            if torch is not None:
                cls = getattr(torch.optim, cls_name)
                for variant, extra in (("torch", {"foreach": True}), ("torch fused", {"fused": True})):
                    stepper = _torch_optimizer(torch, cls, params(), grads, lr=1e-3, **options, **extra)
                    if stepper is not None:
                        impls[variant] = stepper
            loads.append(Workload(f"{op} {label}", (n,), np.dtype(dtype).name, bytes_per * n, impls))
    return loads


def _scipy():
    try:
        import scipy.spatial.distance
        import scipy.stats
    except ImportError:
        return None
    return scipy


def _numpy_softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _numpy_channel_softmax(x):
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _numpy_cross_entropy(x, target):
    shifted = x - x.max(axis=-1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=-1))
    return (log_sum - shifted[np.arange(len(x)), target]).mean()


def _numpy_kl(p, q):
    p = p / p.sum(-1, keepdims=True)
    q = q / q.sum(-1, keepdims=True)
    return (p * np.log(p / q)).sum(-1)


def divergence_workloads(
    shape, w1_samples: int | None, segmentation_shape=None, dtype=np.float32
) -> list[Workload]:
    """softmax, cross-entropy of logits and KL/JS over rows; (given) softmax over the channels of a
    segmentation output (N, classes, H, W) and Wasserstein-1 between two samples."""
    rng = np.random.default_rng(4)
    torch, scipy = _torch(), _scipy()
    x = rng.standard_normal(shape).astype(dtype)
    p = rng.random(shape).astype(np.float64) + 1e-3
    q = rng.random(shape).astype(np.float64) + 1e-3
    y = np.empty_like(x)
    soft: dict[str, Callable[[], object]] = {
        "rsnorm": partial(_rsnorm.softmax, x, -1, out=y),
        "rsnorm alloc": partial(_rsnorm.softmax, x, -1),
        "numpy": partial(_numpy_softmax, x),
    }
    kl: dict[str, Callable[[], object]] = {
        "rsnorm": partial(_rsnorm.information, "kl_div", p, q, -1, None),
        "numpy": partial(_numpy_kl, p, q),
    }
    js: dict[str, Callable[[], object]] = {
        "rsnorm": partial(_rsnorm.information, "js_distance", p, q, -1, None)
    }
    if scipy is not None:
        kl["scipy"] = partial(scipy.stats.entropy, p, q, axis=-1)
        js["scipy"] = partial(scipy.spatial.distance.jensenshannon, p, q, axis=-1)
    if torch is not None:
        soft["torch"] = partial(torch.softmax, torch.from_numpy(x), -1)
    target = rng.integers(0, shape[-1], shape[0])
    xent: dict[str, Callable[[], object]] = {
        "rsnorm": partial(_rsnorm.cross_entropy_with_logits, x, target),
        "numpy": partial(_numpy_cross_entropy, x, target),
    }
    if torch is not None:
        xent["torch"] = partial(
            torch.nn.functional.cross_entropy, torch.from_numpy(x), torch.from_numpy(target)
        )
    loads = [
        Workload("softmax", tuple(shape), np.dtype(dtype).name, 2 * x.nbytes, soft),
        Workload("cross_entropy logits", tuple(shape), np.dtype(dtype).name, x.nbytes, xent),
        Workload("kl_div", tuple(shape), "float64", 2 * p.nbytes, kl),
        Workload("js_distance", tuple(shape), "float64", 2 * p.nbytes, js),
    ]
    if segmentation_shape:
        seg = rng.standard_normal(segmentation_shape).astype(dtype)
        seg_out = np.empty_like(seg)
        channel: dict[str, Callable[[], object]] = {
            "rsnorm": partial(_rsnorm.softmax, seg, 1, out=seg_out),
            "rsnorm alloc": partial(_rsnorm.softmax, seg, 1),
            "numpy": partial(_numpy_channel_softmax, seg),
        }
        if torch is not None:
            channel["torch"] = partial(torch.softmax, torch.from_numpy(seg), 1)
        loads.append(Workload("softmax axis=1", seg.shape, np.dtype(dtype).name, 2 * seg.nbytes, channel))
    if w1_samples:
        u, v = rng.standard_normal(w1_samples), rng.standard_normal(w1_samples) * 2 + 0.5
        w1: dict[str, Callable[[], object]] = {"rsnorm": partial(_rsnorm.wasserstein_1d, u, v)}
        if scipy is not None:
            w1["scipy"] = partial(scipy.stats.wasserstein_distance, u, v)
        loads.append(Workload("wasserstein_1d", (w1_samples,), "float64", u.nbytes + v.nbytes, w1))
    return loads


# ---------------------------------------------------------------- the rest of the API
# Ops the workloads above leave out, so every public op is timed: fused residual norms,
# l2 / weight / cosine normalization, SELU, log-softmax, moments, the backward of every norm, the
# other optimizers, and the information measures. Each has a NumPy peer (the reference a user
# would otherwise write) and, where they have the op, PyTorch and ONNX Runtime.


def _numpy_rms_norm_train_step(x, w, go):
    rstd = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + EPS)
    xhat = x * rstd
    _ = xhat * w
    g = go * w
    dx = rstd * (g - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (go * xhat).sum(0)


def _numpy_group_norm_train_step(x, groups, w, go):
    n, c = x.shape[:2]
    shape = (1, c) + (1,) * (x.ndim - 2)
    xg = x.reshape(n, groups, -1)
    centered = xg - xg.mean(-1, keepdims=True)
    rstd = 1 / np.sqrt((centered * centered).mean(-1, keepdims=True) + EPS)
    xhat = (centered * rstd).reshape(x.shape)
    _ = xhat * w.reshape(shape)
    g = (go * w.reshape(shape)).reshape(n, groups, -1)
    xh = xhat.reshape(n, groups, -1)
    dx = rstd * (g - g.mean(-1, keepdims=True) - xh * (g * xh).mean(-1, keepdims=True))
    axes = (0, *range(2, x.ndim))
    return dx.reshape(x.shape), (go * xhat).sum(axis=axes), go.sum(axis=axes)


def _numpy_l2_normalize(x):
    return x / np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), 1e-12)


def _numpy_l2_normalize_train_step(x, go):
    norm = np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), 1e-12)
    y = x / norm
    return (go - y * (go * y).sum(-1, keepdims=True)) / norm


def _numpy_weight_norm(v, g):
    return v * (g / np.sqrt((v * v).sum(-1)))[:, None]


def _numpy_weight_norm_train_step(v, g, go):
    norm = np.sqrt((v * v).sum(-1, keepdims=True))
    direction = v / norm
    _ = direction * g[:, None]
    grad_g = (go * direction).sum(-1)
    return g[:, None] / norm * (go - direction * grad_g[:, None]), grad_g


SELU_ALPHA = 1.6732632423543772
SELU_SCALE = 1.0507009873554805


def _numpy_selu(x):
    return SELU_SCALE * np.where(x > 0, x, SELU_ALPHA * np.expm1(np.minimum(x, 0)))


def _numpy_selu_train_step(x, go):
    _ = _numpy_selu(x)
    return go * SELU_SCALE * np.where(x > 0, 1, SELU_ALPHA * np.exp(np.minimum(x, 0)))


def _numpy_log_softmax(x):
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def _numpy_moments(x):
    mean = x.mean(-1, dtype=np.float64)
    return x.shape[-1], mean, ((x - mean[:, None]) ** 2).sum(-1, dtype=np.float64)


def _numpy_merge_moments(a, b):
    (na, ma, m2a), (nb, mb, m2b) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), m2a + m2b + delta * delta * (na * nb / n)


def _numpy_cosine_linear(x, w):
    return _numpy_l2_normalize(x) @ _numpy_l2_normalize(w).T


def _numpy_cosine_linear_train_step(x, w, go):
    x_norm = np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), 1e-8)
    w_norm = np.maximum(np.sqrt((w * w).sum(-1, keepdims=True)), 1e-8)
    xu, wu = x / x_norm, w / w_norm
    _ = xu @ wu.T
    gx, gw = go @ wu, go.T @ xu
    dx = (gx - xu * (gx * xu).sum(-1, keepdims=True)) / x_norm
    dw = (gw - wu * (gw * wu).sum(-1, keepdims=True)) / w_norm
    return dx, dw


def _rsnorm_rms_norm_train_step(x, w, go):
    _, rstd = _rsnorm.rms_norm(x, x.shape[-1], w, EPS, return_stats=True)
    return _rsnorm.rms_norm_backward(go, x, rstd, w)


def _rsnorm_add_layer_norm_train_step(x, residual, w, b, go):
    _, total, mean, rstd = _rsnorm.add_layer_norm(x, residual, w, b, EPS, return_stats=True)
    return _rsnorm.add_layer_norm_backward(go, total, mean, rstd, w, b)


def _rsnorm_add_rms_norm_train_step(x, residual, w, go):
    _, total, rstd = _rsnorm.add_rms_norm(x, residual, w, EPS, return_stats=True)
    return _rsnorm.add_rms_norm_backward(go, total, rstd, w)


def _rsnorm_group_norm_train_step(x, groups, w, b, go):
    _, mean, rstd = _rsnorm.group_norm(x, groups, w, b, EPS, return_stats=True)
    return _rsnorm.group_norm_backward(go, x, mean, rstd, w, num_groups=groups)


def _rsnorm_instance_norm_train_step(x, w, b, go):
    _, mean, rstd = _rsnorm.instance_norm(x, None, None, w, b, True, 0.1, EPS, return_stats=True)
    return _rsnorm.instance_norm_backward(go, x, mean, rstd, w)


def _rsnorm_l2_normalize_train_step(x, go):
    _rsnorm.l2_normalize(x)
    return _rsnorm.l2_normalize_backward(go, x)


def _rsnorm_weight_norm_train_step(v, g, go):
    _rsnorm.weight_norm(v, g, 0)
    return _rsnorm.weight_norm_backward(go, v, g, dim=0)


def _rsnorm_selu_train_step(x, go):
    _rsnorm.selu(x)
    return _rsnorm.selu_backward(go, x)


def _rsnorm_cosine_linear_train_step(x, w, go):
    cosine_linear(x, w)
    return cosine_linear_backward(go, x, w)


def _torch_train_step_of(torch, forward, inputs, go):
    """PyTorch autograd over `forward(*inputs)`: gradients of every input."""
    tensors = [torch.from_numpy(a).requires_grad_() for a in inputs]
    y = forward(*tensors)
    return torch.autograd.grad(y, tensors, torch.from_numpy(go))


COSINE_OUT_FEATURES = 256


def _add_then_norm(norm, x, residual):
    """A residual-add norm as a peer runs it: the sum once, then its norm; returns both."""
    total = x + residual
    return norm(total), total


def more_row_workloads(shape, dtype=np.float32, threads: int = 1) -> list[Workload]:
    """The rest of the row ops on (rows, features): residual-add norms, l2 / weight / cosine
    normalization, SELU, log-softmax, row moments and their merge."""
    rng = np.random.default_rng(5)
    torch = _torch()
    n = shape[-1]
    x, residual = (rng.standard_normal(shape, dtype=np.float64).astype(dtype) for _ in range(2))
    w, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    g = (rng.random(shape[0]) + 0.5).astype(dtype)
    weight = rng.standard_normal((COSINE_OUT_FEATURES, n)).astype(dtype)
    y, total = np.empty_like(x), np.empty_like(x)
    stats = _rsnorm.moments(x, -1)
    impls: dict[str, dict[str, Callable[[], object]]] = {
        "add_layer_norm": {
            "rsnorm": partial(_rsnorm.add_layer_norm, x, residual, w, b, EPS, out=y, residual_out=total),
            "numpy": partial(_add_then_norm, partial(_numpy_layer_norm, w=w, b=b), x, residual),
        },
        "add_rms_norm": {
            "rsnorm": partial(_rsnorm.add_rms_norm, x, residual, w, EPS, out=y, residual_out=total),
            "numpy": partial(_add_then_norm, partial(_numpy_rms_norm, w=w), x, residual),
        },
        "l2_normalize": {
            "rsnorm": partial(_rsnorm.l2_normalize, x, out=y),
            "numpy": partial(_numpy_l2_normalize, x),
        },
        "weight_norm": {
            "rsnorm": partial(_rsnorm.weight_norm, x, g, 0, out=y),
            "numpy": partial(_numpy_weight_norm, x, g),
        },
        "selu": {"rsnorm": partial(_rsnorm.selu, x, out=y), "numpy": partial(_numpy_selu, x)},
        "log_softmax": {
            "rsnorm": partial(_rsnorm.log_softmax, x, -1, out=y),
            "numpy": partial(_numpy_log_softmax, x),
        },
        "moments": {"rsnorm": partial(_rsnorm.moments, x, -1), "numpy": partial(_numpy_moments, x)},
        "merge_moments": {
            "rsnorm": partial(_rsnorm.merge_moments, stats, stats),
            "numpy": partial(_numpy_merge_moments, stats, stats),
        },
        "cosine_linear": {
            "rsnorm": partial(cosine_linear, x, weight),
            "numpy": partial(_numpy_cosine_linear, x, weight),
        },
    }
    if torch is not None:
        f = torch.nn.functional
        tx, tr, tw, tb = (torch.from_numpy(a) for a in (x, residual, w, b))
        tg, tweight = torch.from_numpy(g), torch.from_numpy(weight)
        impls["add_layer_norm"]["torch"] = partial(
            _add_then_norm, partial(f.layer_norm, normalized_shape=(n,), weight=tw, bias=tb, eps=EPS), tx, tr
        )
        if hasattr(f, "rms_norm"):
            impls["add_rms_norm"]["torch"] = partial(
                _add_then_norm, partial(f.rms_norm, normalized_shape=(n,), weight=tw, eps=EPS), tx, tr
            )
        impls["l2_normalize"]["torch"] = partial(f.normalize, tx, 2.0, -1)
        impls["weight_norm"]["torch"] = partial(torch._weight_norm, tx, tg[:, None], 0)
        impls["selu"]["torch"] = partial(torch.selu, tx)
        impls["log_softmax"]["torch"] = partial(torch.log_softmax, tx, -1)
        impls["moments"]["torch"] = partial(torch.var_mean, tx, -1)
        impls["cosine_linear"]["torch"] = lambda: f.linear(
            f.normalize(tx, dim=-1), f.normalize(tweight, dim=-1)
        )
    ort_calls = {
        "l2_normalize": _ort_call("LpNormalization", {"X": x}, {"axis": -1, "p": 2}, 1, threads),
        "selu": _ort_call("Selu", {"X": x}, {}, 6, threads),
        "log_softmax": _ort_call("LogSoftmax", {"X": x}, {"axis": -1}, 13, threads),
    }
    for op, call in ort_calls.items():
        if call is not None:
            impls[op]["onnxruntime"] = call
    rows = shape[0]
    # Bytes read + written: x-sized arrays, the per-row statistics, and for cosine_linear the
    # matmul's operands and output.
    moved = {
        "add_layer_norm": 4 * x.nbytes,
        "add_rms_norm": 4 * x.nbytes,
        "moments": x.nbytes + 3 * 8 * rows,
        "merge_moments": 9 * 8 * rows,
        "cosine_linear": x.nbytes + weight.nbytes + rows * COSINE_OUT_FEATURES * x.itemsize,
    }
    return [
        Workload(op, tuple(shape), np.dtype(dtype).name, moved.get(op, 2 * x.nbytes), by_impl)
        for op, by_impl in impls.items()
    ]


def more_backward_workloads(row_shape, channel_shape, dtype=np.float32) -> list[Workload]:
    """Forward + backward of every norm the backward workloads above leave out."""
    rng = np.random.default_rng(6)
    torch = _torch()
    dt = np.dtype(dtype).name
    n = row_shape[-1]
    x, residual, go = (rng.standard_normal(row_shape, dtype=np.float64).astype(dtype) for _ in range(3))
    w, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    g = (rng.random(row_shape[0]) + 0.5).astype(dtype)
    weight = rng.standard_normal((COSINE_OUT_FEATURES, n)).astype(dtype)
    go_cos = rng.standard_normal((row_shape[0], COSINE_OUT_FEATURES)).astype(dtype)
    row: dict[str, dict[str, Callable[[], object]]] = {
        "rms_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_rms_norm_train_step, x, w, go),
            "numpy": partial(_numpy_rms_norm_train_step, x, w, go),
        },
        "add_layer_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_add_layer_norm_train_step, x, residual, w, b, go),
            "numpy": lambda: _numpy_layer_norm_train_step(x + residual, w, b, go),
        },
        "add_rms_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_add_rms_norm_train_step, x, residual, w, go),
            "numpy": lambda: _numpy_rms_norm_train_step(x + residual, w, go),
        },
        "l2_normalize fwd+bwd": {
            "rsnorm": partial(_rsnorm_l2_normalize_train_step, x, go),
            "numpy": partial(_numpy_l2_normalize_train_step, x, go),
        },
        "weight_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_weight_norm_train_step, x, g, go),
            "numpy": partial(_numpy_weight_norm_train_step, x, g, go),
        },
        "selu fwd+bwd": {
            "rsnorm": partial(_rsnorm_selu_train_step, x, go),
            "numpy": partial(_numpy_selu_train_step, x, go),
        },
        "cosine_linear fwd+bwd": {
            "rsnorm": partial(_rsnorm_cosine_linear_train_step, x, weight, go_cos),
            "numpy": partial(_numpy_cosine_linear_train_step, x, weight, go_cos),
        },
    }
    c = channel_shape[1]
    groups = math.gcd(GROUPS, max(c // 2, 1))
    xc, goc = (rng.standard_normal(channel_shape, dtype=np.float64).astype(dtype) for _ in range(2))
    wc, bc = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    channel: dict[str, dict[str, Callable[[], object]]] = {
        "group_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_group_norm_train_step, xc, groups, wc, bc, goc),
            "numpy": partial(_numpy_group_norm_train_step, xc, groups, wc, goc),
        },
        "instance_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_instance_norm_train_step, xc, wc, bc, goc),
            "numpy": partial(_numpy_group_norm_train_step, xc, c, wc, goc),
        },
    }
    if torch is not None:
        f = torch.nn.functional
        step = partial(_torch_train_step_of, torch)
        row["add_layer_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, r, w, b: f.layer_norm(x + r, (n,), w, b, EPS), (x, residual, w, b), go
        )
        row["l2_normalize fwd+bwd"]["torch"] = partial(step, lambda x: f.normalize(x, dim=-1), (x,), go)
        row["weight_norm fwd+bwd"]["torch"] = partial(
            step, lambda v, g: torch._weight_norm(v, g[:, None], 0), (x, g), go
        )
        row["selu fwd+bwd"]["torch"] = partial(step, torch.selu, (x,), go)
        row["cosine_linear fwd+bwd"]["torch"] = partial(
            step,
            lambda x, w: f.linear(f.normalize(x, dim=-1), f.normalize(w, dim=-1)),
            (x, weight),
            go_cos,
        )
        channel["group_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, w, b: f.group_norm(x, groups, w, b, EPS), (xc, wc, bc), goc
        )
        channel["instance_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, w, b: f.instance_norm(x, weight=w, bias=b, eps=EPS), (xc, wc, bc), goc
        )
        if hasattr(f, "rms_norm"):
            row["rms_norm fwd+bwd"]["torch"] = partial(
                step, lambda x, w: f.rms_norm(x, (n,), w, EPS), (x, w), go
            )
            row["add_rms_norm fwd+bwd"]["torch"] = partial(
                step, lambda x, r, w: f.rms_norm(x + r, (n,), w, EPS), (x, residual, w), go
            )
    # Forward: read x (and the residual), write y (and the sum); backward: read grad_out and x (or
    # the sum), write dx. cosine_linear: the matmuls' operands and outputs, both passes.
    cos_bytes = 3 * x.nbytes + 3 * weight.nbytes + 2 * go_cos.nbytes
    moved = {"add_layer_norm fwd+bwd": 7 * x.nbytes, "add_rms_norm fwd+bwd": 7 * x.nbytes}
    moved["cosine_linear fwd+bwd"] = cos_bytes
    loads = [Workload(op, tuple(row_shape), dt, moved.get(op, 5 * x.nbytes), i) for op, i in row.items()]
    loads += [Workload(op, tuple(channel_shape), dt, 5 * xc.nbytes, i) for op, i in channel.items()]
    return loads


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


def more_divergence_workloads(shape, selection_size: int | None) -> list[Workload]:
    """Entropy, cross-entropy of probabilities and the JS divergence over float64 rows; (given)
    AIC and BIC of a vector of fitted models."""
    rng = np.random.default_rng(7)
    scipy = _scipy()
    p = rng.random(shape) + 1e-3
    q = rng.random(shape) + 1e-3
    impls: dict[str, dict[str, Callable[[], object]]] = {
        "entropy": {"rsnorm": partial(entropy, p), "numpy": partial(_numpy_entropy, p)},
        "cross_entropy": {
            "rsnorm": partial(cross_entropy, p, q),
            "numpy": partial(_numpy_cross_entropy_probs, p, q),
        },
        "js_divergence": {
            "rsnorm": partial(js_divergence, p, q),
            "numpy": partial(_numpy_js_divergence, p, q),
        },
    }
    if scipy is not None:
        impls["entropy"]["scipy"] = partial(scipy.stats.entropy, p, axis=-1)
        impls["js_divergence"]["scipy"] = lambda: scipy.spatial.distance.jensenshannon(p, q, axis=-1) ** 2
    arrays = {"entropy": 1, "cross_entropy": 2, "js_divergence": 2}
    loads = [Workload(op, tuple(shape), "float64", arrays[op] * p.nbytes, i) for op, i in impls.items()]
    if selection_size:
        log_likelihood = -rng.random(selection_size) * 1e3
        k = rng.integers(1, 20, selection_size)
        samples = rng.integers(100, 10_000, selection_size)
        # Read the log-likelihoods, parameter counts (and sample sizes); write the criterion.
        loads.append(
            Workload(
                "aic",
                (selection_size,),
                "float64",
                3 * 8 * selection_size,
                {"rsnorm": partial(aic, log_likelihood, k), "numpy": lambda: 2 * k - 2 * log_likelihood},
            )
        )
        loads.append(
            Workload(
                "bic",
                (selection_size,),
                "float64",
                4 * 8 * selection_size,
                {
                    "rsnorm": partial(bic, log_likelihood, k, samples),
                    "numpy": lambda: k * np.log(samples) - 2 * log_likelihood,
                },
            )
        )
    return loads


@dataclass(frozen=True)
class Suite:
    """The shapes a run covers: small ones (per-call latency) and large ones (bandwidth)."""

    row_shapes: tuple[tuple[int, ...], ...]
    channel_shapes: tuple[tuple[int, ...], ...]
    backward_ln_shapes: tuple[tuple[int, ...], ...]
    backward_bn_shapes: tuple[tuple[int, ...], ...]
    more_row_shapes: tuple[tuple[int, ...], ...]
    optim_sizes: dict[str, tuple[int, ...]]
    divergence_shapes: tuple[tuple[int, ...], ...]
    segmentation_shape: tuple[int, ...]
    w1_samples: int
    rounds: int
    target_s: float
    settle_s: float

    def workloads(self, threads: int) -> list[Workload]:
        loads = workloads(self.row_shapes, threads=threads)
        for shape in self.channel_shapes:
            loads += channel_workloads(shape, threads=threads)
        for ln_shape, bn_shape in zip(self.backward_ln_shapes, self.backward_bn_shapes):
            loads += backward_workloads(ln_shape, bn_shape)
            loads += more_backward_workloads(ln_shape, bn_shape)
        for shape in self.more_row_shapes:
            loads += more_row_workloads(shape, threads=threads)
        loads += optimizer_workloads(self.optim_sizes)
        for k, shape in enumerate(self.divergence_shapes):
            last = k == len(self.divergence_shapes) - 1
            loads += divergence_workloads(
                shape, self.w1_samples if last else None, self.segmentation_shape if last else None
            )
            loads += more_divergence_workloads(shape, self.w1_samples if last else None)
        return loads


SUITES = {
    "full": Suite(
        row_shapes=((1, 64), (64, 768), (4096, 1024), (8192, 4096)),
        channel_shapes=((4, 32, 16, 16), (32, 512, 7, 7), (32, 64, 56, 56)),
        backward_ln_shapes=((64, 768), (4096, 1024)),
        backward_bn_shapes=((4, 32, 16, 16), (16, 64, 56, 56)),
        more_row_shapes=((64, 768), (4096, 1024)),
        optim_sizes={"100k": (100_000,), "10M": (10_000_000,), "200x50k": (50_000,) * 200},
        divergence_shapes=((64, 1000), (4096, 1000)),
        segmentation_shape=(8, 21, 128, 128),
        w1_samples=1_000_000,
        rounds=11,
        target_s=0.02,
        settle_s=0.005,
    ),
    "quick": Suite(
        row_shapes=((1, 64), (64, 768), (512, 1024)),
        channel_shapes=((4, 16, 28, 28),),
        backward_ln_shapes=((256, 256),),
        backward_bn_shapes=((4, 16, 14, 14),),
        more_row_shapes=((64, 256),),
        optim_sizes={"1M": (1_000_000,), "20x50k": (50_000,) * 20},
        divergence_shapes=((256, 100),),
        segmentation_shape=(2, 21, 32, 32),
        w1_samples=10_000,
        rounds=3,
        target_s=0.002,
        settle_s=0.0,
    ),
}


# ---------------------------------------------------------------- timing


def _calls_per_sample(fn, target_s: float) -> int:
    """Calls per timed sample so that one sample lasts about target_s (timer noise stays small)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(target_s / once))


def _time_interleaved(
    impls: dict[str, Callable[[], object]], rounds: int, target_s: float, settle_s: float = 0.0
) -> dict[str, float]:
    """Median seconds per call of each implementation. Each round times a sample of every
    implementation in turn; after each sample the machine idles `settle_s`, so a peer's worker
    threads that spin after a call (PyTorch's OpenMP pool) stop before the next sample starts. Within
    its own sample each implementation runs as it would in a loop, spinning included."""
    calls = {name: _calls_per_sample(fn, target_s) for name, fn in impls.items()}
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            k = calls[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
            if settle_s:
                time.sleep(settle_s)
    return {name: float(np.median(s)) for name, s in samples.items()}


def copy_bandwidth(nbytes: int = 256 << 20, rounds: int = 15) -> float:
    """GB/s (read + written) of rsnorm's threads copying a buffer far larger than the caches."""
    src = np.ones(nbytes // 4, dtype=np.float32)
    dst = np.empty_like(src)
    median = _time_interleaved({"copy": lambda: _rsnorm._parallel_copy(src, dst)}, rounds, 0.0)["copy"]
    return 2 * src.nbytes / median / 1e9


class _Progress:
    """A one-line progress bar on stderr."""

    def __init__(self, total: int, enabled: bool):
        self.total, self.done, self.enabled = total, 0, enabled

    def step(self, label: str) -> None:
        if not self.enabled:
            return
        width = 30
        filled = width * self.done // max(self.total, 1)
        bar = "#" * filled + "." * (width - filled)
        sys.stderr.write(f"\r[{bar}] {self.done}/{self.total} {label:<44}")
        sys.stderr.flush()
        self.done += 1

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\r" + " " * 90 + "\r")
            sys.stderr.flush()


def _copy_reference(nbytes: int) -> Callable[[], object]:
    """rsnorm's threads copying nbytes / 2 bytes into another buffer: the same bytes read plus
    written as a workload that moves nbytes."""
    src = np.ones(max(nbytes // 8, 1), dtype=np.float32)
    return partial(_rsnorm._parallel_copy, src, np.empty_like(src))


def run(
    suite: Suite | str = "full",
    rounds: int | None = None,
    only: str | None = None,
    progress: bool = True,
) -> dict:
    """Times every workload of `suite` (those whose op contains `only`, if given) against its peers
    and a same-bytes copy, interleaved; returns the report (config, ceiling, per-workload medians)."""
    suite = SUITES[suite] if isinstance(suite, str) else suite
    rounds = rounds or suite.rounds
    threads = _rsnorm.get_num_threads()
    loads = [w for w in suite.workloads(threads) if only is None or only in w.op]
    bar = _Progress(len(loads) + 1, progress)
    bar.step("copy bandwidth")
    ceiling = copy_bandwidth()
    results = []
    for load in loads:
        bar.step(f"{load.op} {load.shape}")
        impls = {**load.impls, "copy": _copy_reference(load.bytes_moved)}
        timings = _time_interleaved(impls, rounds, suite.target_s, suite.settle_s)
        results.append(Result(load.op, load.shape, load.dtype, load.bytes_moved, timings))
        del impls
    bar.step("done")
    bar.close()
    return {"config": config(), "copy_gbps": ceiling, "results": [asdict(r) for r in results]}


# ---------------------------------------------------------------- report

PEERS = ("numpy", "scipy", "torch", "torch fused", "onnxruntime")


def summarize(report: dict) -> list[dict]:
    """Per workload: rsnorm's median, GB/s, share of the same-bytes copy, each peer's speed-up and
    the speed-up over the fastest peer (None where no peer ran)."""
    rows = []
    for r in report["results"]:
        t = r["median_s"]
        ours = t["rsnorm"]
        peers = {p: t[p] / ours for p in PEERS if p in t}
        rows.append(
            {
                "op": r["op"],
                "shape": tuple(r["shape"]),
                "dtype": r["dtype"],
                "ms": ours * 1e3,
                "alloc_ms": t["rsnorm alloc"] * 1e3 if "rsnorm alloc" in t else None,
                "gbps": r["bytes_moved"] / ours / 1e9,
                "copy_share": t["copy"] / ours
                if "copy" in t
                else r["bytes_moved"] / ours / 1e9 / report["copy_gbps"],
                "peer_ms": {p: t[p] * 1e3 for p in PEERS if p in t},
                "speedup": peers,
                "vs_fastest": min(peers.values()) if peers else None,
            }
        )
    return rows


def _header(report: dict) -> list[str]:
    cfg = report["config"]
    return [
        f"rsnorm {cfg['rsnorm']} · simd {cfg['simd']} · {cfg['threads']} threads · numpy {cfg['numpy']}",
        f"copy ceiling ({cfg['threads']} threads, 256 MB, read + write): {report['copy_gbps']:.1f} GB/s",
        "times are medians in ms; 'rsnorm' writes into a preallocated out=, 'alloc' returns a new array;",
        "% copy = time of a same-bytes copy (interleaved with the workload) / rsnorm's time;",
        "speed-up = peer time / rsnorm time; 'fastest' is against the fastest peer",
    ]


def format_table(report: dict) -> str:
    lines = [*_header(report), ""]
    header = (
        f"{'op':<24}{'shape':<20}{'dtype':<8}{'rsnorm':>9}{'GB/s':>7}{'%copy':>7}{'alloc':>9}"
        + "".join(f"{p:>12}" for p in PEERS)
        + "".join(f"{'×' + p:>13}" for p in PEERS)
        + f"{'×fastest':>10}"
    )
    lines += [header, "-" * len(header)]
    for row in summarize(report):
        alloc = f"{row['alloc_ms']:>9.3f}" if row["alloc_ms"] is not None else f"{'—':>9}"
        line = (
            f"{row['op']:<24}{row['shape']!s:<20}{row['dtype']:<8}{row['ms']:>9.3f}{row['gbps']:>7.1f}"
            f"{100 * row['copy_share']:>6.0f}%{alloc}"
        )
        line += "".join(f"{row['peer_ms'][p]:>12.3f}" if p in row["peer_ms"] else f"{'—':>12}" for p in PEERS)
        line += "".join(
            f"{row['speedup'][p]:>12.1f}×" if p in row["speedup"] else f"{'—':>13}" for p in PEERS
        )
        line += f"{row['vs_fastest']:>9.1f}×" if row["vs_fastest"] is not None else f"{'—':>10}"
        lines.append(line)
    return "\n".join(lines)


def format_markdown(report: dict) -> str:
    """The table as Markdown (for README.md): only the peer columns that have a value somewhere."""
    rows = summarize(report)
    peers = [p for p in PEERS if any(p in row["peer_ms"] for row in rows)]
    head = ["op", "shape", "rsnorm ms", "GB/s", "% copy", *(f"{p} ms" for p in peers), "× fastest peer"]
    lines = ["\n".join(f"> {line}" for line in _header(report)), ""]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * 2 + "---:|" * (len(head) - 2)]
    for row in rows:
        cells = [row["op"], str(row["shape"]), f"{row['ms']:.3f}", f"{row['gbps']:.1f}"]
        cells.append(f"{100 * row['copy_share']:.0f}%")
        cells += [f"{row['peer_ms'][p]:.3f}" if p in row["peer_ms"] else "—" for p in peers]
        cells.append(f"{row['vs_fastest']:.1f}×" if row["vs_fastest"] is not None else "—")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


CHART_PANEL = 40


def write_results(report: dict, folder: str) -> list[str]:
    """Writes bench.json, bench.md and, when matplotlib is installed, bench.png (each workload's GB/s
    for rsnorm and its peers on a log scale, the same-bytes copy as a tick) into `folder`. Returns
    the paths written."""
    import os

    os.makedirs(folder, exist_ok=True)
    paths = [os.path.join(folder, "bench.json"), os.path.join(folder, "bench.md")]
    with open(paths[0], "w") as f:
        json.dump(report, f, indent=2)
    with open(paths[1], "w") as f:
        f.write(format_markdown(report))
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return paths
    results = report["results"]
    names = ["rsnorm", *(p for p in PEERS if any(p in r["median_s"] for r in results))]
    # Panels of at most CHART_PANEL workloads, stacked, so a full run stays readable.
    panels = [results[i : i + CHART_PANEL] for i in range(0, len(results), CHART_PANEL)]
    width_in = max(8.0, 0.55 * max(len(p) for p in panels))
    fig, axes = plt.subplots(len(panels), 1, figsize=(width_in, 6.0 * len(panels)), squeeze=False)
    width = 0.8 / len(names)
    for ax, panel in zip(axes[:, 0], panels):
        for k, name in enumerate(names):
            xs = [
                i + (k - (len(names) - 1) / 2) * width for i, r in enumerate(panel) if name in r["median_s"]
            ]
            gbps = [r["bytes_moved"] / r["median_s"][name] / 1e9 for r in panel if name in r["median_s"]]
            ax.bar(xs, gbps, width, label=name, color=f"C{k}")
        copies = [
            (i, r["bytes_moved"] / r["median_s"]["copy"] / 1e9)
            for i, r in enumerate(panel)
            if "copy" in r["median_s"]
        ]
        if copies:
            ticks, copy_gbps = zip(*copies)
            ax.scatter(ticks, copy_gbps, marker="_", s=300, color="black", zorder=3, label="same-bytes copy")
        ax.set_yscale("log")
        ax.set_xticks(range(len(panel)))
        ax.set_xticklabels(
            [f"{r['op']}\n{tuple(r['shape'])}" for r in panel], rotation=70, ha="right", fontsize=6
        )
        ax.set_ylabel("GB/s (bytes read + written), log scale")
    cfg = report["config"]
    axes[0, 0].set_title(
        f"rsnorm {cfg['rsnorm']} · {cfg['simd']} · {cfg['threads']} threads (higher is better)"
    )
    # Handles of every series (a panel may lack some, whose empty bars carry no colour).
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles: list[Patch | Line2D] = [Patch(color=f"C{k}", label=name) for k, name in enumerate(names)]
    handles.append(Line2D([], [], color="black", marker="_", linestyle="", label="same-bytes copy"))
    axes[0, 0].legend(handles=handles, fontsize=8)
    fig.tight_layout()
    paths.append(os.path.join(folder, "bench.png"))
    fig.savefig(paths[2], dpi=110)
    plt.close(fig)
    return paths


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rsnorm bench", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--suite", choices=sorted(SUITES), default="full", help="shapes to run (default full)"
    )
    parser.add_argument("--quick", action="store_true", help="the same as --suite quick (a smoke test)")
    parser.add_argument("--only", default=None, help="only workloads whose op contains this text")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--markdown", action="store_true", help="print the results as a Markdown table")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per implementation")
    parser.add_argument("--threads", type=int, default=None, help="threads for rsnorm and the peers")
    parser.add_argument(
        "--out", default=None, help="folder for bench.json, bench.md and bench.png (matplotlib)"
    )
    args = parser.parse_args(argv)
    if args.threads is not None:
        _rsnorm.set_num_threads(args.threads)
    suite = "quick" if args.quick else args.suite
    report = run(suite, rounds=args.rounds, only=args.only, progress=not (args.json or args.markdown))
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.markdown:
        print(format_markdown(report))
    else:
        print(format_table(report))
    if args.out:
        for path in write_results(report, args.out):
            print(f"wrote {path}", file=sys.stderr)
    return 0
