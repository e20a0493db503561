"""rsnorm: normalization kernels for NumPy arrays, exact and at memory bandwidth (Rust core).

Functions follow ``torch.nn.functional`` names and arguments and take any float16/32/64 NumPy
array of any strides. Each is defined once in Python and runs where its arrays live (``_backend``):
NumPy arrays in the Rust extension, other array types in the backend registered for them. See
README.md for the table of operations.
"""

from __future__ import annotations

import os as _os

from . import _rsnorm, gpu, nn, optim
from ._config import get_num_threads, set_num_threads, show_config, simd_level
from ._errors import InPlaceError
from ._rsnorm import __version__
from .activation import log_softmax, log_softmax_backward, selu, selu_backward, softmax, softmax_backward
from .channels import (
    batch_norm,
    batch_norm_backward,
    group_norm,
    group_norm_backward,
    instance_norm,
    instance_norm_backward,
)
from .divergence import (
    cross_entropy,
    cross_entropy_with_logits,
    cross_entropy_with_logits_backward,
    entropy,
    js_distance,
    js_divergence,
    kl_div,
    nll_loss,
    wasserstein_1d,
)
from .norm import (
    add_layer_norm,
    add_layer_norm_backward,
    add_rms_norm,
    add_rms_norm_backward,
    cosine_linear,
    cosine_linear_backward,
    l2_normalize,
    l2_normalize_backward,
    layer_norm,
    layer_norm_backward,
    local_response_norm,
    normalize,
    normalize_backward,
    rms_norm,
    rms_norm_backward,
    weight_norm,
    weight_norm_backward,
)
from .selection import aic, bic
from .statistics import MOMENTS, apply_statistics, merge_moments, merge_partials, moments, partial_moments

__all__ = [
    "MOMENTS",
    "InPlaceError",
    "__version__",
    "add_layer_norm",
    "add_layer_norm_backward",
    "add_rms_norm",
    "add_rms_norm_backward",
    "aic",
    "apply_statistics",
    "batch_norm",
    "batch_norm_backward",
    "bic",
    "cosine_linear",
    "cosine_linear_backward",
    "cross_entropy",
    "cross_entropy_with_logits",
    "cross_entropy_with_logits_backward",
    "entropy",
    "get_num_threads",
    "gpu",
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
    "log_softmax_backward",
    "merge_moments",
    "merge_partials",
    "moments",
    "nll_loss",
    "nn",
    "normalize",
    "normalize_backward",
    "optim",
    "partial_moments",
    "rms_norm",
    "rms_norm_backward",
    "selu",
    "selu_backward",
    "set_num_threads",
    "show_config",
    "simd_level",
    "softmax",
    "softmax_backward",
    "wasserstein_1d",
    "weight_norm",
    "weight_norm_backward",
]

# A forked child inherits the parent's pool object but none of its threads: drop it there. No
# pool starts threads while the process forks (a thread created during a fork can corrupt the
# child's C library).
if hasattr(_os, "register_at_fork"):
    _os.register_at_fork(
        before=_rsnorm._before_fork,
        after_in_parent=_rsnorm._after_fork_in_parent,
        after_in_child=_rsnorm._after_fork_in_child,
    )
