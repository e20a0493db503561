"""rsnorm.dask, first step: the backend for dask arrays (chunk-local ops, lazily) and exact global
statistics (moments merged as a tree). The parity tests of the other files also run on dask arrays
(the ``rn`` fixture); these cover the chunkings. Threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest
from exact import exact_var_of_offset_float32

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


def test_global_variance_of_offset_float32_in_100_chunks_is_exact(rng):
    """The issue's bar: float32 1e6 + randn in 100 chunks, the variance within 1e-12 of the exact
    one (dask.array.var: 4.4e-3 with NumPy 2, 6.5e-5 with NumPy 1.22)."""
    x = (1e6 + rng.standard_normal(1_000_000)).astype(np.float32)
    exact = exact_var_of_offset_float32(x)
    dx = da.from_array(x, chunks=10_000)
    count, _, m2 = dask.compute(*rd.moments(dx))
    assert abs(m2 / count - exact) / exact < 1e-12
    # The peer misses by orders of magnitude more: the case tells the two apart.
    assert abs(float(dx.var().compute()) - exact) / exact > 1e-6


@pytest.mark.parametrize("axis", [None, 0, 1, (0, 2), -1])
def test_moments_over_any_axes_and_chunks(rng, axis):
    x = rng.standard_normal((7, 5, 6))
    dx = da.from_array(x, chunks=(3, 2, 4))
    for got, want in zip(dask.compute(*rd.moments(dx, axis)), rsnorm.moments(x, axis), strict=True):
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
    for got, want in zip(dask.compute(*rd.moments(dx, 0)), rsnorm.moments(x, 0), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("chunks", [(3, 5, 4), (2, 1, 3), (7, 5, 8)])
def test_rows_split_across_chunks_run_in_two_phases(rng, chunks):
    """Statistics of rows that span chunks are merged exactly, then applied in float64: within 2 ulp
    of the float64 result (rsnorm on the float64 array), rounded; statistics as rsnorm's. Rows
    within one chunk run rsnorm's float32 kernels, which softmax leaves up to 3 ulp off."""
    x = (rng.standard_normal((7, 5, 8)) * 3 + 100).astype(np.float32)
    x[2, 1, 5] = np.nan
    dx = da.from_array(x, chunks=chunks)
    w, b = rng.standard_normal((5, 8)).astype(np.float32), rng.standard_normal((5, 8)).astype(np.float32)

    x64 = x.astype(np.float64)

    def ulps(got, want):
        want = want.astype(np.float32)
        spacing = np.spacing(np.abs(want))
        both = np.isfinite(want)
        assert (np.isnan(got) == np.isnan(want)).all()
        return (np.abs(got[both] - want[both]) / spacing[both]).max()

    y, mean, rstd = rsnorm.layer_norm(dx, (5, 8), w, b, return_stats=True)
    want = rsnorm.layer_norm(x, (5, 8), w, b, return_stats=True)
    assert ulps(y.compute(), rsnorm.layer_norm(x64, (5, 8), w, b)) <= 2
    assert mean.shape == want[1].shape and mean.dtype == want[1].dtype
    np.testing.assert_allclose(mean.compute(), want[1], rtol=1e-6)
    np.testing.assert_allclose(rstd.compute(), want[2], rtol=1e-6)
    eps32 = float(np.finfo(np.float32).eps)
    assert ulps(rsnorm.rms_norm(dx, 8, w[0]).compute(), rsnorm.rms_norm(x64, 8, w[0], eps32)) <= 2
    assert ulps(rsnorm.l2_normalize(dx).compute(), rsnorm.l2_normalize(x64)) <= 2
    for axis in (0, 1, -1):
        split = len(dx.chunks[axis]) > 1
        assert ulps(rsnorm.softmax(dx, axis).compute(), rsnorm.softmax(x64, axis)) <= (2 if split else 3)
        # log_softmax near 0 is a difference of O(1) terms: an absolute tolerance.
        got = rsnorm.log_softmax(dx, axis).compute()
        np.testing.assert_allclose(got, rsnorm.log_softmax(x64, axis), rtol=1e-6, atol=2e-6)


