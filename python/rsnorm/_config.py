"""``rsnorm.show_config()``: what this build runs with."""

from __future__ import annotations

import platform
import sys

import numpy as np

from . import _rsnorm


def config() -> dict[str, str]:
    """The SIMD path, thread count and library versions, as a dict."""
    return {
        "rsnorm": _rsnorm.__version__,
        "simd": _rsnorm.simd_level(),
        "threads": str(_rsnorm.get_num_threads()),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }


def show_config() -> None:
    """Prints the SIMD path, thread count and library versions."""
    for key, value in config().items():
        print(f"{key:>8}: {value}")
