"""rsnorm: normalization kernels for NumPy arrays, exact and at memory bandwidth (Rust core).

Functions follow ``torch.nn.functional`` names and arguments and take any float16/32/64 NumPy
array of any strides. See README.md for the table of operations.
"""

from __future__ import annotations

import os as _os

from . import _rsnorm, nn, optim
from ._config import show_config
from ._errors import named_errors as _named_errors
from ._rsnorm import (
    __version__,
    add_layer_norm,
    add_layer_norm_backward,
    add_rms_norm,
    add_rms_norm_backward,
    batch_norm,
    batch_norm_backward,
    cross_entropy_with_logits,
    get_num_threads,
    group_norm,
    group_norm_backward,
    instance_norm,
    instance_norm_backward,
    l2_normalize,
    l2_normalize_backward,
    layer_norm,
    layer_norm_backward,
    local_response_norm,
    log_softmax,
    merge_moments,
    moments,
    rms_norm,
    rms_norm_backward,
    selu,
    selu_backward,
    set_num_threads,
    simd_level,
    softmax,
    wasserstein_1d,
    weight_norm,
    weight_norm_backward,
)
from .divergence import cross_entropy, entropy, js_distance, js_divergence, kl_div
from .functional import cosine_linear, cosine_linear_backward
from .selection import aic, bic

__all__ = [
    "__version__",
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_backward",
    "aic",
    "batch_norm",
    "batch_norm_backward",
    "bic",
    "cosine_linear",
    "cosine_linear_backward",
    "cross_entropy",
    "cross_entropy_with_logits",
    "entropy",
    "get_num_threads",
    "group_norm",
    "group_norm_backward",
    "instance_norm",
    "instance_norm_backward",
    "js_distance",
    "js_divergence",
    "kl_div",
    "l2_normalize",
    "l2_normalize_backward",
    "layer_norm",
    "layer_norm_backward",
    "local_response_norm",
    "log_softmax",
    "merge_moments",
    "moments",
    "nn",
    "optim",
    "rms_norm",
    "rms_norm_backward",
    "selu",
    "selu_backward",
    "set_num_threads",
    "show_config",
    "simd_level",
    "softmax",
    "wasserstein_1d",
    "weight_norm",
    "weight_norm_backward",
]

# The extension's functions exported above, held to the error contract (function and argument
# named, no OverflowError); the Python-level ones are wrapped where they are defined, and the two
# queries without arguments have no error to name.
for _name in __all__:
    _fn = getattr(_rsnorm, _name, None)
    if callable(_fn) and globals()[_name] is _fn and _name not in ("get_num_threads", "simd_level"):
        globals()[_name] = _named_errors(_fn)
del _name, _fn

# A forked child inherits the parent's pool object but none of its threads: drop it there.
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(after_in_child=_rsnorm._after_fork_in_child)
