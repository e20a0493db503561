"""Side-by-side benchmark of every rsnorm op (the same runner as ``python -m rsnorm bench``).

    python benches/bench_norms.py [--suite full|quick] [--only TEXT] [--json | --markdown]
                                  [--rounds N] [--threads N] [--out DIR]

Peers are timed when importable: NumPy always, SciPy, PyTorch CPU (``pip install torch``) and ONNX
Runtime (``pip install ".[bench]"``). All implementations of a workload, and a copy of the same bytes,
are interleaved round by round in one run; the table shows medians, GB/s (bytes read + written), the
share of that copy's speed and the speed-up over each peer and the fastest. ``--out DIR`` writes
bench.json, bench.md (the README table) and bench.png (the chart).
"""

from __future__ import annotations

import sys

from rsnorm.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
