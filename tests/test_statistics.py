"""moments and merge_moments: exact float64 statistics of rows, columns and chunks."""

from __future__ import annotations

import numpy as np
import pytest
from exact import exact_var_of_offset_float32
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


def test_merge_moments_of_any_layout_is_the_same_merge(rng):
    """Arrays as `moments` returns them (one shape, C order, int64 counts) take a path without NumPy
    calls; strided, float-count, list and broadcast inputs take NumPy's conversions. Same bits."""
    a = rn.moments((rng.standard_normal((64, 100)) + 1e4).astype(np.float32), 1)
    b = rn.moments(rng.standard_normal((64, 30)) * 3, 1)
    want = rn.merge_moments(a, b)
    assert [v.dtype for v in want] == [np.int64, np.float64, np.float64]
    np.testing.assert_array_equal(want[0], 130)
    for left, right in [
        (tuple(v.astype(np.float64) for v in a), b),  # float counts
        (tuple(np.repeat(v, 2)[::2] for v in a), b),  # strided
        (tuple(v.tolist() for v in a), tuple(v.tolist() for v in b)),  # lists
    ]:
        for got, expected in zip(rn.merge_moments(left, right), want, strict=True):
            np.testing.assert_array_equal(got, expected)
    # Broadcasting a 0-d triple equals merging it with each position.
    whole = rn.moments(np.ones(10), None)
    got = rn.merge_moments(whole, b)
    for i in (0, 63):
        single = rn.merge_moments(tuple(np.asarray(v) for v in whole), tuple(v[i : i + 1] for v in b))
        assert [g[i] for g in got] == [s[0] for s in single]
    with pytest.raises(ValueError, match="counts must be non-negative integers"):
        rn.merge_moments((-a[0], a[1], a[2]), b)


def test_merge_moments_equals_the_merge_of_partials_bit_for_bit(rng):
    """The vectorized merge (its common path written out, the rest through the scalar merge) gives
    the bits of the scalar merge `merge_partials` runs, over blocks and threads: empty sets, means
    from 1e-300 to 1e300, overflowing M2s and means, inf and NaN."""
    n = 100_003
    na, nb = rng.integers(0, 50, n), rng.integers(0, 50, n)
    ma = rng.standard_normal(n) * 10.0 ** rng.integers(-300, 300, n)
    mb = ma + rng.standard_normal(n)
    qa, qb = rng.random(n) * na, rng.random(n) * nb
    ma[5], qb[7] = np.inf, np.nan
    ma[9], mb[9], qa[11], qb[11] = 1e308, -1e308, 1e308, 1e308

    def record(count, mean, m2):
        r = np.zeros(n, rn.MOMENTS)
        r["count"], r["mean"], r["m2"] = count, mean, m2
        return r

    count, mean, m2 = rn.merge_moments((na, ma, qa), (nb, mb, qb))
    want = rn.merge_partials([record(na, ma, qa), record(nb, mb, qb)])
    np.testing.assert_array_equal(count, want["count"])
    assert mean.tobytes() == want["mean"].tobytes() and m2.tobytes() == want["m2"].tobytes()


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


def test_partials_merge_exactly_at_a_large_offset(rng):
    """float32 1e6 + randn in 100 chunks: the merged variance within 1e-12 of the exact one (the
    float64 means alone would lose ~5e-12 to their rounding, dask.array.var in float32 4e-3)."""
    x = (1e6 + rng.standard_normal(1_000_000)).astype(np.float32)
    exact = exact_var_of_offset_float32(x)
    chunks = np.array_split(x, 100)
    merged = rn.merge_partials([rn.partial_moments(c) for c in chunks])
    assert merged.dtype == rn.MOMENTS and merged.shape == ()
    assert abs(merged["m2"] / merged["count"] - exact) / exact < 1e-12
    assert int(merged["count"]) == x.size
    np.testing.assert_allclose(merged["mean"] + merged["mean_lo"], x.astype(np.float64).mean(), rtol=1e-15)
    # the same parts in any grouping (a tree of trees) give the same bits
    halves = [rn.merge_partials([rn.partial_moments(c) for c in chunks[i : i + 50]]) for i in (0, 50)]
    assert abs(rn.merge_partials(halves)["m2"] / x.size - exact) / exact < 1e-12


