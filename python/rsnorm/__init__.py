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
    l2_normalize,
    layer_norm,
    local_response_norm,
    merge_moments,
    moments,
    rms_norm,
    selu,
    set_num_threads,
    simd_level,
    weight_norm,
)
from .functional import cosine_linear

__all__ = [
    "__version__",
    "add_layer_norm",
    "add_rms_norm",
    "batch_norm",
    "cosine_linear",
    "get_num_threads",
    "group_norm",
    "instance_norm",
    "l2_normalize",
    "layer_norm",
    "local_response_norm",
    "merge_moments",
    "moments",
    "nn",
    "rms_norm",
    "selu",
    "set_num_threads",
    "show_config",
    "simd_level",
    "weight_norm",
]

# A forked child inherits the parent's pool object but none of its threads: drop it there.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_rsnorm._after_fork_in_child)
