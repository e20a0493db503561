"""``python -m rsnorm stats``: exact statistics of a .npy file of any size, and standardization with
them, out of core.

``stats fit DATA.npy --axis 0 -o STATS.npz`` reads DATA memory-mapped, a block of rows at a time, and
writes the float64 ``count``, ``mean`` and ``var`` (biased) over ``--axis`` (rsnorm's exact moments,
merged over the blocks). ``stats apply DATA.npy STATS.npz -o OUT.npy`` writes ``(x - mean) / scale`` in
DATA's dtype, scale the standard deviation (1 where a feature is constant, as scikit-learn's
``StandardScaler``). Outputs are written to a temporary file beside the target and renamed when
complete, so a failure never leaves a partial file; an existing output is an error unless
``--overwrite``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from . import statistics

# Rows per block: about this many bytes of input at a time.
BLOCK_BYTES = 64 << 20


class StatsError(Exception):
    """A bad input or output, reported on stderr with exit status 2."""


def _load(path: str) -> np.ndarray[Any, Any]:
    p = Path(path)
    if p.suffix != ".npy":
        raise StatsError(f"{path}: not a .npy file (rsnorm stats reads NumPy's .npy format)")
    if not p.is_file():
        raise StatsError(f"{path}: no such file")
    try:
        data = np.load(p, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise StatsError(f"{path}: not a readable .npy file ({exc})") from None
    if data.dtype.kind != "f":
        raise StatsError(f"{path}: dtype {data.dtype}; rsnorm stats reads float16, float32 and float64 data")
    if data.ndim == 0:
        raise StatsError(f"{path}: a 0-dimensional array has no axis to take statistics over")
    return data


def _axes(axis: list[int] | None, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    resolved = []
    for a in axis:
        if not -ndim <= a < ndim:
            raise StatsError(f"--axis {a} is out of range for data of {ndim} dims")
        resolved.append(a % ndim)
    if len(set(resolved)) != len(resolved):
        raise StatsError(f"--axis {axis} repeats an axis")
    return tuple(sorted(resolved))


def _ranges(data: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    """(first, stop) rows of each block: about BLOCK_BYTES of data each (one block when empty)."""
    rows = data.shape[0]
    row_bytes = max(data.itemsize * int(np.prod(data.shape[1:], dtype=np.int64)), 1)
    step = max(1, BLOCK_BYTES // row_bytes)
    return [(start, min(start + step, rows)) for start in range(0, max(rows, 1), step)]


def _rows(path: str, start: int, stop: int) -> np.ndarray[Any, Any]:
    """Rows [start, stop) of the .npy at ``path``, read memory-mapped: what a block task reads,
    here or on a Dask worker (which opens the file by its path)."""
    return np.asarray(np.load(path, mmap_mode="r", allow_pickle=False)[start:stop])


def _fit_rows(path: str, start: int, stop: int, axes: tuple[int, ...]) -> np.ndarray[Any, Any]:
    return statistics.partial_moments(_rows(path, start, stop), axes)


def _apply_rows(
    path: str, out: str, start: int, stop: int, mean: Any, inv_scale: Any, axes: tuple[int, ...]
) -> int:
    target = np.load(out, mmap_mode="r+", allow_pickle=False)
    statistics.apply_statistics(_rows(path, start, stop), mean, inv_scale, axis=axes, out=target[start:stop])
    target.flush()
    return stop - start


def _run(
    tasks: list[tuple[Any, ...]], sizes: list[int], scheduler: str | None, progress: bool, label: str
) -> list[Any]:
    """Each ``(fn, *args)`` task's result, in order: here one after the other, or on the Dask
    cluster at ``scheduler``; a progress bar on stderr counts the rows done (``sizes``: each
    task's)."""
    rows = sum(sizes)

    def bar(done: int) -> None:
        if progress:
            filled = 30 * done // max(rows, 1)
            sys.stderr.write(f"\r{label} [{'#' * filled}{'.' * (30 - filled)}] {done}/{rows} rows")
            sys.stderr.flush()

    done = 0
    bar(0)
    if scheduler is None:
        results = []
        for (fn, *args), size in zip(tasks, sizes, strict=True):
            results.append(fn(*args))
            done += size
            bar(done)
    else:
        try:
            from distributed import Client, as_completed
        except ImportError:
            raise StatsError('--scheduler needs dask.distributed: pip install "rsnorm[dask]"') from None
        try:
            # A malformed address is refused before a Client exists: a half-built Client's
            # finalizer can deadlock a later cluster start in the same process (distributed's
            # LoopRunner lock), which a test process would hit.
            from distributed.comm import parse_address, parse_host_port

            parse_host_port(parse_address(scheduler)[1])
        except ValueError as exc:
            raise StatsError(f"--scheduler {scheduler}: not a scheduler address ({exc})") from None
        try:
            client = Client(scheduler, timeout=10)
        except (OSError, ValueError) as exc:
            raise StatsError(f"--scheduler {scheduler}: no Dask scheduler answers there ({exc})") from None
        with client:
            futures = [client.submit(fn, *args, pure=False) for fn, *args in tasks]
            size_of = {f.key: size for f, size in zip(futures, sizes, strict=True)}
            for future in as_completed(futures):
                future.result()  # a task's error is raised here
                done += size_of[future.key]
                bar(done)
            results = client.gather(futures)
    if progress:
        sys.stderr.write("\n")
    return results


def _target(path: str, overwrite: bool, suffix: str) -> Path:
    p = Path(path)
    if p.suffix != suffix:
        raise StatsError(f"{path}: the output must end in {suffix}")
    if p.exists() and not overwrite:
        raise StatsError(f"{path}: exists (pass --overwrite to replace it)")
    if not p.parent.is_dir():
        raise StatsError(f"{path}: no such folder {p.parent}")
    return p


def _replace(temporary: str, target: Path) -> None:
    os.replace(temporary, target)


def fit(
    data_path: str,
    axis: list[int] | None,
    out: str,
    overwrite: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
) -> None:
    data = _load(data_path)
    axes = _axes(axis, data.ndim)
    target = _target(out, overwrite, ".npz")
    path = str(Path(data_path).resolve())
    ranges = _ranges(data)
    tasks = [(_fit_rows, path, a, b, axes) for a, b in ranges]
    parts = _run(tasks, [b - a for a, b in ranges], scheduler, progress, "fit")
    # Blocks cut axis 0: merged when it is reduced, one after another when it is kept.
    merged = statistics.merge_partials(parts) if 0 in axes else np.concatenate(parts)
    count, mean, m2 = merged["count"], merged["mean"], merged["m2"]
    with np.errstate(invalid="ignore", divide="ignore"):
        var = m2 / count
    fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".npz")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, count=count, mean=mean, var=var, axis=np.asarray(axes))
        _replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _block_statistics(
    mean: Any, inv_scale: Any, axes: tuple[int, ...], start: int, stop: int
) -> tuple[Any, Any]:
    """The statistics of rows [start, stop): all of them when axis 0 is reduced, else those rows'."""
    return (mean, inv_scale) if 0 in axes else (mean[start:stop], inv_scale[start:stop])


