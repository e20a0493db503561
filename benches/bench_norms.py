"""Side-by-side benchmark of the normalization kernels (the same runner as ``python -m rsnorm bench``).

    python benches/bench_norms.py [--json] [--quick] [--rounds N] [--threads N]

Peers are timed when importable: NumPy always, PyTorch CPU (``pip install torch``) and ONNX Runtime
(``pip install ".[bench]"``). All implementations of a workload are interleaved round by round in one
run; the table shows medians, GB/s (bytes read + written) and the share of the copy ceiling
measured in the same run.
"""

from __future__ import annotations

import sys

from rsnorm.bench import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
