"""Information measures with SciPy's conventions, batched over rows along ``axis`` (default -1);
cross-entropy of logits as PyTorch's; the 1-D Wasserstein distance.

Each distribution is first divided by its sum (as scipy.stats.entropy), 0·log 0 = 0, p > 0 where
q = 0 gives inf, and negative entries are a ValueError. ``base`` None means natural logarithms.
Note: ``kl_div(p, q)`` is SciPy's KL(p‖q) of probabilities, not torch.nn.functional.kl_div (which
takes log-probabilities, target first).
"""

from __future__ import annotations

from typing import Any

from . import _rsnorm
from ._backend import op
from ._typing import Array, ArrayLike, OutArray

__all__ = [
    "cross_entropy",
    "cross_entropy_with_logits",
    "cross_entropy_with_logits_backward",
    "entropy",
    "js_distance",
    "js_divergence",
    "kl_div",
    "wasserstein_1d",
]


@op
def entropy(p: ArrayLike, base: float | None = None, *, axis: int = -1) -> Any:
    """Shannon entropy −Σ p log p (scipy.stats.entropy(p, base=base, axis=axis))."""
    return _rsnorm.information("entropy", p, None, axis, base)


@op
def kl_div(p: ArrayLike, q: ArrayLike, *, axis: int = -1) -> Any:
    """Kullback-Leibler divergence Σ p log(p/q) (scipy.stats.entropy(p, q, axis=axis))."""
    return _rsnorm.information("kl_div", p, q, axis, None)


@op
def cross_entropy(p: ArrayLike, q: ArrayLike, *, axis: int = -1) -> Any:
    """Cross-entropy −Σ p log q = H(p) + KL(p‖q)."""
    return _rsnorm.information("cross_entropy", p, q, axis, None)


@op
def js_divergence(p: ArrayLike, q: ArrayLike, base: float | None = None, *, axis: int = -1) -> Any:
    """Jensen-Shannon divergence ½ KL(p‖m) + ½ KL(q‖m), m = (p + q)/2; at most log(2) in the base."""
    return _rsnorm.information("js_divergence", p, q, axis, base)


@op
def js_distance(p: ArrayLike, q: ArrayLike, base: float | None = None, *, axis: int = -1) -> Any:
    """Jensen-Shannon distance, the square root of the divergence (scipy.spatial.distance.jensenshannon)."""
    return _rsnorm.information("js_distance", p, q, axis, base)


@op
def cross_entropy_with_logits(
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    axis: int = -1,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> Any:
    """Cross-entropy of ``softmax(logits)`` against ``target``, as ``torch.nn.functional.cross_entropy``
    with the classes along ``axis``: target holds class indices (any integer dtype; ``ignore_index``
    skipped) or probabilities. ``reduction`` is "mean", "sum" or "none". ``weight`` (one value per
    class) scales each class's term as PyTorch does; with index targets the mean then divides by the
    weights of the targets not ignored, with probabilities by the number of samples."""
    return _rsnorm.cross_entropy_with_logits(
        logits, target, axis, reduction, label_smoothing, ignore_index, weight
    )


@op
def cross_entropy_with_logits_backward(
    grad_out: ArrayLike,
    logits: ArrayLike,
    target: ArrayLike,
    *,
    weight: ArrayLike | None = None,
    axis: int = -1,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
    out: OutArray | None = None,
) -> Array:
    """Gradient of ``cross_entropy_with_logits`` with respect to ``logits`` (their shape and dtype),
    given the loss's gradient ``grad_out``: a number for "mean" and "sum" (1.0 for the loss itself),
    the losses' shape for "none". ``softmax(logits)`` minus the (smoothed, weighted) target per
    sample, as PyTorch's autograd gives it; ignored samples get 0."""
    return _rsnorm.cross_entropy_with_logits_backward(
        grad_out, logits, target, axis, reduction, label_smoothing, ignore_index, weight, out
    )


@op
def nll_loss(
    log_probs: ArrayLike,
    target: ArrayLike,
    weight: ArrayLike | None = None,
    *,
    axis: int = -1,
    reduction: str = "mean",
    ignore_index: int = -100,
) -> Any:
    """Negative log-likelihood of class indices under log-probabilities, as
    ``torch.nn.functional.nll_loss`` with the classes along ``axis`` (PyTorch's dim 1 of (N, C, d1, …)
    is ``axis=1``; target then (N, d1, …), any integer dtype): ``−weight[t] · log_probs[t]`` per
    sample, ``ignore_index`` samples leaving the loss; the mean divides by the weights of the targets
    not ignored. Reads one element per sample."""
    return _rsnorm.nll_loss(log_probs, target, weight, axis, reduction, ignore_index)


@op
def wasserstein_1d(
    u_values: ArrayLike,
    v_values: ArrayLike,
    u_weights: ArrayLike | None = None,
    v_weights: ArrayLike | None = None,
) -> float:
    """The 1-D Wasserstein (earth mover's) distance between two weighted samples
    (``scipy.stats.wasserstein_distance``); weights ≥ 0 with a positive sum."""
    return _rsnorm.wasserstein_1d(u_values, v_values, u_weights, v_weights)
