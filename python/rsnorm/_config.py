"""Threads and build: ``set_num_threads``, ``get_num_threads``, ``simd_level``, ``show_config``."""

from __future__ import annotations

import platform
import sys

import numpy as np

from . import _rsnorm
from ._backend import op


@op
def set_num_threads(n: int) -> None:
    """Sets the number of threads rsnorm computes with (1 to 1024; ``RSNORM_NUM_THREADS`` or the
    CPU count when never set), as ``torch.set_num_threads``."""
    _rsnorm.set_num_threads(n)


def get_num_threads() -> int:
    """The number of threads rsnorm computes with."""
    return _rsnorm.get_num_threads()


def simd_level() -> str:
    """The SIMD path kernels run on: "avx512", "avx2" or "scalar" on x86-64, "neon" on aarch64
    (``RSNORM_SIMD`` lowers it)."""
    return _rsnorm.simd_level()


def gpu_summary() -> str:
    """The GPU adapter rsnorm.gpu uses (name, backend, driver), or why there is none. Opens it."""
    try:
        info = _rsnorm.gpu_device_info()
    except _rsnorm.GpuError as exc:
        return f"none ({str(exc).split(' (')[0]})"
    return (
        f"{info['name']} ({info['backend']}, {info['driver']}; {info['features'] or 'no optional features'})"
    )


def _prefetch() -> str:
    """What the norms prefetch in software (see `config`)."""
    if _rsnorm._row_prefetch():
        return "rows ahead"
    if _rsnorm._nontemporal_stores() and _rsnorm._streamed_row_prefetch():
        return "input rows ahead of streamed stores"
    return "hardware only"


def _streaming() -> str:
    """Which calls of the streaming loops run with 256-bit vectors (see `config`)."""
    start = _rsnorm._streaming_from()
    if start == 0:
        return "256-bit in streaming loops"
    if start >= 1 << 62:
        return "full width"
    return f"256-bit in streaming loops from {start >> 20} MB a call"


def config() -> dict[str, str]:
    """The SIMD path, thread count, GPU adapter and library versions, as a dict."""
    return {
        "rsnorm": _rsnorm.__version__,
        "simd": _rsnorm.simd_level(),
        # The norms' software prefetch of their next rows: on where it measured faster (by CPU
        # vendor); where the vendor rule is off, LayerNorm's and RMSNorm's streamed calls still
        # prefetch their next input rows. RSNORM_PREFETCH=0|1 to choose.
        "prefetch": _prefetch(),
        # LayerNorm's and RMSNorm's outputs and their backward's dx, in calls of 64 MB and more
        # (and the bench's copy from 32 MB written): stores that skip the cache where they
        # measured faster (by CPU vendor), RSNORM_NONTEMPORAL=0|1 to choose.
        "stores": "non-temporal from 64 MB a call" if _rsnorm._nontemporal_stores() else "cached",
        # The channel norms' loops and the row norms' backward: 256-bit vectors, faster from
        # memory; on AMD from Zen 5 on, calls whose arrays hold under 16 MB together run at full
        # width, faster within its L3 (AVX-512 CPUs). RSNORM_STREAMING_CAP=0|1: never, always.
        "vectors": _streaming(),
        # "release" in wheels; a local build's profile otherwise (its timings are not the wheel's).
        "build": _rsnorm._build_profile(),
        "threads": str(_rsnorm.get_num_threads()),
        "gpu": gpu_summary(),
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "machine": platform.machine(),
    }


def show_config() -> None:
    """Prints the SIMD path, thread count, GPU adapter and library versions."""
    for key, value in config().items():
        print(f"{key:>8}: {value}")
