"""``python -m rsnorm bench``: the command line of the runner."""

from __future__ import annotations

import argparse
import json
import sys

import rsnorm as rn

from . import __doc__ as _doc
from .chart import write_results
from .report import format_markdown, format_table
from .suites import SUITES
from .timing import run
from .workload import missing_peers


def build_parser() -> argparse.ArgumentParser:
    """The bench command's options (also listed by ``python -m rsnorm --help``)."""
    parser = argparse.ArgumentParser(prog="python -m rsnorm bench", description=(_doc or "").splitlines()[0])
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
    parser.add_argument(
        "--device",
        choices=["cpu", "gpu", "dask"],
        default="cpu",
        help="cpu (default): NumPy arrays; gpu: rsnorm.gpu arrays against PyTorch CUDA; dask: "
        "standardization and BatchNorm of a memory-mapped array on a 2-worker LocalCluster",
    )
    parser.add_argument(
        "--size-gb", type=float, default=4.0, help="--device dask: the table's size in GB (default 4)"
    )
    parser.add_argument(
        "--data", default=None, help="--device dask: folder for the generated .npy files (kept for reuse)"
    )
    return parser


def main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.threads is not None:
        rn.set_num_threads(args.threads)
    suite = "quick" if args.quick else args.suite
    quiet = args.json or args.markdown
    if args.device == "dask":
        from .dask import format_dask, run_dask

        report = run_dask(args.size_gb, rounds=args.rounds or 3, folder=args.data, progress=not quiet)
        print(json.dumps(report, indent=2) if args.json else format_dask(report))
        return 0
    if args.device == "gpu":
        from .gpu import run_gpu

        if suite not in ("quick", "full"):
            parser.error("--device gpu takes --suite quick or full")
        report = run_gpu(suite, rounds=args.rounds, only=args.only, progress=not quiet)
    else:
        absent = missing_peers()
        if absent:
            print(
                "peers not installed, left out of the comparison: "
                + ", ".join(f"{name} (pip install {package})" for name, package in absent),
                file=sys.stderr,
            )
        report = run(suite, rounds=args.rounds, only=args.only, progress=not quiet)
    if args.json:
        print(json.dumps(report, indent=2))
    elif args.markdown:
        print(format_markdown(report))
    else:
        print(format_table(report))
    if args.out:
        paths = write_results(report, args.out)
        for path in paths:
            print(f"wrote {path}", file=sys.stderr)
        if not any(path.endswith(".png") for path in paths):
            print("matplotlib is not installed: no chart was drawn (pip install matplotlib)", file=sys.stderr)
    return 0