def apply(
    data_path: str,
    stats_path: str,
    out: str,
    overwrite: bool = False,
    progress: bool = True,
    scheduler: str | None = None,
) -> None:
    data = _load(data_path)
    if Path(stats_path).suffix != ".npz" or not Path(stats_path).is_file():
        raise StatsError(f"{stats_path}: not a statistics file (.npz written by 'rsnorm stats fit')")
    try:
        with np.load(stats_path, allow_pickle=False) as stats:
            count, mean, var, axes = (stats[k] for k in ("count", "mean", "var", "axis"))
    except (KeyError, ValueError, OSError, EOFError, AttributeError) as exc:
        raise StatsError(
            f"{stats_path}: not a statistics file written by 'rsnorm stats fit' ({exc!r})"
        ) from None
    axes = tuple(int(a) for a in axes)
    if any(a >= data.ndim for a in axes):
        raise StatsError(f"{stats_path}: statistics over axes {axes} do not fit data of shape {data.shape}")
    kept_shape = tuple(n for i, n in enumerate(data.shape) if i not in axes)
    if mean.shape != kept_shape:
        raise StatsError(
            f"{stats_path}: statistics of shape {mean.shape} do not fit data of shape {data.shape} "
            f"over axes {axes}"
        )
    eps = np.finfo(np.float64).eps
    constant = var <= count * eps * var + (count * mean * eps) ** 2
    inv_scale = 1.0 / np.where(constant, 1.0, np.sqrt(var))
    target = _target(out, overwrite, ".npy")
    fd, temporary = tempfile.mkstemp(dir=target.parent, suffix=".npy")
    os.close(fd)
    try:
        np.lib.format.open_memmap(temporary, mode="w+", dtype=data.dtype, shape=data.shape).flush()
        path = str(Path(data_path).resolve())
        ranges = _ranges(data)
        tasks = [
            (_apply_rows, path, temporary, a, b, *_block_statistics(mean, inv_scale, axes, a, b), axes)
            for a, b in ranges
        ]
        _run(tasks, [b - a for a, b in ranges], scheduler, progress, "apply")
        _replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The stats command's parser and its subcommands' (also listed by ``python -m rsnorm --help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m rsnorm stats", description=(__doc__ or "").splitlines()[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p_fit = sub.add_parser("fit", help="exact count, mean and variance of a .npy file over --axis")
    p_fit.add_argument("data")
    p_fit.add_argument(
        "--axis", type=int, action="append", help="an axis to reduce (repeatable; default all)"
    )
    p_fit.add_argument("-o", "--out", required=True, help="the statistics file to write (.npz)")
    p_apply = sub.add_parser("apply", help="standardize a .npy file with statistics from 'fit'")
    p_apply.add_argument("data")
    p_apply.add_argument("stats")
    p_apply.add_argument("-o", "--out", required=True, help="the standardized array to write (.npy)")
    for p in (p_fit, p_apply):
        p.add_argument("--overwrite", action="store_true", help="replace an existing output")
        p.add_argument(
            "--scheduler",
            metavar="ADDRESS",
            help="run the blocks on the Dask cluster at ADDRESS (tcp://host:8786); its workers open the "
            "files by the same paths",
        )
        p.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser, {"fit": p_fit, "apply": p_apply}


def main(argv: list[str]) -> int:
    args = build_parser()[0].parse_args(argv)
    try:
        if args.command == "fit":
            fit(args.data, args.axis, args.out, args.overwrite, not args.quiet, args.scheduler)
        else:
            apply(args.data, args.stats, args.out, args.overwrite, not args.quiet, args.scheduler)
    except StatsError as exc:
        print(f"rsnorm stats {args.command}: {exc}", file=sys.stderr)
        return 2
    return 0
