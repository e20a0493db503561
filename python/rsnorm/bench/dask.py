"""``python -m rsnorm bench --device dask``: standardization and BatchNorm statistics of a
memory-mapped float32 array larger than the usual benchmark shapes, on a two-worker
``distributed.LocalCluster`` (one thread each, 127.0.0.1), against the peers people use for it.

Each job reads its chunks from the .npy file by path on the workers (the way ``rsnorm stats
--scheduler`` does) and sums every output chunk (so no result crosses the network). Jobs:

- ``io floor``: every chunk read twice and summed (what any two-pass job must at least do),
- ``rsnorm.dask``: ``StandardScaler().fit`` then ``transform``,
- ``dask.array``: ``mean``/``std`` with float64 accumulators, then ``(x - mean) / std``,
- ``dask-ml``: its ``StandardScaler`` (where installed),
- ``sklearn partial_fit``: ``StandardScaler.partial_fit`` over the same chunks, then ``transform``
  (one process, here),

and for an (N, C, H, W) array, BatchNorm's per-channel statistics and their application by
``rsnorm.dask`` (training ``batch_norm``) against ``dask.array``'s float64 mean/var and apply.
Rounds are interleaved; the median of each is reported, with its ratio to rsnorm's.
"""

from __future__ import annotations

import statistics as stats
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..stats_cli import _rows

#: Bytes of input per chunk.
CHUNK_BYTES = 64 << 20


