"""moments and merge_moments: exact float64 statistics of rows, columns and chunks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rsnorm as rn


@given(st.integers(1, 6), st.integers(1, 40), st.integers(1, 5), st.integers(0, 2**31))
@settings(max_examples=40, deadline=None)
def test_merged_chunk_moments_equal_whole(rows, cols, chunks, seed):
    x = np.random.default_rng(seed).standard_normal((rows, cols)).astype(np.float32) * 5 + 1e3
    whole = rn.moments(x, axis=1)
    parts = np.array_split(x, chunks, axis=1)
    merged = rn.moments(parts[0], axis=1)
    for part in parts[1:]:
        if part.shape[1]:
            merged = rn.merge_moments(merged, rn.moments(part, axis=1))
    np.testing.assert_array_equal(merged[0], whole[0])
    np.testing.assert_allclose(merged[1], whole[1], rtol=1e-12)
    np.testing.assert_allclose(merged[2], whole[2], rtol=1e-12, atol=1e-12)


def test_moments_exact_in_float64_for_float32_data(rn, rng):
    x = (rng.standard_normal((3, 4, 5)) + 1e4).astype(np.float32)
    xd = x.astype(np.float64)
    count, mean, m2 = rn.moments(x, axis=(0, 2))
    assert count.dtype == np.int64 and (count == 15).all() and mean.dtype == np.float64
    np.testing.assert_allclose(mean, xd.mean(axis=(0, 2)), rtol=1e-13)
    np.testing.assert_allclose(
        m2, ((xd - xd.mean(axis=(0, 2), keepdims=True)) ** 2).sum(axis=(0, 2)), rtol=1e-12
    )
    c, m, q = rn.moments(x)
    np.testing.assert_allclose(q, ((xd - xd.mean()) ** 2).sum(), rtol=1e-12)
    assert c.shape == () and int(c) == 60
    np.testing.assert_allclose(m, xd.mean(), rtol=1e-13)
    with pytest.raises(ValueError, match="repeats a dim"):
        rn.moments(x, axis=(0, -3))
    with pytest.raises(ValueError, match="zero elements"):
        rn.moments(np.zeros((2, 0)), axis=1)
    with pytest.raises(ValueError, match="counts must be non-negative integers"):
        rn.merge_moments((-1, 0.0, 0.0), (1, 0.0, 0.0))


@pytest.mark.parametrize(("shape", "axis"), [((3000, 20), 0), ((6, 50, 9), (0, 1)), ((40, 7), 0)])
def test_column_moments_of_tables(rn, rng, shape, axis):
    """Leading axes of a C-contiguous array (feature statistics of a table) run down the columns;
    a transposed copy of the same data takes the row path; both exact in float64."""
    x = (rng.standard_normal(shape) * 3 + 1e4).astype(np.float32)
    xd = x.astype(np.float64)
    count, mean, m2 = rn.moments(x, axis=axis)
    assert (count == np.prod([shape[a] for a in np.atleast_1d(axis)])).all()
    np.testing.assert_allclose(mean, xd.mean(axis=axis), rtol=1e-13)
    want_m2 = ((xd - xd.mean(axis=axis, keepdims=True)) ** 2).sum(axis=axis)
    np.testing.assert_allclose(m2, want_m2, rtol=1e-12)
    _, mean_f, m2_f = rn.moments(np.asfortranarray(x), axis=axis)
    np.testing.assert_allclose(mean_f, mean, rtol=1e-14)
    np.testing.assert_allclose(m2_f, m2, rtol=1e-12)
