"""``python -m rsnorm bench``: rsnorm against NumPy, PyTorch CPU and ONNX Runtime, side by side.

Every implementation of a workload is timed in the same run, interleaved round by round so
machine noise hits all of them alike; the table reports medians. Bandwidth is bytes read plus
bytes written per second, against the copy ceiling: rsnorm's threads copying a large buffer,
measured in the same run.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from typing import Callable

import numpy as np

from . import _rsnorm
from ._config import config

DEFAULT_SHAPES = [(64, 768), (4096, 1024), (8192, 4096)]
QUICK_SHAPES = [(64, 768), (512, 1024)]
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


def _ort_session(op: str, n: int, dtype: np.dtype, threads: int):
    """A one-node ONNX model of the op, or None when this ONNX Runtime lacks the node."""
    peers = _onnxruntime()
    if peers is None:
        return None
    _, ort = peers
    from onnx import TensorProto, helper

    elem = TensorProto.FLOAT if dtype == np.float32 else TensorProto.DOUBLE
    inputs = [
        helper.make_tensor_value_info("X", elem, ["N", n]),
        helper.make_tensor_value_info("W", elem, [n]),
    ]
    candidates = []
    if op == "layer_norm":
        inputs.append(helper.make_tensor_value_info("B", elem, [n]))
        candidates.append(("LayerNormalization", ["X", "W", "B"], 17))
    else:
        candidates += [("RMSNormalization", ["X", "W"], 23), ("SimplifiedLayerNormalization", ["X", "W"], 17)]
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # ORT's workers otherwise spin for a while after each run, stealing the cores from whatever
    # is timed next in the interleaved rounds.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    for node_type, node_inputs, opset in candidates:
        node = helper.make_node(node_type, node_inputs, ["Y"], axis=-1, epsilon=EPS)
        graph = helper.make_graph([node], op, inputs, [helper.make_tensor_value_info("Y", elem, ["N", n])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
        model.ir_version = min(model.ir_version, 10)
        try:
            return ort.InferenceSession(
                model.SerializeToString(), options, providers=["CPUExecutionProvider"]
            )
        except Exception:
            continue
    return None


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
        for op, impls in (("layer_norm", ln), ("rms_norm", rms)):
            session = _ort_session(op, n, x.dtype, threads)
            if session is not None:
                feeds = {"X": x, "W": w} if op == "rms_norm" else {"X": x, "W": w, "B": b}
                impls["onnxruntime"] = partial(session.run, None, feeds)
            out.append(Workload(op, tuple(shape), np.dtype(dtype).name, moved, impls))
    return out


# ---------------------------------------------------------------- timing


def _calls_per_sample(fn, target_s: float) -> int:
    """Calls per timed sample so that one sample lasts about target_s (timer noise stays small)."""
    fn()
    t0 = time.perf_counter()
    fn()
    once = max(time.perf_counter() - t0, 1e-7)
    return max(1, int(target_s / once))


def _time_interleaved(
    impls: dict[str, Callable[[], object]], rounds: int, target_s: float
) -> dict[str, float]:
    calls = {name: _calls_per_sample(fn, target_s) for name, fn in impls.items()}
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for _ in range(rounds):
        for name, fn in impls.items():
            k = calls[name]
            t0 = time.perf_counter()
            for _ in range(k):
                fn()
            samples[name].append((time.perf_counter() - t0) / k)
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


def run(shapes=None, rounds: int = 11, target_s: float = 0.02, progress: bool = True) -> dict:
    shapes = shapes or DEFAULT_SHAPES
    threads = _rsnorm.get_num_threads()
    loads = workloads(shapes, threads=threads)
    bar = _Progress(len(loads) + 1, progress)
    bar.step("copy bandwidth")
    ceiling = copy_bandwidth()
    results = []
    for load in loads:
        bar.step(f"{load.op} {load.shape}")
        timings = _time_interleaved(load.impls, rounds, target_s)
        results.append(Result(load.op, load.shape, load.dtype, load.bytes_moved, timings))
    bar.step("done")
    bar.close()
    return {"config": config(), "copy_gbps": ceiling, "results": [asdict(r) for r in results]}


# ---------------------------------------------------------------- report

PEERS = ("numpy", "torch", "onnxruntime")


def format_table(report: dict) -> str:
    ceiling = report["copy_gbps"]
    cfg = report["config"]
    lines = [
        f"rsnorm {cfg['rsnorm']} · simd {cfg['simd']} · {cfg['threads']} threads · numpy {cfg['numpy']}",
        f"copy ceiling ({cfg['threads']} threads, read + write): {ceiling:.1f} GB/s",
        "times are medians in ms; 'rsnorm' writes into a preallocated out=, 'alloc' returns a new array;",
        "speed-up = peer time / rsnorm time",
        "",
    ]
    header = (
        f"{'op':<11}{'shape':<13}{'dtype':<8}{'rsnorm':>9}{'GB/s':>7}{'%copy':>7}{'alloc':>9}"
        + "".join(f"{p:>12}" for p in PEERS)
        + "".join(f"{'×' + p:>13}" for p in PEERS)
    )
    lines += [header, "-" * len(header)]
    for r in report["results"]:
        t = r["median_s"]
        ours = t["rsnorm"]
        gbps = r["bytes_moved"] / ours / 1e9
        row = (
            f"{r['op']:<11}{tuple(r['shape'])!s:<13}{r['dtype']:<8}{ours * 1e3:>9.3f}{gbps:>7.1f}"
            f"{100 * gbps / ceiling:>6.0f}%{t['rsnorm alloc'] * 1e3:>9.3f}"
        )
        row += "".join(f"{t[p] * 1e3:>12.3f}" if p in t else f"{'—':>12}" for p in PEERS)
        row += "".join(f"{t[p] / ours:>12.1f}×" if p in t else f"{'—':>13}" for p in PEERS)
        lines.append(row)
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m rsnorm bench", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--quick", action="store_true", help="small shapes and few rounds (a smoke test)")
    parser.add_argument("--rounds", type=int, default=None, help="timed rounds per implementation")
    parser.add_argument("--threads", type=int, default=None, help="threads for rsnorm and the peers")
    args = parser.parse_args(argv)
    if args.threads is not None:
        _rsnorm.set_num_threads(args.threads)
    rounds = args.rounds or (3 if args.quick else 11)
    report = run(
        QUICK_SHAPES if args.quick else DEFAULT_SHAPES,
        rounds=rounds,
        target_s=0.002 if args.quick else 0.02,
        progress=not args.json,
    )
    print(json.dumps(report, indent=2) if args.json else format_table(report))
    return 0
