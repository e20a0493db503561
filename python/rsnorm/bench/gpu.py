"""``python -m rsnorm bench --device gpu``: the GPU ops against PyTorch CUDA (where installed), with
GB/s against a same-bytes copy on the device measured in the same run.

A sample runs ``k`` calls and then waits for the device. Its time is the device's own where the
adapter has timestamps (rsnorm: a timestamp before and after the k calls; PyTorch: CUDA events),
else the wall time, which includes recording and submitting the work as a user's loop sees it.
Implementations are interleaved round by round, as on the CPU; medians. The copy moves the workload's
bytes (half read, half written): PyTorch's device copy where PyTorch with CUDA is installed, else
rsnorm's own (``Array.astype`` to the same dtype).
"""

from __future__ import annotations

import functools
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

import rsnorm as rn
from rsnorm import _rsnorm, gpu
from rsnorm._config import config

from .timing import _Progress
from .workload import EPS, Result, torch_or_none

# (op, shape) per suite: rows (rows, features), channels (N, C, H, W).
SHAPES: dict[str, dict[str, list[tuple[int, ...]]]] = {
    "quick": {
        "rows": [(64, 768), (256, 1024)],
        "channels": [(4, 16, 16, 16)],
        "optim": [(1, 1 << 20), (20, 50_000)],
    },
    "full": {
        "rows": [(64, 768), (4096, 1024), (4096, 4096), (4096, 16384), (65536, 4096)],
        "channels": [(32, 64, 56, 56)],
        # (tensors, elements each): 100M parameters in one tensor, and in 200 of 500k.
        "optim": [(1, 100_000_000), (200, 500_000)],
    },
}


class _Clock:
    """Wall time around a sample, waiting for the device at its end."""

    def __init__(self, sync: Callable[[], object]) -> None:
        self.sync = sync

    def begin(self) -> None:
        self.t0 = time.perf_counter()

    def end(self) -> float:
        self.sync()
        return time.perf_counter() - self.t0


class _StampClock(_Clock):
    """rsnorm's device time: timestamps before and after the sample's work (wall time without)."""

    def begin(self) -> None:
        self.stamp = _rsnorm.gpu_timestamp()
        super().begin()

    def end(self) -> float:
        wall = super().end()
        if self.stamp is None:
            return wall
        end = _rsnorm.gpu_timestamp()
        assert end is not None
        return (end.nanoseconds() - self.stamp.nanoseconds()) * 1e-9


class _CudaClock(_Clock):
    """PyTorch's device time: CUDA events around the sample."""

    def __init__(self, torch: Any) -> None:
        super().__init__(torch.cuda.synchronize)
        self.torch = torch

    def begin(self) -> None:
        self.start = self.torch.cuda.Event(enable_timing=True)
        self.start.record()

    def end(self) -> float:
        stop = self.torch.cuda.Event(enable_timing=True)
        stop.record()
        stop.synchronize()
        return float(self.start.elapsed_time(stop)) * 1e-3


@dataclass
class _Impl:
    call: Callable[[], object]
    clock: _Clock


def _torch_cuda() -> Any:
    torch = torch_or_none()
    if torch is None or not torch.cuda.is_available():
        return None
    return torch


def _time(impls: dict[str, _Impl], rounds: int, target_s: float) -> dict[str, float]:
    """Median seconds per call: each sample runs k calls then waits for its device."""
    calls: dict[str, int] = {}
    for name, impl in impls.items():
        impl.call()
        impl.clock.begin()
        impl.call()
        once = impl.clock.end()
        calls[name] = max(1, min(1000, int(target_s / max(once, 1e-7))))
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, impl in impls.items():
            k = calls[name]
            impl.clock.begin()
            for _ in range(k):
                impl.call()
            samples[name].append(impl.clock.end() / k)
    return {name: float(np.median(s)) for name, s in samples.items()}


