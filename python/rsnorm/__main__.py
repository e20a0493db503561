"""Command line: ``python -m rsnorm bench``, ``python -m rsnorm stats fit|apply`` and
``python -m rsnorm config``; ``python -m rsnorm --help`` lists every command and option."""

from __future__ import annotations

import sys


def usage() -> str:
    """Every command with all its options, from the commands' own parsers (so it stays in step)."""
    from .bench.cli import build_parser as bench_parser
    from .stats_cli import build_parser as stats_parser

    _, stats = stats_parser()
    parts = [
        "usage: python -m rsnorm {bench,stats,config} ...",
        "",
        "  bench   time rsnorm against NumPy, SciPy, PyTorch and ONNX Runtime (those installed)",
        "  stats   exact statistics of a .npy file and standardization with them, out of core",
        "  config  rsnorm's version, SIMD level, threads and backends",
        "",
        bench_parser().format_help().rstrip(),
        *(f"\n{parser.format_help().rstrip()}" for parser in stats.values()),
        "",
        "usage: python -m rsnorm config",
    ]
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    command = argv[0] if argv else "help"
    if command == "bench":
        from .bench import main as bench_main

        return bench_main(argv[1:])
    if command == "stats":
        from .stats_cli import main as stats_main

        return stats_main(argv[1:])
    if command == "config":
        from ._config import show_config

        show_config()
        return 0
    if command in ("help", "-h", "--help"):
        print(usage())
        return 0
    print(f"python -m rsnorm: unknown command {command!r}\n\n{usage()}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
