"""Channel norms over NCHW (and NHWC) activations: BatchNorm (training, evaluation, channels-last),
GroupNorm, InstanceNorm and LRN, forward and forward + backward."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial

import numpy as np

import rsnorm as rn

from .workload import EPS, Workload, family, ort_call, torch_or_none, torch_train_step

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


def _numpy_channels_last(x, mean, var, w, b):
    scale = w / np.sqrt(var + EPS)
    return (x - mean) * scale + b


def _numpy_channels_last_train(x, w, b, axes):
    return _numpy_channels_last(x, x.mean(axis=axes), x.var(axis=axes), w, b)


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


# `bufs` (y, dx): the arrays a training loop writes every step (out=); without them, new arrays.
def _rsnorm_batch_norm_train_step(x, w, b, go, bufs=(None, None)):
    _, mean, rstd = rn.batch_norm(x, None, None, w, b, True, 0.1, EPS, out=bufs[0], return_stats=True)
    return rn.batch_norm_backward(go, x, mean, rstd, w, out=(bufs[1], None, None))


def _rsnorm_group_norm_train_step(x, groups, w, b, go, bufs=(None, None)):
    _, mean, rstd = rn.group_norm(x, groups, w, b, EPS, out=bufs[0], return_stats=True)
    return rn.group_norm_backward(go, x, mean, rstd, w, num_groups=groups, out=(bufs[1], None, None))


def _rsnorm_instance_norm_train_step(x, w, b, go, bufs=(None, None)):
    _, mean, rstd = rn.instance_norm(x, None, None, w, b, True, 0.1, EPS, out=bufs[0], return_stats=True)
    return rn.instance_norm_backward(go, x, mean, rstd, w, out=(bufs[1], None, None))


def _forward(shape, threads: int, dtype=np.float32) -> list[Workload]:
    """BatchNorm (train, eval), GroupNorm, InstanceNorm and LRN on an NCHW activation."""
    rng = np.random.default_rng(1)
    torch = torch_or_none()
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
            "rsnorm": partial(rn.batch_norm, x, rm, rv, w, b, True, 0.1, EPS, out=y),
            "numpy": partial(_numpy_batch_norm_train, x, w, b),
        },
        "batch_norm eval": {
            "rsnorm": partial(rn.batch_norm, x, mean, var, w, b, False, 0.1, EPS, out=y),
            "numpy": partial(_numpy_batch_norm, x, mean, var, w, b),
        },
        "group_norm": {
            "rsnorm": partial(rn.group_norm, x, groups, w, b, EPS, out=y),
            "numpy": partial(_numpy_group_norm, x, groups, w, b),
        },
        "instance_norm": {
            "rsnorm": partial(rn.instance_norm, x, None, None, w, b, True, 0.1, EPS, out=y),
            "numpy": partial(_numpy_group_norm, x, c, w, b),
        },
        "lrn": {
            "rsnorm": partial(rn.local_response_norm, x, LRN_SIZE, out=y),
            "numpy": partial(_numpy_lrn, x, LRN_SIZE),
        },
    }
    impls["batch_norm train"]["rsnorm alloc"] = partial(rn.batch_norm, x, rm, rv, w, b, True, 0.1, EPS)
    impls["batch_norm eval"]["rsnorm alloc"] = partial(rn.batch_norm, x, mean, var, w, b, False, 0.1, EPS)
    impls["group_norm"]["rsnorm alloc"] = partial(rn.group_norm, x, groups, w, b, EPS)
    impls["instance_norm"]["rsnorm alloc"] = partial(rn.instance_norm, x, None, None, w, b)
    impls["lrn"]["rsnorm alloc"] = partial(rn.local_response_norm, x, LRN_SIZE)
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
        "batch_norm eval": ort_call(
            "BatchNormalization", {"X": x, "S": w, "B": b, "M": mean, "V": var}, {"epsilon": EPS}, 15, threads
        ),
        "group_norm": ort_call(
            "GroupNormalization",
            {"X": x, "S": w, "B": b},
            {"epsilon": EPS, "num_groups": groups},
            21,
            threads,
        ),
        "instance_norm": ort_call(
            "InstanceNormalization", {"X": x, "S": w, "B": b}, {"epsilon": EPS}, 6, threads
        ),
        "lrn": ort_call(
            "LRN", {"X": x}, {"size": LRN_SIZE, "alpha": 1e-4, "beta": 0.75, "bias": 1.0}, 13, threads
        ),
    }
    for op, call in ort_calls.items():
        if call is not None:
            impls[op]["onnxruntime"] = call
    loads = [
        Workload(op, tuple(shape), np.dtype(dtype).name, moved, by_impl) for op, by_impl in impls.items()
    ]
    return loads + _channels_last(x, w, b, mean, var)


def _channels_last(x_nchw, w, b, mean, var) -> list[Workload]:
    """BatchNorm over the last axis of an NHWC array (Keras' layout, or a (rows, features) table)."""
    x = np.ascontiguousarray(np.moveaxis(x_nchw, 1, -1))
    y = np.empty_like(x)
    rm, rv = mean.copy(), var.copy()
    axes = tuple(range(x.ndim - 1))
    train: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.batch_norm, x, rm, rv, w, b, True, 0.1, EPS, axis=-1, out=y),
        "rsnorm alloc": partial(rn.batch_norm, x, rm, rv, w, b, True, 0.1, EPS, axis=-1),
        "numpy": partial(_numpy_channels_last_train, x, w, b, axes),
    }
    evaluate: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.batch_norm, x, mean, var, w, b, False, 0.1, EPS, axis=-1, out=y),
        "rsnorm alloc": partial(rn.batch_norm, x, mean, var, w, b, False, 0.1, EPS, axis=-1),
        "numpy": partial(_numpy_channels_last, x, mean, var, w, b),
    }
    torch = torch_or_none()
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