def test_softmax_rows_of_minus_infinity_across_chunks():
    x = np.array([[-np.inf, -np.inf, 0.0, 1.0], [-np.inf] * 4], dtype=np.float64)
    got = rsnorm.softmax(da.from_array(x, chunks=(1, 2))).compute()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(rsnorm.softmax(x)))
    np.testing.assert_allclose(got[0], rsnorm.softmax(x)[0], rtol=1e-15)


@pytest.mark.parametrize("log", [False, True])
def test_softmax_backward_with_rows_across_chunks(rng, log):
    """Rows split over chunks (and grad_out chunked unlike y): each row's sum merged in float64, the
    same gradient as on one machine."""
    x = rng.standard_normal((6, 40)).astype(np.float32) * 3 + 1e4
    y = (rsnorm.log_softmax if log else rsnorm.softmax)(x)
    g = rng.standard_normal(x.shape).astype(np.float32)
    fn = rsnorm.log_softmax_backward if log else rsnorm.softmax_backward
    want = fn(g, y)
    got = fn(da.from_array(g, chunks=(3, 7)), da.from_array(y, chunks=(2, 13)))
    assert isinstance(got, da.Array)
    got = got.compute()
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * np.abs(want).max())
    whole_rows = fn(da.from_array(g, chunks=(2, 40)), da.from_array(y, chunks=(2, 40)), axis=-1).compute()
    np.testing.assert_array_equal(whole_rows, want)  # chunk by chunk: the kernel itself
    with pytest.raises(ValueError, match=r"softmax_backward: grad_out has shape \(6, 39\), y has \(6, 40\)"):
        fn(da.from_array(g[:, 1:]), da.from_array(y))
    with pytest.raises(rsnorm.InPlaceError, match="out would be written in place"):
        fn(da.from_array(g), da.from_array(y), out=np.empty_like(g))


def test_arguments_are_checked_at_the_call_and_in_place_ones_refused(rng):
    dx = da.from_array(rng.standard_normal((4, 6)), chunks=(2, 3))
    with pytest.raises(ValueError, match=r"layer_norm: eps must be"):
        rsnorm.layer_norm(dx, eps=-1.0)
    with pytest.raises(ValueError, match=r"layer_norm: weight has shape \(5,\)"):
        rsnorm.layer_norm(dx, 6, np.ones(5))
    with pytest.raises(ValueError, match="normalized_shape"):
        rsnorm.rms_norm(dx, (3,))
    with pytest.raises(ValueError, match="softmax: axis 2 is out of range"):
        rsnorm.softmax(dx, axis=2)
    with pytest.raises(rsnorm.InPlaceError, match=r"layer_norm: out would be written in place.*store"):
        rsnorm.layer_norm(dx, out=np.empty((4, 6)))
    with pytest.raises(TypeError, match="batch_norm: training"):
        rsnorm.batch_norm(dx, np.zeros(6), np.ones(6), training=True, axis=1)
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


