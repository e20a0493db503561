"""rsnorm: normalization kernels for NumPy arrays, exact and at memory bandwidth (Rust core).

Functions follow ``torch.nn.functional`` names and arguments and take any float16/32/64 NumPy
array of any strides. See README.md for the table of operations.
"""

from __future__ import annotations

import os as _os

from . import _rsnorm, nn
from ._config import show_config
from ._rsnorm import (
    __version__,
    add_layer_norm,
    add_rms_norm,
    batch_norm,
    get_num_threads,
    group_norm,
    instance_norm,
    layer_norm,
    rms_norm,
    set_num_threads,
    simd_level,
)

__all__ = [
    "__version__",
    "add_layer_norm",
    "add_rms_norm",
    "batch_norm",
    "get_num_threads",
    "group_norm",
    "instance_norm",
    "layer_norm",
    "nn",
    "rms_norm",
    "set_num_threads",
    "show_config",
    "simd_level",
]

# A forked child inherits the parent's pool object but none of its threads: drop it there.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_rsnorm._after_fork_in_child)
