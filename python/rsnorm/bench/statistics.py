"""Statistics: row moments and their merge, and the AIC / BIC model-selection criteria."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import numpy as np

import rsnorm as rn

from .workload import Workload, family, torch_or_none


def _numpy_moments(x):
    mean = x.mean(-1, dtype=np.float64)
    return x.shape[-1], mean, ((x - mean[:, None]) ** 2).sum(-1, dtype=np.float64)


def _numpy_merge_moments(a, b):
    (na, ma, m2a), (nb, mb, m2b) = a, b
    n = na + nb
    delta = mb - ma
    return n, ma + delta * (nb / n), m2a + m2b + delta * delta * (na * nb / n)


def _moments(shape, dtype=np.float32) -> list[Workload]:
    """Moments of each row (count, mean, M2 in float64) and the merge of two such sets."""
    rng = np.random.default_rng(5)
    torch = torch_or_none()
    x = rng.standard_normal(shape, dtype=np.float64).astype(dtype)
    stats = rn.moments(x, -1)
    moments: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.moments, x, -1),
        "numpy": partial(_numpy_moments, x),
    }
    merge: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.merge_moments, stats, stats),
        "numpy": partial(_numpy_merge_moments, stats, stats),
    }
    if torch is not None:
        moments["torch"] = partial(torch.var_mean, torch.from_numpy(x), -1)
    rows, dt = shape[0], np.dtype(dtype).name
    # Read x (or two sets of moments), write the three per-row statistics.
    return [
        Workload("moments", tuple(shape), dt, x.nbytes + 3 * 8 * rows, moments, roofline="read"),
        Workload("merge_moments", tuple(shape), dt, 9 * 8 * rows, merge),
    ]


def _apply_statistics(shape, dtype=np.float32) -> list[Workload]:
    """Normalization with statistics from elsewhere (a fitted scaler's per-feature mean and
    scale, float64) over the rows of x, into a preallocated output. NumPy's fastest form takes
    the statistics in x's dtype and works in place."""
    rng = np.random.default_rng(9)
    x = (rng.standard_normal(shape) * 3 + 10).astype(dtype)
    mean, scale = x.mean(0, dtype=np.float64), 1 / x.std(0, dtype=np.float64)
    out = np.empty_like(x)
    mean_x, scale_x = mean.astype(dtype), scale.astype(dtype)

    def numpy_form():
        np.subtract(x, mean_x, out=out)
        return np.multiply(out, scale_x, out=out)

    impls: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.apply_statistics, x, mean, scale, None, 0, out=out),
        "numpy": numpy_form,
    }
    return [Workload("apply_statistics", tuple(shape), np.dtype(dtype).name, 2 * x.nbytes, impls)]


# Models in the small AIC / BIC rows: a call whose cost is its Python layer.
SELECTION_FEW = 8


def _selection(size: int) -> list[Workload]:
    """AIC and BIC of a vector of fitted models."""
    rng = np.random.default_rng(7)
    log_likelihood = -rng.random(size) * 1e3
    k = rng.integers(1, 20, size)
    samples = rng.integers(100, 10_000, size)
    aic: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.aic, log_likelihood, k),
        "numpy": lambda: 2 * k - 2 * log_likelihood,
    }
    bic: dict[str, Callable[[], object]] = {
        "rsnorm": partial(rn.bic, log_likelihood, k, samples),
        "numpy": lambda: k * np.log(samples) - 2 * log_likelihood,
    }
    # Read the log-likelihoods, parameter counts (and sample sizes); write the criterion.
    return [
        Workload("aic", (size,), "float64", 3 * 8 * size, aic),
        Workload("bic", (size,), "float64", 4 * 8 * size, bic),
    ]


@family("statistics")
def statistics_workloads(suite, threads: int) -> list[Workload]:
    loads = [load for shape in suite.row_op_shapes for load in _moments(shape)]
    loads += [load for shape in suite.row_op_shapes for load in _apply_statistics(shape)]
    # A handful of candidate models (polynomial degrees, say), and a million.
    return loads + _selection(SELECTION_FEW) + _selection(suite.w1_samples)