def _write(path: Path, shape: tuple[int, ...], offsets: np.ndarray) -> None:
    """A float32 .npy of ``shape``: offset + randn per column (or channel), written in blocks."""
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=shape)
    rng = np.random.default_rng(0)
    step = max(1, CHUNK_BYTES // (4 * int(np.prod(shape[1:]))))
    for start in range(0, shape[0], step):
        block = rng.standard_normal((min(step, shape[0] - start), *shape[1:]), dtype=np.float32)
        out[start : start + len(block)] = block + offsets
    out.flush()
    del out


def _array(path: Path) -> Any:
    """The .npy as a dask array whose chunks each worker reads from the file by path."""
    import dask
    import dask.array as da

    data = np.load(path, mmap_mode="r")
    step = max(1, CHUNK_BYTES // (data.itemsize * int(np.prod(data.shape[1:]))))
    blocks = [
        da.from_delayed(
            dask.delayed(_rows)(str(path), a, min(a + step, data.shape[0])),
            shape=(min(a + step, data.shape[0]) - a, *data.shape[1:]),
            dtype=data.dtype,
        )
        for a in range(0, data.shape[0], step)
    ]
    return da.concatenate(blocks, axis=0), data.shape[0] // step + (data.shape[0] % step > 0)


def _total(y: Any) -> float:
    return float(y.sum(dtype=np.float64).compute())


def run_dask(
    size_gb: float = 4.0, rounds: int = 3, folder: str | None = None, progress: bool = True
) -> dict[str, Any]:
    import dask
    import distributed

    workdir = Path(folder or tempfile.mkdtemp(prefix="rsnorm-bench-dask-"))
    features = 64
    rows = int(size_gb * 1e9) // (4 * features)
    table = workdir / f"table_{rows}x{features}.npy"
    nchw_shape = (max(1, int(size_gb * 1e9 / 2) // (4 * 32 * 32 * 32)), 32, 32, 32)
    images = workdir / f"images_{nchw_shape[0]}x32x32x32.npy"
    log = (lambda msg: print(msg, file=sys.stderr, flush=True)) if progress else (lambda msg: None)
    if not table.exists():
        log(f"writing {table} ({rows * features * 4 / 1e9:.1f} GB)")
        _write(table, (rows, features), np.linspace(-1e5, 1e5, features, dtype=np.float32))
    if not images.exists():
        log(f"writing {images} ({np.prod(nchw_shape) * 4 / 1e9:.1f} GB)")
        _write(images, nchw_shape, np.linspace(0, 1e3, 32, dtype=np.float32)[:, None, None])

    import gc

    import rsnorm
    import rsnorm.dask as rd

    gc.collect()  # finalize any dropped Client now, not inside the cluster's start (a deadlock)
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=":0",
        silence_logs=40,
    )
    client = distributed.Client(cluster)
    rd.limit_threads(client)
    x, chunks = _array(table)
    nchw, _ = _array(images)

    def io_floor() -> None:
        dask.compute(x.sum(dtype=np.float64))
        dask.compute(x.sum(dtype=np.float64))

    def rsnorm_scaler() -> None:
        _total(rd.StandardScaler().fit(x).transform(x))

    def dask_array() -> None:
        mean, std = dask.compute(x.mean(axis=0, dtype=np.float64), x.std(axis=0, dtype=np.float64))
        _total(((x - mean) / std).astype(np.float32))

    def sklearn_partial_fit() -> None:
        from sklearn.preprocessing import StandardScaler

        data = np.load(table, mmap_mode="r")
        step = -(-rows // chunks)
        scaler = StandardScaler()
        for a in range(0, rows, step):
            scaler.partial_fit(data[a : a + step])
        total = 0.0
        for a in range(0, rows, step):
            total += float(scaler.transform(data[a : a + step]).sum(dtype=np.float64))

    def dask_ml_scaler() -> None:
        from dask_ml.preprocessing import StandardScaler

        _total(StandardScaler().fit(x).transform(x))

    def bn_floor() -> None:
        dask.compute(nchw.sum(dtype=np.float64))
        dask.compute(nchw.sum(dtype=np.float64))

    def rsnorm_bn() -> None:
        _total(rsnorm.batch_norm(nchw, training=True))

    def dask_bn() -> None:
        mean, var = dask.compute(
            nchw.mean(axis=(0, 2, 3), dtype=np.float64), nchw.var(axis=(0, 2, 3), dtype=np.float64)
        )
        cut = (None, slice(None), None, None)
        _total(((nchw - mean[cut]) / np.sqrt(var[cut] + 1e-5)).astype(np.float32))

    jobs: dict[str, tuple[str, Callable[[], None]]] = {
        "standardize: io floor (read twice)": ("table", io_floor),
        "standardize: rsnorm.dask": ("table", rsnorm_scaler),
        "standardize: dask.array float64 mean/std": ("table", dask_array),
        "standardize: sklearn partial_fit": ("table", sklearn_partial_fit),
        "batchnorm: io floor (read twice)": ("nchw", bn_floor),
        "batchnorm: rsnorm.dask training batch_norm": ("nchw", rsnorm_bn),
        "batchnorm: dask.array float64 mean/var": ("nchw", dask_bn),
    }
    try:
        import dask_ml  # noqa: F401

        jobs["standardize: dask-ml StandardScaler"] = ("table", dask_ml_scaler)
    except ImportError:
        log("dask-ml is not installed: its StandardScaler is left out")
    times: dict[str, list[float]] = {name: [] for name in jobs}
    try:
        for r in range(rounds):
            for name, (_, job) in jobs.items():
                t0 = time.perf_counter()
                job()
                times[name].append(time.perf_counter() - t0)
                log(f"round {r + 1}/{rounds} {name}: {times[name][-1]:.2f} s")
    finally:
        client.close()
        cluster.close()
    medians = {name: stats.median(t) for name, t in times.items()}
    results = []
    for name, (data, _) in jobs.items():
        ours = medians[
            "standardize: rsnorm.dask" if data == "table" else "batchnorm: rsnorm.dask training batch_norm"
        ]
        results.append(
            {"job": name, "seconds": medians[name], "runs": times[name], "vs_rsnorm": medians[name] / ours}
        )
    return {
        "table": {"shape": [rows, features], "gb": rows * features * 4 / 1e9, "chunks": chunks},
        "nchw": {"shape": list(nchw_shape), "gb": float(np.prod(nchw_shape)) * 4 / 1e9},
        "cluster": "LocalCluster: 2 worker processes x 1 thread, 127.0.0.1",
        "results": results,
    }


def format_dask(report: dict[str, Any]) -> str:
    t, n = report["table"], report["nchw"]
    lines = [
        f"table {t['shape'][0]}x{t['shape'][1]} float32 ({t['gb']:.1f} GB, {t['chunks']} chunks); "
        f"NCHW {'x'.join(map(str, n['shape']))} ({n['gb']:.1f} GB); {report['cluster']}",
        f"{'job':<45} {'median s':>9} {'x rsnorm':>9}",
    ]
    for r in report["results"]:
        lines.append(f"{r['job']:<45} {r['seconds']:>9.2f} {r['vs_rsnorm']:>9.2f}")
    return "\n".join(lines)