def test_merge_partials_along_an_axis_and_its_refusals(rng):
    x = rng.standard_normal((6, 4, 3))
    parts = np.stack([rn.partial_moments(x[i : i + 2], axis=0) for i in range(0, 6, 2)], axis=1)
    assert parts.shape == (4, 3, 3)
    merged = rn.merge_partials(parts, axis=1)
    count, mean, m2 = rn.moments(x, axis=0)
    np.testing.assert_array_equal(merged["count"], count)
    np.testing.assert_allclose(merged["mean"], mean, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(merged["m2"], m2, rtol=1e-13)
    with pytest.raises(TypeError, match="merge_partials: parts has dtype float64"):
        rn.merge_partials(x)
    with pytest.raises(ValueError, match="merge_partials: axis 3 is out of range"):
        rn.merge_partials(parts, axis=3)
    bad = parts.copy()
    bad["count"][0, 0, 0] = -1
    with pytest.raises(ValueError, match="counts must be non-negative integers"):
        rn.merge_partials(bad, axis=1)
    empty = rn.merge_partials(np.zeros((0, 2), rn.MOMENTS))
    assert empty.shape == (2,) and (empty["count"] == 0).all()


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("axis", [0, (0, 2), 2, None])
def test_apply_statistics_normalizes_with_given_statistics(rng, dtype, axis):
    x = (rng.standard_normal((5, 12, 7)) * 3 + 1e3).astype(dtype)
    count, mean, m2 = rn.moments(x, axis)
    scale = rng.uniform(0.5, 2, mean.shape) / np.sqrt(m2 / count + 1e-5)
    shift = rng.standard_normal(mean.shape)
    y = rn.apply_statistics(x, mean, scale, shift, axis)
    keep = np.expand_dims if axis is not None else (lambda v, _: v)
    ax = axis if axis is not None else ()
    want = (x.astype(np.float64) - keep(mean, ax)) * keep(scale, ax) + keep(shift, ax)
    assert y.dtype == dtype and y.shape == x.shape
    tol = {np.float16: 2e-3, np.float32: 4e-7, np.float64: 1e-15}[dtype]
    np.testing.assert_allclose(y, want, rtol=tol, atol=tol * np.abs(want).max())
    # strided input, out=, scalars broadcast to the kept shape
    out = np.empty_like(x[:, ::2])
    got = rn.apply_statistics(x[:, ::2], 0.0, 2.0, axis=axis, out=out)
    assert got is out
    np.testing.assert_array_equal(out, (x[:, ::2].astype(np.float64) * 2).astype(dtype))


def test_apply_statistics_reads_every_form_of_its_statistics_alike(rng):
    """Native C-contiguous float64 and float32 statistics of the kept shape are read in place and
    Python floats repeated; every other form goes through NumPy's broadcast and cast. All give
    the bits of the same values as float64 arrays of the kept shape."""
    x = (rng.standard_normal((6, 5, 4)) * 3 + 100).astype(np.float32)
    mean = rng.standard_normal((6, 4)) + 100
    scale = rng.uniform(0.5, 2.0, (6, 4))
    want = rn.apply_statistics(x, mean, scale, 0.25, axis=1)
    frozen = mean.copy()
    frozen.flags.writeable = False
    means = {
        "float32": mean.astype(np.float32),
        "fortran": np.asfortranarray(mean),
        "strided": np.repeat(mean, 2, axis=1)[:, ::2],
        "read-only": frozen,
        "byte-swapped": mean.astype(">f8"),
        "list": mean.tolist(),
    }
    for name, m in means.items():
        expected = (
            want
            if name != "float32"
            else rn.apply_statistics(x, mean.astype(np.float32).astype(np.float64), scale, 0.25, axis=1)
        )
        got = rn.apply_statistics(x, m, scale, 0.25, axis=1)
        assert got.tobytes() == expected.tobytes(), name
    for shift in (0.25, np.float64(0.25), np.array(0.25), np.full((6, 4), 0.25), np.full((1, 4), 0.25)):
        got = rn.apply_statistics(x, mean, scale, shift, axis=1)
        assert got.tobytes() == want.tobytes(), type(shift)
    got = rn.apply_statistics(x, 100.0, 2.0, axis=None)
    assert got.tobytes() == rn.apply_statistics(x, np.array(100.0), np.array(2.0), axis=None).tobytes()


def test_apply_statistics_confines_nan_and_refuses_clearly(rng):
    x = rng.standard_normal((4, 10))
    mean = np.array([0.0, np.nan, 0.0, 0.0])
    y = rn.apply_statistics(x, mean, 1.0, axis=1)
    assert np.isnan(y[1]).all() and np.isfinite(np.delete(y, 1, 0)).all()
    ro = x.copy()
    ro.flags.writeable = False
    np.testing.assert_array_equal(rn.apply_statistics(ro, 1.0, 1.0, axis=1), ro - 1)
    assert rn.apply_statistics(np.zeros((0, 3)), 0.0, 1.0, axis=0).shape == (0, 3)
    with pytest.raises(
        ValueError, match=r"apply_statistics: mean has shape \(3,\), which does not broadcast to \(4,"
    ):
        rn.apply_statistics(x, np.zeros(3), 1.0, axis=1)
    with pytest.raises(TypeError, match="apply_statistics: scale must hold real numbers"):
        rn.apply_statistics(x, 0.0, "a", axis=1)
    with pytest.raises(TypeError, match="apply_statistics: x has dtype int64"):
        rn.apply_statistics(np.zeros((2, 2), np.int64), 0.0, 1.0)
    with pytest.raises(ValueError, match="apply_statistics: axis 2 is out of range"):
        rn.apply_statistics(x, 0.0, 1.0, axis=2)
    with pytest.raises(ValueError, match="apply_statistics: out has shape"):
        rn.apply_statistics(x, 0.0, 1.0, axis=1, out=np.empty((4, 9)))
