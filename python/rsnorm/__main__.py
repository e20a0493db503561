"""Command line: ``python -m rsnorm bench [--json] [--quick]``, ``python -m rsnorm stats fit|apply``
and ``python -m rsnorm config``."""

from __future__ import annotations

import sys


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
    print(
        "usage: python -m rsnorm bench [--json] [--quick] [--rounds N] [--threads N] [--device gpu]\n"
        "       python -m rsnorm stats fit DATA.npy [--axis A] -o STATS.npz\n"
        "       python -m rsnorm stats apply DATA.npy STATS.npz -o OUT.npy\n"
        "       python -m rsnorm config"
    )
    return 0 if command in ("help", "-h", "--help") else 2


if __name__ == "__main__":
    sys.exit(main())