def test_many_chunks_merge_as_a_tree(rng):
    x = rng.standard_normal((3, 200)) * 20
    dx = da.from_array(x, chunks=(2, 7))  # 29 chunks along each row: several tree levels
    np.testing.assert_allclose(rsnorm.softmax(dx).compute(), rsnorm.softmax(x), rtol=1e-13, atol=1e-300)
    np.testing.assert_allclose(rsnorm.layer_norm(dx).compute(), rsnorm.layer_norm(x), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("axis", [1, -1])
def test_training_batch_norm_uses_the_whole_arrays_statistics(rng, axis):
    x = (rng.standard_normal((12, 6, 5)) * 2 + 1e4).astype(np.float32)
    dx = da.from_array(x, chunks=(5, 4, 3))
    c = x.shape[axis]
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    y, mean, rstd = rsnorm.batch_norm(dx, None, None, w, b, training=True, axis=axis, return_stats=True)
    want = rsnorm.batch_norm(x, None, None, w, b, training=True, axis=axis, return_stats=True)
    np.testing.assert_allclose(y.compute(), want[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(mean.compute(), want[1], rtol=1e-7)
    np.testing.assert_allclose(rstd.compute(), want[2], rtol=1e-6)
    rm = np.zeros(c, np.float32)
    with pytest.raises(rsnorm.InPlaceError, match="fit_batch_norm"):
        rsnorm.batch_norm(dx, rm, np.ones(c, np.float32), training=True, axis=axis)
    np.testing.assert_array_equal(rm, 0)  # the argument checks never touch running statistics


def test_fit_batch_norm_gives_population_statistics_to_load(rng):
    x = (rng.standard_normal((20, 3, 4, 4)) + 1e5).astype(np.float32)
    dx = da.from_array(x, chunks=(3, 3, 4, 2))
    mean, var = rd.fit_batch_norm(dx)
    exact = x.astype(np.float64)
    np.testing.assert_allclose(mean, exact.mean(axis=(0, 2, 3)), rtol=1e-14)
    np.testing.assert_allclose(var, exact.var(axis=(0, 2, 3)), rtol=1e-10)
    layer = rsnorm.nn.BatchNorm(3)
    state = layer.state_dict()
    rm32, rv32 = mean.astype(np.float32), var.astype(np.float32)
    layer.load_state_dict({**state, "running_mean": rm32, "running_var": rv32})
    layer.eval()
    np.testing.assert_array_equal(layer(x), rsnorm.batch_norm(x, rm32, rv32, state["weight"], state["bias"]))
    seq = (rng.standard_normal((5, 8, 3)) + 10).astype(np.float32)  # (T, N, C)
    mean, var = rd.fit_batch_norm(da.from_array(seq, chunks=(2, 3, 3)), axis=2, step_axis=0)
    np.testing.assert_allclose(mean, seq.astype(np.float64).mean(axis=1), rtol=1e-14)
    np.testing.assert_allclose(var, seq.astype(np.float64).var(axis=1), rtol=1e-10)
    with pytest.raises(ValueError, match="same axis"):
        rd.fit_batch_norm(dx, axis=1, step_axis=-3)
    with pytest.raises(ValueError, match="out of range"):
        rd.fit_batch_norm(dx, axis=4)


@pytest.mark.parametrize("with_mean,with_std", [(True, True), (False, True), (True, False), (False, False)])
def test_standard_scaler_equals_scikit_learns(rng, with_mean, with_std):
    preprocessing = pytest.importorskip("sklearn.preprocessing")
    x = rng.standard_normal((300, 5)) * [1, 10, 0.1, 1, 3] + [0, 5, 1e4, 0, -2]
    x[:, 3] = 7.0  # a constant feature: scale 1
    ours = rd.StandardScaler(with_mean=with_mean, with_std=with_std).fit(x)
    theirs = preprocessing.StandardScaler(with_mean=with_mean, with_std=with_std).fit(x)
    for name in ("mean_", "var_", "scale_"):
        got, want = getattr(ours, name), getattr(theirs, name)
        assert (got is None) == (want is None), name
        if want is not None:
            np.testing.assert_allclose(got, want, rtol=1e-12, err_msg=name)
    assert ours.n_samples_seen_ == theirs.n_samples_seen_ == 300 and ours.n_features_in_ == 5
    np.testing.assert_allclose(ours.transform(x), theirs.transform(x), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(ours.inverse_transform(ours.transform(x)), x, rtol=1e-12, atol=1e-9)
    # float32 stays float32
    assert ours.transform(x.astype(np.float32)).dtype == np.float32


def test_standard_scaler_on_chunks_and_in_parts(rng):
    x = (rng.standard_normal((1000, 4)) + 1e5).astype(np.float32)
    whole = rd.StandardScaler().fit(x)
    chunked = rd.StandardScaler().fit(da.from_array(x, chunks=(97, 4)))
    parts = rd.StandardScaler()
    for part in np.array_split(x, 7):
        parts.partial_fit(part)
    exact = x.astype(np.float64)
    for scaler in (whole, chunked, parts):
        np.testing.assert_allclose(scaler.mean_, exact.mean(0), rtol=1e-14)
        np.testing.assert_allclose(scaler.var_, exact.var(0), rtol=1e-9)
        assert scaler.n_samples_seen_ == 1000
    y = chunked.transform(da.from_array(x, chunks=(97, 4)))
    assert isinstance(y, da.Array)
    np.testing.assert_allclose(y.compute(), whole.transform(x), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="not fitted"):
        rd.StandardScaler().transform(x)
    with pytest.raises(ValueError, match="3 features, the scaler was fit on 4"):
        whole.transform(x[:, :3])
    with pytest.raises(ValueError, match="2-D"):
        rd.StandardScaler().fit(x[0])
    with pytest.raises(TypeError, match="dtype"):
        rd.StandardScaler().fit(np.array([["a"]]))


@pytest.mark.parametrize("chunks", [(2, 3, 2, 5), (1, 6, 5, 5), (3, 2, 5, 1)])
def test_group_and_instance_norm_across_chunks_are_two_phase(rng, chunks):
    """Samples split over chunks (channels, spatial dims): exact moments per (sample, group), then
    the CPU's affine pass per block — equal to the CPU's within an ulp, statistics included."""
    x = (rng.standard_normal((3, 6, 5, 5)) * 2 + 1e4).astype(np.float32)
    x[1, 4, 2, 2] = np.nan  # stays in sample 1's group (and instance)
    dx = da.from_array(x, chunks=chunks)
    w, b = rng.standard_normal(6).astype(np.float32), rng.standard_normal(6).astype(np.float32)
    ulp = np.spacing(np.float32(8))
    for got, want in (
        (rsnorm.group_norm(dx, 3, w, b, return_stats=True), rsnorm.group_norm(x, 3, w, b, return_stats=True)),
        (
            rsnorm.instance_norm(dx, None, None, w, b, return_stats=True),
            rsnorm.instance_norm(x, None, None, w, b, return_stats=True),
        ),
    ):
        y, mean, rstd = dask.compute(*got)
        np.testing.assert_array_equal(np.isnan(y), np.isnan(want[0]))
        np.testing.assert_allclose(y, want[0], rtol=0, atol=2 * ulp)
        np.testing.assert_allclose(mean, want[1], rtol=1e-7)
        np.testing.assert_allclose(rstd, want[2], rtol=1e-6)
    assert np.isnan(rsnorm.group_norm(dx, 3).compute()[1, 4:]).all()
    assert not np.isnan(rsnorm.group_norm(dx, 3).compute()[[0, 2]]).any()


def test_evaluation_statistics_are_the_running_ones(rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float32)
    dx = da.from_array(x, chunks=(2, 2, 5))
    rm, rv = rng.standard_normal(3).astype(np.float32), rng.uniform(1, 2, 3).astype(np.float32)
    for got, want in (
        (rsnorm.batch_norm(dx, rm, rv, return_stats=True), rsnorm.batch_norm(x, rm, rv, return_stats=True)),
        (
            rsnorm.instance_norm(dx, rm, rv, use_input_stats=False, return_stats=True),
            rsnorm.instance_norm(x, rm, rv, use_input_stats=False, return_stats=True),
        ),
    ):
        for g, w in zip(dask.compute(*got), want, strict=True):
            np.testing.assert_array_equal(g, w)


def test_fused_add_norms_lrn_and_measures_across_chunks(rng):
    """The remaining row ops where the normalized axis spans chunks: the fused add norms (two-phase
    norm of x + residual), LRN (a halo of channels), the information measures (row sums, then
    float64 terms) — equal to the CPU's on the whole array."""
    x = (rng.standard_normal((6, 40)) * 2 + 50).astype(np.float32)
    r = rng.standard_normal((6, 40)).astype(np.float32)
    dx, dr = da.from_array(x, chunks=(3, 15)), da.from_array(r, chunks=(3, 15))
    for op in ("add_layer_norm", "add_rms_norm"):
        y, s, *stats = dask.compute(*getattr(rsnorm, op)(dx, dr, return_stats=True))
        want = getattr(rsnorm, op)(x, r, return_stats=True)
        np.testing.assert_array_equal(s, want[1], err_msg=op)
        np.testing.assert_allclose(y, want[0], rtol=2e-6, atol=2e-6, err_msg=op)
        for got, w in zip(stats, want[2:], strict=True):
            np.testing.assert_allclose(got, w, rtol=1e-6, err_msg=op)
    images = rng.standard_normal((2, 11, 4, 3)).astype(np.float32)
    for chunks in ((1, 4, 4, 3), (2, 3, 2, 3)):
        got = rsnorm.local_response_norm(da.from_array(images, chunks=chunks), 5).compute()
        np.testing.assert_array_equal(got, rsnorm.local_response_norm(images, 5))
    with pytest.raises(ValueError, match="local_response_norm: channel chunks of 1 are narrower"):
        rsnorm.local_response_norm(da.from_array(images, chunks=(2, 1, 4, 3)), 5)
    p, q = rng.uniform(0, 1, (5, 30)), rng.uniform(0, 1, (5, 30))
    p[0, :4] = 0.0  # 0·log 0 = 0
    dp, dq = da.from_array(p, chunks=(2, 7)), da.from_array(q, chunks=(2, 7))
    for op, args, dargs in (
        ("entropy", (p,), (dp,)),
        ("entropy", (p, 2.0), (dp, 2.0)),
        ("kl_div", (p, q), (dp, dq)),
        ("cross_entropy", (p, q), (dp, dq)),
        ("js_divergence", (p, q), (dp, dq)),
        ("js_distance", (p, q, 2.0), (dp, dq, 2.0)),
    ):
        got = getattr(rsnorm, op)(*dargs)
        assert isinstance(got, da.Array)
        np.testing.assert_allclose(got.compute(), getattr(rsnorm, op)(*args), rtol=1e-12, err_msg=op)
    np.testing.assert_allclose(rsnorm.entropy(dp.T, axis=0).compute(), rsnorm.entropy(p), rtol=1e-12)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_with_logits_by_blocks(rng, reduction):
    logits = rng.standard_normal((10, 7, 3)).astype(np.float32)  # (N, C, d): classes on axis 1
    target = rng.integers(0, 7, (10, 3))
    target[2, 1] = -100  # ignored
    dl, dt = da.from_array(logits, chunks=(4, 7, 2)), da.from_array(target, chunks=(4, 2))
    kw = {"axis": 1, "reduction": reduction, "label_smoothing": 0.1}
    got = rsnorm.cross_entropy_with_logits(dl, dt, **kw).compute()
    np.testing.assert_allclose(got, rsnorm.cross_entropy_with_logits(logits, target, **kw), rtol=2e-6)
    probs = rsnorm.softmax(rng.standard_normal((10, 7)).astype(np.float32))
    got = rsnorm.cross_entropy_with_logits(
        dl[:, :, 0], da.from_array(probs, chunks=(4, 7)), reduction=reduction, axis=1
    )
    want = rsnorm.cross_entropy_with_logits(logits[:, :, 0], probs, reduction=reduction, axis=1)
    np.testing.assert_allclose(got.compute(), want, rtol=2e-6)
    with pytest.raises(ValueError, match=r"split into 2 chunks along the class axis 1.*rechunk"):
        rsnorm.cross_entropy_with_logits(da.from_array(logits, chunks=(4, 4, 3)), dt, axis=1)
