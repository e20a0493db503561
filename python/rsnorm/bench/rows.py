"""Row norms and row ops over (rows, features): LayerNorm and RMSNorm, the fused residual adds,
l2 / weight / cosine normalization and SELU, forward and forward + backward."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

import rsnorm as rn

from .workload import EPS, Workload, family, ort_call, torch_or_none, torch_train_step

COSINE_OUT_FEATURES = 256


def _numpy_layer_norm(x, w, b):
    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    var = (centered * centered).mean(-1, keepdims=True)
    return centered / np.sqrt(var + EPS) * w + b


def _numpy_rms_norm(x, w):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + EPS) * w


def _numpy_layer_norm_train_step(x, w, b, go):
    mean = x.mean(-1, keepdims=True)
    centered = x - mean
    rstd = 1 / np.sqrt((centered * centered).mean(-1, keepdims=True) + EPS)
    xhat = centered * rstd
    _ = xhat * w + b
    g = go * w
    dx = rstd * (g - g.mean(-1, keepdims=True) - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (go * xhat).sum(0), go.sum(0)


def _numpy_rms_norm_train_step(x, w, go):
    rstd = 1 / np.sqrt((x * x).mean(-1, keepdims=True) + EPS)
    xhat = x * rstd
    _ = xhat * w
    g = go * w
    dx = rstd * (g - xhat * (g * xhat).mean(-1, keepdims=True))
    return dx, (go * xhat).sum(0)


def _numpy_l2_normalize(x):
    return x / np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), 1e-12)


def _numpy_l2_normalize_train_step(x, go):
    norm = np.maximum(np.sqrt((x * x).sum(-1, keepdims=True)), 1e-12)
    y = x / norm
    return (go - y * (go * y).sum(-1, keepdims=True)) / norm


def _numpy_l1_normalize(x):
    return x / np.maximum(np.abs(x).sum(-1, keepdims=True), 1e-12)


def _numpy_l1_normalize_train_step(x, go):
    norm = np.maximum(np.abs(x).sum(-1, keepdims=True), 1e-12)
    _ = x / norm
    return go / norm - np.sign(x) * ((go * x).sum(-1, keepdims=True) / (norm * norm))


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


def _cosine(loads: list[Workload], op: str) -> Workload:
    """The cosine_linear workload `op` of `loads`, held to its matrix products (BLAS) alone: the
    caller sets its ``matmul``."""
    load = next(w for w in loads if w.op == op)
    load.roofline = "matmul"
    return load


def _add_then_norm(norm, x, residual):
    """A residual-add norm as a peer runs it: the sum once, then its norm; returns both."""
    total = x + residual
    return norm(total), total


# A training step's rsnorm calls. `bufs` (y, x + residual, dx) are the arrays a training loop writes
# every step (out=); without them each call returns new arrays (the 'alloc' column).
_NO_BUFS = (None, None, None)


def _rsnorm_layer_norm_train_step(x, w, b, go, bufs=_NO_BUFS):
    y, _, dx = bufs
    _, mean, rstd = rn.layer_norm(x, x.shape[-1], w, b, EPS, out=y, return_stats=True)
    return rn.layer_norm_backward(go, x, mean, rstd, w, b, out=(dx, None, None))


def _rsnorm_rms_norm_train_step(x, w, go, bufs=_NO_BUFS):
    y, _, dx = bufs
    _, rstd = rn.rms_norm(x, x.shape[-1], w, EPS, out=y, return_stats=True)
    return rn.rms_norm_backward(go, x, rstd, w, out=(dx, None))


def _rsnorm_add_layer_norm_train_step(x, residual, w, b, go, bufs=_NO_BUFS):
    y, total, dx = bufs
    _, total, mean, rstd = rn.add_layer_norm(
        x, residual, w, b, EPS, out=y, residual_out=total, return_stats=True
    )
    return rn.add_layer_norm_backward(go, total, mean, rstd, w, b, out=(dx, None, None, None))


def _rsnorm_add_rms_norm_train_step(x, residual, w, go, bufs=_NO_BUFS):
    y, total, dx = bufs
    _, total, rstd = rn.add_rms_norm(x, residual, w, EPS, out=y, residual_out=total, return_stats=True)
    return rn.add_rms_norm_backward(go, total, rstd, w, out=(dx, None, None))


def _rsnorm_l2_normalize_train_step(x, go, bufs=_NO_BUFS):
    rn.l2_normalize(x, out=bufs[0])
    return rn.l2_normalize_backward(go, x, out=bufs[2])


def _rsnorm_l1_normalize_train_step(x, go, bufs=_NO_BUFS):
    rn.normalize(x, 1.0, out=bufs[0])
    return rn.normalize_backward(go, x, 1.0, out=bufs[2])


def _rsnorm_weight_norm_train_step(v, g, go, bufs=_NO_BUFS):
    rn.weight_norm(v, g, 0, out=bufs[0])
    return rn.weight_norm_backward(go, v, g, dim=0, out=(bufs[2], None))


def _rsnorm_selu_train_step(x, go, bufs=_NO_BUFS):
    rn.selu(x, out=bufs[0])
    return rn.selu_backward(go, x, out=bufs[2])


def _rsnorm_cosine_linear_train_step(x, w, go):
    rn.cosine_linear(x, w)
    return rn.cosine_linear_backward(go, x, w)


def _norms(shape, threads: int, dtype=np.float32) -> list[Workload]:
    """LayerNorm and RMSNorm forward: the per-call latency of small rows, the bandwidth of large."""
    rng = np.random.default_rng(0)
    torch = torch_or_none()
    n = shape[-1]
    x = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
    w = rng.standard_normal(n).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    y = np.empty_like(x)
    ln: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.layer_norm, x, n, w, b, EPS, out=y),
        "rsnorm alloc": partial(rn.layer_norm, x, n, w, b, EPS),
        "numpy": partial(_numpy_layer_norm, x, w, b),
    }
    rms: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.rms_norm, x, n, w, EPS, out=y),
        "rsnorm alloc": partial(rn.rms_norm, x, n, w, EPS),
        "numpy": partial(_numpy_rms_norm, x, w),
    }
    if torch is not None:
        tx, tw, tb = torch.from_numpy(x), torch.from_numpy(w), torch.from_numpy(b)
        ln["torch"] = partial(torch.nn.functional.layer_norm, tx, (n,), tw, tb, EPS)
        if hasattr(torch.nn.functional, "rms_norm"):
            rms["torch"] = partial(torch.nn.functional.rms_norm, tx, (n,), tw, EPS)
    ln_ort = ort_call(
        "LayerNormalization", {"X": x, "W": w, "B": b}, {"axis": -1, "epsilon": EPS}, 17, threads
    )
    rms_feeds, rms_attrs = {"X": x, "W": w}, {"axis": -1, "epsilon": EPS}
    rms_ort = ort_call("RMSNormalization", rms_feeds, rms_attrs, 23, threads) or ort_call(
        "SimplifiedLayerNormalization", rms_feeds, rms_attrs, 17, threads
    )
    loads = []
    for op, impls, ort in (("layer_norm", ln, ln_ort), ("rms_norm", rms, rms_ort)):
        if ort is not None:
            impls["onnxruntime"] = ort
        loads.append(Workload(op, tuple(shape), np.dtype(dtype).name, 2 * x.nbytes, impls))
    return loads


def _row_ops(shape, threads: int, dtype=np.float32) -> list[Workload]:
    """The other row ops forward: residual-add norms, l2 / weight / cosine normalization, SELU."""
    rng = np.random.default_rng(5)
    torch = torch_or_none()
    n = shape[-1]
    x, residual = (rng.standard_normal(shape, dtype=np.float64).astype(dtype) for _ in range(2))
    w, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    g = (rng.random(shape[0]) + 0.5).astype(dtype)
    weight = rng.standard_normal((COSINE_OUT_FEATURES, n)).astype(dtype)
    y, total = np.empty_like(x), np.empty_like(x)
    impls: dict[str, dict[str, Callable[[], object]]] = {
        "add_layer_norm": {
            "rsnorm": partial(rn.add_layer_norm, x, residual, w, b, EPS, out=y, residual_out=total),
            "numpy": partial(_add_then_norm, partial(_numpy_layer_norm, w=w, b=b), x, residual),
        },
        "add_rms_norm": {
            "rsnorm": partial(rn.add_rms_norm, x, residual, w, EPS, out=y, residual_out=total),
            "numpy": partial(_add_then_norm, partial(_numpy_rms_norm, w=w), x, residual),
        },
        "l2_normalize": {
            "rsnorm": partial(rn.l2_normalize, x, out=y),
            "numpy": partial(_numpy_l2_normalize, x),
        },
        "normalize p=1": {
            "rsnorm": partial(rn.normalize, x, 1.0, out=y),
            "numpy": partial(_numpy_l1_normalize, x),
        },
        "weight_norm": {
            "rsnorm": partial(rn.weight_norm, x, g, 0, out=y),
            "numpy": partial(_numpy_weight_norm, x, g),
        },
        "selu": {"rsnorm": partial(rn.selu, x, out=y), "numpy": partial(_numpy_selu, x)},
        "cosine_linear": {
            "rsnorm": partial(rn.cosine_linear, x, weight),
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
        impls["normalize p=1"]["torch"] = partial(f.normalize, tx, 1.0, -1)
        impls["weight_norm"]["torch"] = partial(torch._weight_norm, tx, tg[:, None], 0)
        impls["selu"]["torch"] = partial(torch.selu, tx)
        impls["cosine_linear"]["torch"] = lambda: f.linear(
            f.normalize(tx, dim=-1), f.normalize(tweight, dim=-1)
        )
    ort_calls = {
        "l2_normalize": ort_call("LpNormalization", {"X": x}, {"axis": -1, "p": 2}, 1, threads),
        "normalize p=1": ort_call("LpNormalization", {"X": x}, {"axis": -1, "p": 1}, 1, threads),
        "selu": ort_call("Selu", {"X": x}, {}, 6, threads),
    }
    for op, call in ort_calls.items():
        if call is not None:
            impls[op]["onnxruntime"] = call
    # Bytes read + written: x-sized arrays, and for cosine_linear the matmul's operands and output.
    moved = {
        "add_layer_norm": 4 * x.nbytes,
        "add_rms_norm": 4 * x.nbytes,
        "cosine_linear": x.nbytes + weight.nbytes + shape[0] * COSINE_OUT_FEATURES * x.itemsize,
    }
    loads = [
        Workload(op, tuple(shape), np.dtype(dtype).name, moved.get(op, 2 * x.nbytes), by_impl)
        for op, by_impl in impls.items()
    ]
    x_unit, weight_unit = _numpy_l2_normalize(x), _numpy_l2_normalize(weight)
    _cosine(loads, "cosine_linear").matmul = lambda: x_unit @ weight_unit.T
    return loads


def _backward(shape, dtype=np.float32) -> list[Workload]:
    """Forward + backward (a training step's norm work) of every row norm and row op."""
    rng = np.random.default_rng(6)
    torch = torch_or_none()
    dt = np.dtype(dtype).name
    n = shape[-1]
    x, residual, go = (rng.standard_normal(shape, dtype=np.float64).astype(dtype) for _ in range(3))
    w, b = rng.standard_normal(n).astype(dtype), rng.standard_normal(n).astype(dtype)
    g = (rng.random(shape[0]) + 0.5).astype(dtype)
    weight = rng.standard_normal((COSINE_OUT_FEATURES, n)).astype(dtype)
    go_cos = rng.standard_normal((shape[0], COSINE_OUT_FEATURES)).astype(dtype)
    bufs = tuple(np.empty_like(x) for _ in range(3))
    impls: dict[str, dict[str, Callable[[], object]]] = {
        "layer_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_layer_norm_train_step, x, w, b, go, bufs),
            "rsnorm alloc": partial(_rsnorm_layer_norm_train_step, x, w, b, go),
            "numpy": partial(_numpy_layer_norm_train_step, x, w, b, go),
        },
        "rms_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_rms_norm_train_step, x, w, go, bufs),
            "rsnorm alloc": partial(_rsnorm_rms_norm_train_step, x, w, go),
            "numpy": partial(_numpy_rms_norm_train_step, x, w, go),
        },
        "add_layer_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_add_layer_norm_train_step, x, residual, w, b, go, bufs),
            "rsnorm alloc": partial(_rsnorm_add_layer_norm_train_step, x, residual, w, b, go),
            "numpy": lambda: _numpy_layer_norm_train_step(x + residual, w, b, go),
        },
        "add_rms_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_add_rms_norm_train_step, x, residual, w, go, bufs),
            "rsnorm alloc": partial(_rsnorm_add_rms_norm_train_step, x, residual, w, go),
            "numpy": lambda: _numpy_rms_norm_train_step(x + residual, w, go),
        },
        "l2_normalize fwd+bwd": {
            "rsnorm": partial(_rsnorm_l2_normalize_train_step, x, go, bufs),
            "rsnorm alloc": partial(_rsnorm_l2_normalize_train_step, x, go),
            "numpy": partial(_numpy_l2_normalize_train_step, x, go),
        },
        "normalize p=1 fwd+bwd": {
            "rsnorm": partial(_rsnorm_l1_normalize_train_step, x, go, bufs),
            "rsnorm alloc": partial(_rsnorm_l1_normalize_train_step, x, go),
            "numpy": partial(_numpy_l1_normalize_train_step, x, go),
        },
        "weight_norm fwd+bwd": {
            "rsnorm": partial(_rsnorm_weight_norm_train_step, x, g, go, bufs),
            "rsnorm alloc": partial(_rsnorm_weight_norm_train_step, x, g, go),
            "numpy": partial(_numpy_weight_norm_train_step, x, g, go),
        },
        "selu fwd+bwd": {
            "rsnorm": partial(_rsnorm_selu_train_step, x, go, bufs),
            "rsnorm alloc": partial(_rsnorm_selu_train_step, x, go),
            "numpy": partial(_numpy_selu_train_step, x, go),
        },
        "cosine_linear fwd+bwd": {
            "rsnorm": partial(_rsnorm_cosine_linear_train_step, x, weight, go_cos),
            "numpy": partial(_numpy_cosine_linear_train_step, x, weight, go_cos),
        },
    }
    if torch is not None:
        f = torch.nn.functional
        step = partial(torch_train_step, torch)
        impls["layer_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, w, b: f.layer_norm(x, (n,), w, b, EPS), (x, w, b), go
        )
        impls["add_layer_norm fwd+bwd"]["torch"] = partial(
            step, lambda x, r, w, b: f.layer_norm(x + r, (n,), w, b, EPS), (x, residual, w, b), go
        )
        impls["l2_normalize fwd+bwd"]["torch"] = partial(step, lambda x: f.normalize(x, dim=-1), (x,), go)
        impls["normalize p=1 fwd+bwd"]["torch"] = partial(step, lambda x: f.normalize(x, 1.0, -1), (x,), go)
        impls["weight_norm fwd+bwd"]["torch"] = partial(
            step, lambda v, g: torch._weight_norm(v, g[:, None], 0), (x, g), go
        )
        impls["selu fwd+bwd"]["torch"] = partial(step, torch.selu, (x,), go)
        impls["cosine_linear fwd+bwd"]["torch"] = partial(
            step,
            lambda x, w: f.linear(f.normalize(x, dim=-1), f.normalize(w, dim=-1)),
            (x, weight),
            go_cos,
        )
        if hasattr(f, "rms_norm"):
            impls["rms_norm fwd+bwd"]["torch"] = partial(
                step, lambda x, w: f.rms_norm(x, (n,), w, EPS), (x, w), go
            )
            impls["add_rms_norm fwd+bwd"]["torch"] = partial(
                step, lambda x, r, w: f.rms_norm(x + r, (n,), w, EPS), (x, residual, w), go
            )
    # Forward: read x (and the residual), write y (and the sum); backward: read grad_out and x (or
    # the sum), write dx. cosine_linear: the matmuls' operands and outputs, both passes.
    moved = {"add_layer_norm fwd+bwd": 7 * x.nbytes, "add_rms_norm fwd+bwd": 7 * x.nbytes}
    moved["cosine_linear fwd+bwd"] = 3 * x.nbytes + 3 * weight.nbytes + 2 * go_cos.nbytes
    loads = [Workload(op, tuple(shape), dt, moved.get(op, 5 * x.nbytes), i) for op, i in impls.items()]
    x_unit, weight_unit = _numpy_l2_normalize(x), _numpy_l2_normalize(weight)
    _cosine(loads, "cosine_linear fwd+bwd").matmul = lambda: (
        x_unit @ weight_unit.T,
        go_cos @ weight_unit,
        go_cos.T @ x_unit,
    )
    return loads


@family("rows")
def row_workloads(suite, threads: int) -> list[Workload]:
    loads = [load for shape in suite.row_shapes for load in _norms(shape, threads)]
    loads += [load for shape in suite.row_op_shapes for load in _row_ops(shape, threads)]
    return loads + [load for shape in suite.row_backward_shapes for load in _backward(shape)]
