"""The fused optimizer steps of rsnorm.optim against in-place NumPy and torch.optim (foreach and
fused)."""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import Any, ClassVar

import numpy as np

from rsnorm import optim

from .workload import Workload, family, torch_or_none


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
        for p, g, m, v in zip(self.params, grads, self.m, self.v, strict=True):
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
        for p, g, b in zip(self.params, grads, self.buf, strict=True):
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
        for p, g, state in zip(self.params, grads, self.state, strict=True):
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
    """A torch.optim step over its own copies of `params` and `grads`, or None where this torch
    lacks the variant. Its own gradients: foreach SGD with Nesterov adds the momentum buffer into
    them in place, and with shared arrays every other implementation's gradients grew to inf."""
    tensors = [torch.from_numpy(p) for p in params]
    for t, g in zip(tensors, grads, strict=True):
        t.grad = torch.from_numpy(g.copy())
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


def _steps(sizes: dict[str, tuple[int, ...]], dtype=np.float32) -> list[Workload]:
    """Every optimizer's step over one large tensor and over many small ones, at lr 1e-3 and
    otherwise default settings."""
    rng = np.random.default_rng(3)
    torch = torch_or_none()
    loads = []
    for label, shapes in sizes.items():
        n = sum(shapes)
        grads = [rng.standard_normal(s).astype(dtype) for s in shapes]

        def params(shapes=shapes):
            return [rng.standard_normal(s).astype(dtype) for s in shapes]

        for op, cls_name, options, peer, bytes_per in OPTIMIZERS:
            ours = getattr(optim, cls_name)(params(), lr=1e-3, **options)
            ours.step(grads)  # creates its state, which the roofline streams with the rest
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
            # The parameter, gradient and state arrays, each touched once.
            states = (a for st in ours.state.values() for a in st.values() if isinstance(a, np.ndarray))
            arrays = [*ours.param_groups[0]["params"], *grads, *states]
            loads.append(
                Workload(
                    f"{op} {label}",
                    (n,),
                    np.dtype(dtype).name,
                    bytes_per * n,
                    impls,
                    roofline="in-place",
                    footprint=sum(a.nbytes for a in arrays),
                    arrays=arrays,
                )
            )
    return loads


@family("optimizers")
def optimizer_workloads(suite, threads: int) -> list[Workload]:
    return _steps(suite.optim_sizes)
