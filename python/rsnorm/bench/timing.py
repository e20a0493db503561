"""Timing: every implementation of a workload and its roofline (a same-bytes copy, an in-place
stream, a read or its matrix products), interleaved round by round; medians per call."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import partial

import numpy as np

import rsnorm as rn
from rsnorm import _rsnorm
from rsnorm._config import config

from .suites import SUITES, Suite
from .workload import Result, Workload


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


def _roofline(load: Workload) -> Callable[[], object]:
    """The work `load` is held to (its `roofline`): rsnorm's threads copying bytes_moved / 2 bytes
    into another buffer, or scaling the workload's arrays (else a buffer of its footprint) in place
    (`_in_place_scale` converts its time to the workload's bytes), or summing bytes_moved bytes;
    or the workload's own matrix products."""
    if load.roofline == "matmul":
        assert load.matmul is not None, f"{load.op}: a matmul roofline needs its matmul"
        return load.matmul
    if load.roofline == "read":
        return partial(_rsnorm._parallel_sum, np.ones(max(load.bytes_moved // 4, 1), dtype=np.float32))
    if load.roofline == "in-place":
        assert load.footprint, f"{load.op}: an in-place roofline needs the workload's footprint"
        if load.arrays:
            return partial(_rsnorm._parallel_scale, load.arrays, 1.0)
        return partial(_rsnorm._parallel_scale, np.ones(max(load.footprint // 4, 1), np.float32), 1.0)
    buf = np.ones(max(load.bytes_moved // 8, 1), dtype=np.float32)
    return partial(_rsnorm._parallel_copy, buf, np.empty_like(buf))


def _in_place_scale(load: Workload) -> float:
    """What the in-place reference's time is multiplied by: it moved twice the footprint (each byte
    read and written back), the workload moves bytes_moved."""
    return load.bytes_moved / (2 * load.footprint) if load.roofline == "in-place" and load.footprint else 1.0


def run(
    suite: Suite | str = "full",
    rounds: int | None = None,
    only: str | None = None,
    progress: bool = True,
) -> dict:
    """Times every workload of `suite` (those whose op contains `only`, if given) against its peers
    and its roofline, interleaved; returns the report (config, ceiling, per-workload medians)."""
    suite = SUITES[suite] if isinstance(suite, str) else suite
    rounds = rounds or suite.rounds
    threads = rn.get_num_threads()
    loads = [w for w in suite.workloads(threads) if only is None or only in w.op]
    bar = _Progress(len(loads) + 1, progress)
    bar.step("copy bandwidth")
    ceiling = copy_bandwidth()
    results = []
    for load in loads:
        bar.step(f"{load.op} {load.shape}")
        impls = {**load.impls, load.roofline: _roofline(load)}
        timings = _time_interleaved(impls, rounds, suite.target_s, suite.settle_s)
        timings[load.roofline] *= _in_place_scale(load)
        results.append(Result(load.op, load.shape, load.dtype, load.bytes_moved, timings, load.roofline))
        del impls
    bar.step("done")
    bar.close()
    return {"config": config(), "copy_gbps": ceiling, "results": [asdict(r) for r in results]}