def _backward(shape, dtype=np.float32) -> list[Workload]:
    """Forward + backward (a training step's norm work) of BatchNorm, GroupNorm and InstanceNorm."""
    rng = np.random.default_rng(2)
    torch = torch_or_none()
    c = shape[1]
    groups = math.gcd(GROUPS, max(c // 2, 1))
    x, go = (rng.standard_normal(shape, dtype=np.float64).astype(dtype) for _ in range(2))
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    bufs = (np.empty_like(x), np.empty_like(x))
    impls: dict[str, dict[str, Callable[[], object]]] = {
        "batch_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_batch_norm_train_step, x, w, b, go, bufs),
            "rsnorm alloc": partial(_rsnorm_batch_norm_train_step, x, w, b, go),
            "numpy": partial(_numpy_batch_norm_train_step, x, w, b, go),
        },
        "group_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_group_norm_train_step, x, groups, w, b, go, bufs),
            "rsnorm alloc": partial(_rsnorm_group_norm_train_step, x, groups, w, b, go),
            "numpy": partial(_numpy_group_norm_train_step, x, groups, w, go),
        },
        "instance_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_instance_norm_train_step, x, w, b, go, bufs),
            "rsnorm alloc": partial(_rsnorm_instance_norm_train_step, x, w, b, go),
            "numpy": partial(_numpy_group_norm_train_step, x, c, w, go),
        },
    }
    if torch is not None:
        f = torch.nn.functional
        step = partial(torch_train_step, torch)
        impls["batch_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, w, b: f.batch_norm(x, None, None, w, b, True, 0.1, EPS), (x, w, b), go
        )
        impls["group_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, w, b: f.group_norm(x, groups, w, b, EPS), (x, w, b), go
        )
        impls["instance_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, w, b: f.instance_norm(x, weight=w, bias=b, eps=EPS), (x, w, b), go
        )
    # Forward reads x, writes y; backward reads grad_out and x, writes dx.
    dt = np.dtype(dtype).name
    return [Workload(op, tuple(shape), dt, 5 * x.nbytes, by_impl) for op, by_impl in impls.items()]


@family("channels")
def channel_workloads(suite, threads: int) -> list[Workload]:
    loads = [load for shape in suite.channel_shapes for load in _forward(shape, threads)]
    return loads + [load for shape in suite.channel_backward_shapes for load in _backward(shape)]