def _row_workloads(shape: tuple[int, ...], torch: Any) -> list[tuple[str, int, dict[str, _Impl]]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    n = shape[-1]
    w = np.ones(n, np.float32)
    b = np.zeros(n, np.float32)
    dx, dw, db, dr = gpu.asarray(x), gpu.asarray(w), gpu.asarray(b), gpu.asarray(x)
    out, out2, grad_in = gpu.empty(shape), gpu.empty(shape), gpu.empty(shape)
    size = x.nbytes

    def layer_norm_train() -> object:
        _, mean, rstd = rn.layer_norm(dx, n, dw, db, EPS, out=out, return_stats=True)
        # dx into an array of its own, as a training loop reuses its gradient buffers.
        return rn.layer_norm_backward(dr, dx, mean, rstd, dw, db, out=(grad_in, None, None))

    # Class indices stay on the host (see rsnorm.gpu); the loss stays a device array.
    labels = rng.integers(0, n, shape[0] if len(shape) > 1 else 1).reshape(shape[:-1])

    def cross_entropy_train() -> object:
        rn.cross_entropy_with_logits(dx, labels)
        return rn.cross_entropy_with_logits_backward(1.0, dx, labels, out=out)

    loads = {
        "layer_norm": (2 * size, lambda: rn.layer_norm(dx, n, dw, db, EPS, out=out)),
        "rms_norm": (2 * size, lambda: rn.rms_norm(dx, n, dw, EPS, out=out)),
        "add_layer_norm": (
            4 * size,
            lambda: rn.add_layer_norm(dx, dr, dw, db, EPS, out=out, residual_out=out2),
        ),
        "softmax": (2 * size, lambda: rn.softmax(dx, out=out)),
        "log_softmax": (2 * size, lambda: rn.log_softmax(dx, out=out)),
        "l2_normalize": (2 * size, lambda: rn.l2_normalize(dx, out=out)),
        "selu": (2 * size, lambda: rn.selu(dx, out=out)),
        # The least a forward and backward move: x read and y written, then grad_out and x read and
        # dx written (the parameter gradients' second read of both is counted as the work it is not).
        "layer_norm fwd+bwd": (5 * size, layer_norm_train),
        "softmax backward": (3 * size, lambda: rn.softmax_backward(dr, dx, out=out)),
        # The logits read by the loss, then read again and their gradient written.
        "cross_entropy fwd+bwd": (3 * size, cross_entropy_train),
    }
    peers: dict[str, Callable[[], object]] = {}
    if torch is not None:
        f = torch.nn.functional
        tx, tw, tb, tr = (torch.from_numpy(a).cuda() for a in (x, w, b, x))
        peers = {
            "layer_norm": lambda: f.layer_norm(tx, (n,), tw, tb, EPS),
            "rms_norm": lambda: f.rms_norm(tx, (n,), tw, EPS),
            "add_layer_norm": lambda: f.layer_norm(tx + tr, (n,), tw, tb, EPS),
            "softmax": lambda: torch.softmax(tx, -1),
            "log_softmax": lambda: torch.log_softmax(tx, -1),
            "l2_normalize": lambda: f.normalize(tx, dim=-1),
            "selu": lambda: f.selu(tx),
        }
        txg, twg, tbg = (t.clone().requires_grad_(True) for t in (tx, tw, tb))

        def torch_layer_norm_train() -> object:
            y = f.layer_norm(txg, (n,), twg, tbg, EPS)
            return torch.autograd.grad(y, (txg, twg, tbg), tr)

        peers["layer_norm fwd+bwd"] = torch_layer_norm_train
        peers["softmax backward"] = lambda: torch._softmax_backward_data(tr, tx, -1, tx.dtype)
        tlabels = torch.from_numpy(labels).cuda()

        def torch_cross_entropy_train() -> object:
            loss = f.cross_entropy(txg, tlabels)
            return torch.autograd.grad(loss, txg)

        peers["cross_entropy fwd+bwd"] = torch_cross_entropy_train
    return [(op, moved, _impls(call, peers.get(op), torch)) for op, (moved, call) in loads.items()]


def _channel_workloads(shape: tuple[int, ...], torch: Any) -> list[tuple[str, int, dict[str, _Impl]]]:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(shape, dtype=np.float32)
    c = shape[1]
    w, b = np.ones(c, np.float32), np.zeros(c, np.float32)
    rm, rv = np.zeros(c, np.float32), np.ones(c, np.float32)
    dx, dw, db, drm, drv = (gpu.asarray(a) for a in (x, w, b, rm, rv))
    out = gpu.empty(shape)
    groups = 32 if c % 32 == 0 else 1
    size = x.nbytes
    # Training reads x twice (statistics, then the normalization) and writes y once.
    loads = {
        "batch_norm (eval)": (2 * size, lambda: rn.batch_norm(dx, drm, drv, dw, db, eps=EPS, out=out)),
        "batch_norm (train)": (
            3 * size,
            lambda: rn.batch_norm(dx, drm, drv, dw, db, True, 0.1, EPS, out=out),
        ),
        "group_norm": (2 * size, lambda: rn.group_norm(dx, groups, dw, db, EPS, out=out)),
        "instance_norm": (2 * size, lambda: rn.instance_norm(dx, weight=dw, bias=db, eps=EPS, out=out)),
    }
    peers: dict[str, Callable[[], object]] = {}
    if torch is not None:
        f = torch.nn.functional
        tx, tw, tb, trm, trv = (torch.from_numpy(a).cuda() for a in (x, w, b, rm, rv))
        peers = {
            "batch_norm (eval)": lambda: f.batch_norm(tx, trm, trv, tw, tb, False, 0.1, EPS),
            "batch_norm (train)": lambda: f.batch_norm(tx, trm, trv, tw, tb, True, 0.1, EPS),
            "group_norm": lambda: f.group_norm(tx, groups, tw, tb, EPS),
            "instance_norm": lambda: f.instance_norm(tx, weight=tw, bias=tb, eps=EPS),
        }
    return [(op, moved, _impls(call, peers.get(op), torch)) for op, (moved, call) in loads.items()]


def _optimizer_workloads(shape: tuple[int, ...], torch: Any) -> list[tuple[str, int, dict[str, _Impl]]]:
    """Adam and AdamW steps over `shape` = (tensors, elements each) of float32, every tensor on the
    device: p, g and both moments read, p and the moments written (7 × 4 bytes per parameter)."""
    tensors, each = shape
    rng = np.random.default_rng(0)
    host = [rng.standard_normal(each, dtype=np.float32) for _ in range(min(tensors, 2))]
    params = [gpu.asarray(host[i % len(host)]) for i in range(tensors)]
    grads = [gpu.asarray(host[(i + 1) % len(host)] * 1e-2) for i in range(tensors)]
    moved = 7 * 4 * tensors * each
    results = []
    for name in ("Adam", "AdamW"):
        ours = getattr(rn.optim, name)(params, lr=1e-4)
        peer = None
        if torch is not None:
            tparams = [
                torch.from_numpy(host[i % len(host)]).cuda().requires_grad_(True) for i in range(tensors)
            ]
            for i, t in enumerate(tparams):
                t.grad = torch.from_numpy(host[(i + 1) % len(host)] * 1e-2).cuda()
            topt = getattr(torch.optim, name)(tparams, lr=1e-4, fused=True)
            peer = topt.step
        results.append(
            (
                f"{name.lower()} step ({tensors} tensors)",
                moved,
                _impls(functools.partial(ours.step, grads), peer, torch),
            )
        )
    return results


def _impls(ours: Callable[[], object], peer: Callable[[], object] | None, torch: Any) -> dict[str, _Impl]:
    impls = {"rsnorm": _Impl(ours, _StampClock(gpu.synchronize))}
    if peer is not None:
        impls["torch"] = _Impl(peer, _CudaClock(torch))
    return impls


def _device_copy(nbytes: int, torch: Any) -> _Impl:
    """A device copy of nbytes / 2 bytes: nbytes read plus written. PyTorch's copy where PyTorch
    with CUDA is installed: the faster one, so the roofline (4.1 TB/s on an H200, where rsnorm's own
    one-element-per-thread copy reaches 1.9 TB/s); else rsnorm's ``astype``."""
    n = max(nbytes // 8, 1)
    if torch is not None:
        src, dst = torch.empty(n, device="cuda"), torch.empty(n, device="cuda")
        return _Impl(lambda: dst.copy_(src), _CudaClock(torch))
    src_gpu = gpu.empty((n,), np.float32)
    return _Impl(lambda: src_gpu.astype(np.float32), _StampClock(gpu.synchronize))


# The optimizer rows are Adam and AdamW: each parameter's p, g, m and v touched once (16 bytes), 28
# bytes moved. Their in-place roofline streams those 16 bytes (read and written back: 32), as the CPU
# bench does, and its time is scaled by 28 / 32.
ADAM_FOOTPRINT, ADAM_MOVED = 16, 28


def _device_in_place(moved: int, torch: Any) -> _Impl:
    """PyTorch scaling an Adam step's arrays' worth of bytes in place on the device (each read and
    written back): the roofline of the in-place optimizer steps, whose time `run_gpu` scales to
    the step's bytes (a copy also reads the lines it writes)."""
    buf = torch.ones(max(moved * ADAM_FOOTPRINT // ADAM_MOVED // 4, 1), device="cuda")
    return _Impl(lambda: buf.mul_(1.0), _CudaClock(torch))


def run_gpu(
    suite: str = "full", rounds: int | None = None, only: str | None = None, progress: bool = True
) -> dict:
    """Times the GPU workloads of `suite` against PyTorch CUDA and a same-bytes device copy;
    returns a report in the CPU runner's format (``copy_gbps``: a 256 MB device copy)."""
    if not gpu.is_available():
        raise SystemExit(
            "python -m rsnorm bench --device gpu: no GPU adapter (rsnorm.gpu.is_available() is False)"
        )
    rounds = rounds or (3 if suite == "quick" else 11)
    target_s = 0.005 if suite == "quick" else 0.05
    torch = _torch_cuda()
    shapes = SHAPES[suite]
    makers = (
        [(_row_workloads, s) for s in shapes["rows"]]
        + [(_channel_workloads, s) for s in shapes["channels"]]
        + [(_optimizer_workloads, s) for s in shapes["optim"]]
    )
    bar = _Progress(len(makers) + 1, progress)
    bar.step("device copy bandwidth")
    big = _device_copy(512 << 20, torch)
    ceiling = (512 << 20) / _time({"copy": big}, rounds, target_s)["copy"] / 1e9
    del big
    results = []
    for make, shape in makers:
        bar.step(f"{shape}")
        for op, moved, impls in make(shape, torch):
            if only is not None and only not in op:
                continue
            # Without PyTorch the optimizer rows keep the copy: rsnorm has no in-place device stream.
            roofline = "in-place" if make is _optimizer_workloads and torch is not None else "copy"
            bound = _device_in_place(moved, torch) if roofline == "in-place" else _device_copy(moved, torch)
            timings = _time({**impls, roofline: bound}, rounds, target_s)
            if roofline == "in-place":
                timings[roofline] *= ADAM_MOVED / (2 * ADAM_FOOTPRINT)
            results.append(asdict(Result(op, shape, "float32", moved, timings, roofline)))
    bar.step("done")
    bar.close()
    info = gpu.device_info()
    clock = "device timestamps" if "TIMESTAMP_QUERY" in info["features"] else "wall time, no timestamps"
    device = f"{info['name']} ({info['backend']}, {info['driver']}; {clock})"
    if torch is not None:
        device += f"; PyTorch {torch.__version__} on {torch.cuda.get_device_name()}"
    else:
        print("PyTorch with CUDA is not installed: rsnorm's GPU times only", file=sys.stderr)
    return {"config": {**config(), "device": device}, "copy_gbps": ceiling, "results": results}
