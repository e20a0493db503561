"""``python -m rsnorm bench``: rsnorm against NumPy, SciPy, PyTorch CPU and ONNX Runtime, side by side.

Every implementation of a workload is timed in the same run, interleaved round by round so
machine noise hits all of them alike; the table reports medians. Bandwidth is bytes read plus
bytes written per second. Each workload is also timed against a copy of the same number of bytes
by rsnorm's threads, interleaved with it: "% copy" is that copy's time over rsnorm's, so a busy
moment on a shared machine moves both alike. The header also gives a large-buffer copy ceiling.

The runner is a package: one module per op family declares its workloads (`rows`, `channels`,
`optimizers`, `divergence`, `statistics`, registered in `workload.FAMILIES`), `suites` the shapes,
`timing` the interleaved rounds, `report` the table, `chart` the files, `cli` the command line.
Workloads call rsnorm's public functions, as users do.
"""

from .chart import write_results
from .cli import main
from .report import PEERS, format_markdown, format_table, summarize
from .rows import COSINE_OUT_FEATURES
from .suites import SUITES, Suite
from .timing import copy_bandwidth, run
from .workload import FAMILIES, Result, Workload

__all__ = [
    "COSINE_OUT_FEATURES",
    "FAMILIES",
    "PEERS",
    "SUITES",
    "Result",
    "Suite",
    "Workload",
    "copy_bandwidth",
    "format_markdown",
    "format_table",
    "main",
    "run",
    "summarize",
    "write_results",
]
