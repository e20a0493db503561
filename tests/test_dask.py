"""rsnorm.dask, first step: the backend for dask arrays (chunk-local ops, lazily) and exact global
statistics (moments merged as a tree). The parity tests of the other files also run on dask arrays
(the ``rn`` fixture); these cover the chunkings. Threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest

import rsnorm

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
rd = pytest.importorskip("rsnorm.dask")


@pytest.fixture(autouse=True)
def threaded():
    with dask.config.set(scheduler="threads"):
        yield


def test_moments_are_exact_where_dask_var_is_not(rng):
    x = (rng.standard_normal((10_000, 3)) + 1e6).astype(np.float32)
    dx = da.from_array(x, chunks=(100, 2))  # 100 chunks down each column
    exact = x.astype(np.float64).var(axis=0)
    count, mean, m2 = dask.compute(*rd.moments(dx, 0, split_every=4))
    np.testing.assert_array_equal(count, 10_000)
    np.testing.assert_allclose(mean, x.astype(np.float64).mean(axis=0), rtol=1e-15)
    assert np.abs(m2 / count - exact).max() / exact.max() < 1e-10
    assert np.abs(dx.var(axis=0).compute() - exact).max() / exact.max() > 1e-4  # dask: float32 sums
    _, var = dask.compute(*rd.mean_var(dx, 0, ddof=1))
    np.testing.assert_allclose(var, x.astype(np.float64).var(axis=0, ddof=1), rtol=1e-10)


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
def test_moments_over_any_axes_and_chunks(rng, axis):
    x = rng.standard_normal((7, 5, 6))
    dx = da.from_array(x, chunks=(3, 2, 4))
    for got, want in zip(dask.compute(*rd.moments(dx, axis)), rsnorm.moments(x, axis)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match="out of range"):
        rd.moments(dx, 3)


def test_row_ops_run_chunk_by_chunk_and_stay_lazy(rng):
    x = rng.standard_normal((40, 16)).astype(np.float32)
    x[13, 4] = np.nan  # in the second chunk: its row only
    dx = da.from_array(x, chunks=(10, 16))
    w, b = rng.standard_normal(16).astype(np.float32), rng.standard_normal(16).astype(np.float32)
    for op, args in [
        ("layer_norm", (16, w, b)),
        ("rms_norm", (16, w)),
        ("l2_normalize", ()),
        ("softmax", ()),
        ("log_softmax", ()),
        ("selu", ()),
    ]:
        y = getattr(rsnorm, op)(dx, *args)
        assert isinstance(y, da.Array) and y.chunks == dx.chunks, op
        np.testing.assert_array_equal(y.compute(), getattr(rsnorm, op)(x, *args), err_msg=op)
    y = rsnorm.layer_norm(dx).compute()
    assert np.isnan(y[13]).all() and np.isfinite(np.delete(y, 13, axis=0)).all()


def test_channel_ops_and_batch_norm_across_channel_chunks(rng):
    x = rng.standard_normal((6, 8, 5, 5)).astype(np.float32)
    by_sample = da.from_array(x, chunks=(2, 8, 5, 5))
    np.testing.assert_array_equal(rsnorm.group_norm(by_sample, 4).compute(), rsnorm.group_norm(x, 4))
    np.testing.assert_array_equal(rsnorm.instance_norm(by_sample).compute(), rsnorm.instance_norm(x))
    rm, rv = rng.standard_normal(8).astype(np.float32), rng.random(8).astype(np.float32) + 0.5
    w, b = rng.standard_normal(8).astype(np.float32), rng.standard_normal(8).astype(np.float32)
    by_channel = da.from_array(x, chunks=(4, 3, 5, 2))
    np.testing.assert_array_equal(
        rsnorm.batch_norm(by_channel, rm, rv, w, b).compute(), rsnorm.batch_norm(x, rm, rv, w, b)
    )
    np.testing.assert_array_equal(
        rsnorm.batch_norm(by_channel, da.from_array(rm, chunks=3), rv, mean_only=True).compute(),
        rsnorm.batch_norm(x, rm, rv, mean_only=True),
    )
    np.testing.assert_array_equal(
        rsnorm.instance_norm(by_channel, rm, rv, use_input_stats=False).compute(),
        rsnorm.instance_norm(x, rm, rv, use_input_stats=False),
    )


def test_empty_and_one_element_chunks(rng):
    x = rng.standard_normal((5, 4))
    dx = da.concatenate([da.from_array(x[:0]), da.from_array(x, chunks=(1, 4))])
    np.testing.assert_array_equal(rsnorm.layer_norm(dx).compute(), rsnorm.layer_norm(x))
    for got, want in zip(dask.compute(*rd.moments(dx, 0)), rsnorm.moments(x, 0)):
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_split_normalized_axes_and_in_place_arguments_are_refused(rng):
    dx = da.from_array(rng.standard_normal((4, 6)), chunks=(2, 3))
    with pytest.raises(
        ValueError, match=r"layer_norm: x is split into 2 chunks along axis 1.*rechunk\(\{1: -1\}\)"
    ):
        rsnorm.layer_norm(dx)
    with pytest.raises(ValueError, match="softmax: x is split into 2 chunks along axis 0"):
        rsnorm.softmax(dx, axis=0)
    np.testing.assert_array_equal(rsnorm.softmax(dx.rechunk({1: -1})).compute(), rsnorm.softmax(dx.compute()))
    with pytest.raises(NotImplementedError, match="layer_norm: out is not supported on dask arrays"):
        rsnorm.layer_norm(dx.rechunk({1: -1}), out=np.empty((4, 6)))
    with pytest.raises(NotImplementedError, match="batch_norm: training"):
        rsnorm.batch_norm(dx, np.zeros(6), np.ones(6), training=True, axis=1)
    with pytest.raises(NotImplementedError, match="batch statistics"):
        rsnorm.batch_norm(dx, axis=1)
    with pytest.raises(TypeError, match="the dask backend has no layer_norm_backward"):
        rsnorm.layer_norm_backward(dx, dx, dx, dx)


def test_nothing_is_computed_until_asked(rng):
    computed = []

    def mark(block):
        computed.append(block.shape)
        return block

    dx = da.from_array(rng.standard_normal((8, 4)), chunks=(2, 4)).map_blocks(mark, dtype=np.float64)
    computed.clear()
    y = rsnorm.layer_norm(rsnorm.softmax(dx))
    stats = rd.moments(dx, 0)
    assert computed == [] and isinstance(y, da.Array) and isinstance(stats[1], da.Array)
    y.compute()
    assert len(computed) == 4
