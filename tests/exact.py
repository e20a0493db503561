"""Exact references for the statistics tests."""

from __future__ import annotations

from fractions import Fraction

import numpy as np


def exact_var_of_offset_float32(x: np.ndarray) -> float:
    """The exact biased variance of float32 values 1e6 + k/16 (every float32 there is one), from
    integer sums."""
    steps = np.round((x.astype(np.float64) - 1e6) * 16).astype(np.int64)
    assert np.array_equal(1e6 + steps / 16, x.astype(np.float64))
    n, s1 = steps.size, int(steps.sum())
    s2 = int((steps.astype(object) ** 2).sum())
    return float(Fraction(n * s2 - s1 * s1, 256 * n * n))
