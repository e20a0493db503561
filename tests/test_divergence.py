"""softmax, cross-entropy with logits, information measures, Wasserstein-1, AIC/BIC."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.spatial.distance
import scipy.special
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rsnorm as rn
from conftest import golden_cases
from rsnorm import _rsnorm


def _tol(case):
    return {"rtol": case["tol"]["rtol"], "atol": case["tol"]["atol"]}


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("softmax", "log_softmax"))
def test_softmax_matches_recorded_pytorch(rn, case, i, e):
    y = getattr(rn, case["op"])(i["x"], axis=case["kwargs"]["axis"])
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, e["y"], **_tol(case))


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("cross_entropy_with_logits"))
def test_cross_entropy_with_logits_matches_recorded_pytorch(rn, case, i, e):
    kw = {k: v for k, v in case["kwargs"].items() if k in ("reduction", "label_smoothing")}
    loss = np.asarray(rn.cross_entropy_with_logits(i["logits"], i["target"], **kw))
    assert loss.dtype == np.float32
    np.testing.assert_allclose(loss.reshape(e["loss"].shape), e["loss"], **_tol(case))


@pytest.mark.parametrize(
    ("case", "i", "e"), golden_cases("entropy", "kl_div", "cross_entropy", "js_distance", "js_divergence")
)
def test_information_measures_match_recorded_scipy(rn, case, i, e):
    kw = {k: v for k, v in case["kwargs"].items() if k in ("axis", "base")}
    args = [i[k] for k in ("p", "q") if k in i]
    got = getattr(rn, case["op"])(*args, **kw)
    np.testing.assert_allclose(got, next(iter(e.values())), **_tol(case))


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("wasserstein_1d", "aic", "bic"))
def test_wasserstein_aic_bic_match_recorded_values(rn, case, i, e):
    if case["op"] == "wasserstein_1d":
        got = rn.wasserstein_1d(i["u_values"], i["v_values"], i.get("u_weights"), i.get("v_weights"))
    elif case["op"] == "aic":
        got = rn.aic(i["log_likelihood"], i["k"])
    else:
        got = rn.bic(i["log_likelihood"], i["k"], i["n"])
    np.testing.assert_allclose(np.asarray(got).reshape(-1), next(iter(e.values())).reshape(-1), **_tol(case))


def test_cross_entropy_with_logits_many_classes_float32(rn, rng):
    """50k classes (the exponentials summed in blocks) and 1e4-offset logits, against float64."""
    logits = (rng.standard_normal((8, 50_000)) * 4 + 1e4).astype(np.float32)
    target = rng.integers(0, 50_000, 8)
    logp = scipy.special.log_softmax(logits.astype(np.float64), axis=-1)
    got = rn.cross_entropy_with_logits(logits, target, reduction="none")
    np.testing.assert_allclose(got, -logp[np.arange(8), target], rtol=1e-5)
    probs = scipy.special.softmax(rng.standard_normal((8, 50_000)), axis=-1).astype(np.float32)
    np.testing.assert_allclose(
        rn.cross_entropy_with_logits(logits, probs, reduction="none"),
        -(probs.astype(np.float64) * logp).sum(-1),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="class axis has zero elements"):
        rn.cross_entropy_with_logits(np.zeros((3, 0), np.float32), np.zeros((3, 0), np.float32))


@pytest.mark.parametrize(("shape", "axis"), [((4, 21, 16, 16), 1), ((300, 100), 0), ((2, 5, 9, 2), 1)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_over_a_non_last_axis(rn, rng, shape, axis, dtype):
    """Channel softmax of NCHW and axis 0 of a table run down contiguous columns."""
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for fn, ref in ((rn.softmax, scipy.special.softmax), (rn.log_softmax, scipy.special.log_softmax)):
        want = ref(x.astype(np.float64), axis=axis)
        got = fn(x, axis=axis)
        # log-probabilities near 0 carry the absolute error of x − max − log Σ.
        atol = tol if fn is rn.log_softmax else tol * 1e-3
        np.testing.assert_allclose(got, want, rtol=tol, atol=atol)
        buf = x.copy()
        assert fn(buf, axis=axis, out=buf) is buf
        np.testing.assert_array_equal(buf, got)
        # An out= of another layout takes the row path: same values to rounding.
        other = np.asfortranarray(np.empty_like(x))
        np.testing.assert_allclose(fn(x, axis=axis, out=other), want, rtol=tol, atol=atol)
    before = rn.get_num_threads()
    try:
        rn.set_num_threads(1)
        one = rn.softmax(x, axis=axis)
    finally:
        rn.set_num_threads(before)
    np.testing.assert_array_equal(one, rn.softmax(x, axis=axis))
    # NaN spreads over its own column only; a column of equal 1e4 logits is uniform.
    moved = np.moveaxis(x, axis, 0).copy()
    n = moved.shape[0]
    flat = moved.reshape(n, -1)
    flat[0, 0], flat[:, 1] = np.nan, 1e4
    y = rn.softmax(np.ascontiguousarray(np.moveaxis(moved, 0, axis)), axis=axis)
    y_cols = np.moveaxis(y, axis, 0).reshape(n, -1)
    assert np.isnan(y_cols[:, 0]).all() and np.isfinite(y_cols[:, 1:]).all()
    np.testing.assert_allclose(y_cols[:, 1], 1 / n, rtol=tol)


def test_softmax_axes_layouts_and_extremes(rng):
    x = rng.standard_normal((4, 5, 6))
    for axis in (0, 1, -1):
        want = scipy.special.softmax(x, axis=axis)
        np.testing.assert_allclose(rn.softmax(x, axis=axis), want, rtol=1e-13)
        np.testing.assert_allclose(
            rn.log_softmax(x.T, axis=axis), scipy.special.log_softmax(x.T, axis=axis), rtol=1e-13
        )
    big = np.array([[1e4, 1e4 - 1.0, -1e4]], np.float32)
    y = rn.softmax(big)
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, scipy.special.softmax(big.astype(np.float64), axis=-1), rtol=1e-6)
    np.testing.assert_allclose(
        rn.log_softmax(big), scipy.special.log_softmax(big.astype(np.float64), axis=-1), rtol=1e-6
    )
    z = np.array([[0.0, -np.inf, 1.0], [np.nan, 0.0, 0.0], [np.inf, 0.0, 0.0]])
    y = rn.softmax(z)
    np.testing.assert_allclose(y[0], scipy.special.softmax([0.0, -np.inf, 1.0]))
    assert np.isnan(y[1]).all() and np.isnan(y[2, 0])  # NaN row; inf − inf is NaN, as in PyTorch
    buf = x.copy()
    assert rn.softmax(buf, out=buf) is buf
    np.testing.assert_allclose(buf.sum(-1), 1.0, rtol=1e-14)
    np.testing.assert_allclose(rn.softmax(np.array([3.0])), [1.0])


def test_cross_entropy_with_logits_against_definition(rn, rng):
    logits = rng.standard_normal((6, 4)) * 3
    target = np.array([0, 3, 1, -100, 2, 2])
    logp = scipy.special.log_softmax(logits, axis=-1)
    nll = -logp[np.arange(6), np.where(target < 0, 0, target)]
    keep = target != -100
    per_row = rn.cross_entropy_with_logits(logits, target, reduction="none")
    np.testing.assert_allclose(per_row, np.where(keep, nll, 0.0), rtol=1e-13)
    np.testing.assert_allclose(rn.cross_entropy_with_logits(logits, target), nll[keep].mean(), rtol=1e-13)
    np.testing.assert_allclose(
        rn.cross_entropy_with_logits(logits, target, reduction="sum"), nll[keep].sum(), rtol=1e-13
    )
    # Label smoothing ε: (1 − ε)·nll + ε·mean over classes of −log p.
    smooth = rn.cross_entropy_with_logits(logits, target, reduction="none", label_smoothing=0.2)
    want = 0.8 * nll + 0.2 * (-logp).mean(-1)
    np.testing.assert_allclose(smooth[keep], want[keep], rtol=1e-13)
    # Probability targets, and one-hot probabilities equal index targets.
    probs = scipy.special.softmax(rng.standard_normal((6, 4)), axis=-1)
    np.testing.assert_allclose(
        rn.cross_entropy_with_logits(logits, probs, reduction="none"), -(probs * logp).sum(-1), rtol=1e-13
    )
    onehot = np.eye(4)[np.array([0, 3, 1, 1, 2, 2])]
    np.testing.assert_allclose(
        rn.cross_entropy_with_logits(logits, onehot),
        rn.cross_entropy_with_logits(logits, np.array([0, 3, 1, 1, 2, 2])),
    )


@given(
    hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=st.floats(0, 10)),
    hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 12)), elements=st.floats(0, 10)),
)
@settings(max_examples=60, deadline=None)
@pytest.mark.filterwarnings("ignore:invalid value encountered in sqrt:RuntimeWarning")  # SciPy's, see below
def test_information_properties_and_scipy_parity(p, q):
    rows, cols = min(p.shape[0], q.shape[0]), min(p.shape[1], q.shape[1])
    p, q = p[:rows, :cols] + 1e-3, q[:rows, :cols] + 1e-3  # strictly positive rows
    kl = rn.kl_div(p, q)
    assert (kl >= -1e-12).all()
    np.testing.assert_allclose(kl, scipy.stats.entropy(p, q, axis=-1), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        rn.entropy(p, base=2), scipy.stats.entropy(p, base=2, axis=-1), rtol=1e-10, atol=1e-12
    )
    js = rn.js_divergence(p, q)
    assert (js <= np.log(2) + 1e-12).all() and (js >= -1e-12).all()
    np.testing.assert_allclose(js, rn.js_divergence(q, p), rtol=1e-12, atol=1e-15)
    # Compare squared distances: near zero the square root turns 1e-16 rounding into 1e-8, and SciPy
    # even returns NaN there (the square root of a -1e-17 residue) where rsnorm clamps at 0.
    scipy_js = np.nan_to_num(scipy.spatial.distance.jensenshannon(p, q, axis=-1), nan=0.0)
    np.testing.assert_allclose(rn.js_distance(p, q) ** 2, scipy_js**2, rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(rn.cross_entropy(p, q), rn.entropy(p) + kl, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("row_len", [1, 2, 7, 10, 31, 32])
def test_information_short_rows_in_tiles_match_rows_one_at_a_time(rng, dtype, row_len):
    """Rows under 32 entries of C-contiguous arrays go through in tiles of 8 rows, across the rows;
    every row gets the bits it gets alone (here: through a strided view, one row at a time), and
    rows with zeros, NaN, inf, subnormal or all-zero entries keep their cases."""
    n = 8 * 5 + 3
    p = (rng.random((n, row_len)) + 1e-3).astype(dtype)
    q = (rng.random((n, row_len)) + 1e-3).astype(dtype)
    p[9, 0], p[10, -1], q[11, 0], p[17, 0] = 0.0, np.nan, 0.0, np.inf
    p[12], q[24] = 0.0, 1e-310 if dtype == np.float64 else 1e-40

    def strided(x):
        wide = np.zeros((n, 2 * row_len), dtype)
        wide[:, ::2] = x
        return wide[:, ::2]

    with np.errstate(all="ignore"):
        for name in ("entropy", "kl_div", "cross_entropy", "js_divergence", "js_distance"):
            f = getattr(rn, name)
            args = (p,) if name == "entropy" else (p, q)
            tiled = f(*args)
            np.testing.assert_array_equal(tiled, f(*map(strided, args)), err_msg=name)
            assert tiled.dtype == dtype
    clean = np.ones(n, bool)
    clean[[9, 10, 11, 12, 17, 24]] = False
    np.testing.assert_allclose(
        rn.entropy(p)[clean],
        scipy.stats.entropy(p[clean].astype(np.float64), axis=-1),
        rtol=2e-6,
        atol=1e-15,  # one entry: x · (1 / x) may be 1 − 2⁻⁵³
    )
    np.testing.assert_allclose(
        rn.kl_div(p, q)[clean],
        scipy.stats.entropy(p[clean].astype(np.float64), q[clean].astype(np.float64), axis=-1),
        rtol=2e-6,
        atol=1e-7,
    )


def test_information_edge_cases():
    np.testing.assert_allclose(rn.entropy([[1.0, 0.0, 0.0]]), [0.0])  # all mass on one class
    np.testing.assert_allclose(rn.entropy(np.array([5.0])), 0.0)  # one-element row
    assert np.isinf(rn.kl_div([1.0, 1.0], [1.0, 0.0]))
    np.testing.assert_allclose(rn.kl_div([0.0, 1.0], [0.5, 0.5]), np.log(2))  # 0·log 0 = 0
    assert np.isnan(rn.entropy([np.nan, 1.0]))
    # Cross-entropy's cases: 0·log 0 = 0, mass where q = 0 is inf, NaN propagates.
    np.testing.assert_allclose(rn.cross_entropy([0.5, 0.5, 0.0], [0.25, 0.25, 0.5]), np.log(4))
    assert np.isinf(rn.cross_entropy([0.2, 0.8], [1.0, 0.0]))
    assert np.isnan(rn.cross_entropy([np.nan, 1.0], [0.5, 0.5]))
    np.testing.assert_allclose(rn.entropy(np.ones((2, 4)), axis=0), np.log(2) * np.ones(4))
    assert rn.entropy(np.ones((2, 4), np.float32)).dtype == np.float32


@given(
    st.lists(st.floats(-100, 100), min_size=1, max_size=40),
    st.lists(st.floats(-100, 100), min_size=1, max_size=40),
)
@settings(max_examples=60, deadline=None)
def test_wasserstein_properties_and_scipy_parity(u, v):
    d = rn.wasserstein_1d(u, v)
    assert d == pytest.approx(rn.wasserstein_1d(v, u), rel=1e-12, abs=1e-12)
    assert rn.wasserstein_1d(u, u) == 0.0
    assert d == pytest.approx(scipy.stats.wasserstein_distance(u, v), rel=1e-9, abs=1e-9)


def test_wasserstein_weighted_and_large(rn, rng):
    u, v = rng.standard_normal(3000), rng.standard_normal(2000) + 0.5
    uw, vw = rng.random(3000), rng.random(2000)
    assert rn.wasserstein_1d(u, v, uw, vw) == pytest.approx(
        scipy.stats.wasserstein_distance(u, v, uw, vw), rel=1e-10
    )
    big_u, big_v = rng.standard_normal(200_000), rng.standard_normal(150_000) * 2
    assert rn.wasserstein_1d(big_u, big_v) == pytest.approx(
        scipy.stats.wasserstein_distance(big_u, big_v), rel=1e-8
    )


def test_wasserstein_samples_of_megabytes(rn, rng):
    """From 2**19 values a sample's sort runs on both threads, in scratch buffers mapped from 4 MB
    (huge pages where the kernel has them): weighted and not, SciPy's values, the same bits again."""
    u = rng.standard_normal(600_000)
    v = rng.standard_normal(530_000) * 1.5 + 0.3
    uw, vw = rng.random(u.size), rng.random(v.size)
    for args in ((u, v), (u, v, uw, vw)):
        got = rn.wasserstein_1d(*args)
        assert got == pytest.approx(scipy.stats.wasserstein_distance(*args), rel=1e-9)
        assert rn.wasserstein_1d(*args) == got


def test_wasserstein_long_samples_sorted_by_radix_and_swept_in_parts(rn, rng):
    """Samples long enough for the radix sort and the sweep in parts: ties across the splits (small
    integers), weights, ±0 and signs, an infinity; SciPy's values, the same bits on every call."""
    u = rng.integers(-20, 20, 120_000).astype(np.float64)
    v = rng.integers(-10, 30, 90_000).astype(np.float64) * 0.5
    u[:7] = -0.0
    uw, vw = rng.random(u.size), rng.random(v.size)
    for args in ((u, v), (u, v, uw, vw), (u, v, None, vw), (v, u, vw, None)):
        got = rn.wasserstein_1d(*args)
        assert got == pytest.approx(scipy.stats.wasserstein_distance(*args), rel=1e-9)
        assert rn.wasserstein_1d(*args) == got
    spread = rng.standard_normal(100_000) * 10.0 ** rng.integers(-300, 300, 100_000)
    other = rng.standard_normal(70_000)
    assert rn.wasserstein_1d(spread, other) == pytest.approx(
        scipy.stats.wasserstein_distance(spread, other), rel=1e-9
    )
    with_inf = np.append(other, np.inf)
    assert rn.wasserstein_1d(u, with_inf) == scipy.stats.wasserstein_distance(u, with_inf) == np.inf
    twice = np.append(with_inf, np.inf)
    assert np.isnan(rn.wasserstein_1d(u, twice))
    with np.errstate(invalid="ignore"):  # SciPy's inf − inf
        assert np.isnan(scipy.stats.wasserstein_distance(u, twice))


def test_aic_bic_choose_the_polynomial_degree(rng):
    x = np.linspace(-1, 1, 200)
    y = 1 - 2 * x + 3 * x**3 + rng.normal(0, 0.1, 200)
    ll = []
    for degree in range(8):
        resid = y - np.polyval(np.polyfit(x, y, degree), x)
        ll.append(-0.5 * len(x) * (np.log(2 * np.pi * resid.var()) + 1))
    k = np.arange(8) + 2
    assert int(np.argmin(rn.bic(ll, k, len(x)))) == 3
    assert rn.aic(-10.0, 3) == 26.0
    assert rn.bic(-10.0, 2, np.e) == pytest.approx(22.0)


def test_aic_bic_broadcast_convert_and_match_the_formulas(rng):
    """The fused criteria against NumPy's float64 formulas: AIC bit for bit, BIC within 2 ulp (its
    ln and NumPy's may differ by one); operands broadcast (one value, a column against a row),
    integer counts of any width read exactly, uint64 as float64, a scalar for scalar operands."""
    models = 100_003  # blocks and threads, and a tail
    ll = -rng.random(models) * 1e3
    k = rng.integers(0, 50, models)
    n = rng.integers(1, 10**6, models)
    np.testing.assert_array_equal(rn.aic(ll, k), 2.0 * k - 2.0 * ll)
    np.testing.assert_allclose(rn.bic(ll, k, n), k * np.log(n) - 2.0 * ll, rtol=5e-16, atol=0)
    for k_, n_ in [(k.astype(np.int8), n.astype(np.uint32)), (k.astype(np.uint64), n.astype(np.float32))]:
        np.testing.assert_allclose(
            rn.bic(ll, k_, n_), k_ * np.log(n_.astype(np.float64)) - 2.0 * ll, rtol=5e-16
        )
    np.testing.assert_array_equal(
        rn.aic(ll.astype(np.float32), 3), 6.0 - 2.0 * ll.astype(np.float32).astype(np.float64)
    )
    col, row = ll[:4, None], k[None, :6]
    got = rn.bic(col, row, 100)
    assert got.shape == (4, 6) and got.dtype == np.float64
    np.testing.assert_allclose(got, row * np.log(100.0) - 2.0 * col, rtol=5e-16)
    scalar = rn.aic(-1.5, 2)
    assert type(scalar) is np.float64 and scalar == 7.0
    assert rn.aic(np.empty((0, 3)), 1).shape == (0, 3)
    assert np.isnan(rn.aic(np.nan, 1)) and rn.bic(-np.inf, 1, 2) == np.inf


def test_aic_bic_of_python_numbers_equal_their_array_forms():
    """Python floats and ints go to the core without NumPy arrays: each result has the bits and
    the type (NumPy float64) of the same call on one-value arrays, for the values and errors
    the array path gives (an int beyond int64 read as uint64 is a float, larger ones refused)."""
    lls = [-10.0, 3.5, -1e300, 0.0, -0.0, np.nan, -np.inf, np.inf, 7]
    ks = [0, 3, 2.5, 10**6, 2**62, 2**63 + 5]
    ns = [1, 200, 0.5, 1e300, 2**63, np.inf]
    for ll in lls:
        for k in ks:
            got = rn.aic(ll, k)
            want = rn.aic(np.array([ll]), np.array([k]))[0]
            assert type(got) is np.float64 and got.tobytes() == want.tobytes(), (ll, k)
            for n in ns:
                got = rn.bic(ll, k, n)
                want = rn.bic(np.array([ll]), np.array([k]), np.array([n]))[0]
                assert type(got) is np.float64 and got.tobytes() == want.tobytes(), (ll, k, n)
    assert rn.aic(-10.0, 3) == 26.0 and rn.bic(-10, 2, 1) == 20.0
    with pytest.raises(ValueError, match=r"^aic: k must be >= 0, got -7$"):
        rn.aic(0.0, -7)
    with pytest.raises(ValueError, match=r"^aic: k must be >= 0, got -0.5$"):
        rn.aic(0.0, -0.5)
    with pytest.raises(ValueError, match=r"^bic: n must be > 0, got 0$"):
        rn.bic(0.0, -1, 0)  # n is checked before k
    with pytest.raises(ValueError, match=r"^bic: n must be > 0, got nan$"):
        rn.bic(0.0, 1, float("nan"))
    with pytest.raises(TypeError, match=r"^aic: k has dtype object; expected real numbers"):
        rn.aic(0.0, 2**64)
    with pytest.raises(TypeError, match=r"^aic: log_likelihood has dtype object; expected real numbers"):
        rn.aic(-(2**63) - 1, 1)
    with pytest.raises(TypeError, match=r"^aic: k has dtype bool; expected real numbers"):
        rn.aic(0.0, True)
    with pytest.raises(TypeError, match=r"^aic: k must be a 1-D int64 or float64 array, or a Python"):
        _rsnorm.information_criterion(1.0, np.float32(2.0), None, 1)


def test_aic_bic_read_directly_equal_their_converted_forms(rng):
    """1-D int64 and float64 arrays of one value or one per model, beside Python numbers, are
    read as they are; every other form is converted and broadcast first. Both give the same bits
    and shapes: lists, int32, float32, 2-D columns, NumPy scalars and read-only arrays."""
    ll = -rng.random(5) * 100
    k = rng.integers(0, 9, 5)
    n = rng.integers(1, 500, 5)
    cases = [
        ((ll, k), (ll.tolist(), k.tolist())),
        ((ll, 3), (ll.tolist(), np.int32(3))),
        ((-4.5, k), (np.float64(-4.5), k.astype(np.int32))),
        ((ll[:1], k), (ll[:1].tolist(), k.tolist())),
        ((ll[:0], 2), (ll[:0].tolist(), np.int16(2))),
    ]
    for direct, converted in cases:
        got, want = rn.aic(*direct), rn.aic(*converted)
        assert got.shape == want.shape and got.tobytes() == want.tobytes(), direct
        n_ = n if np.size(direct[0]) == 5 else n[:1]
        got, want = rn.bic(*direct, n_), rn.bic(*converted, n_.tolist())
        assert got.shape == want.shape and got.tobytes() == want.tobytes(), direct
    frozen = ll.copy()
    frozen.flags.writeable = False
    assert rn.aic(frozen, k).tobytes() == rn.aic(ll, k).tobytes()
    assert rn.aic(ll[:, None], k[:3]).shape == (5, 3)  # 2-D: broadcast in Python
    with pytest.raises(ValueError, match=r"^aic: the shapes cannot be broadcast together"):
        rn.aic(ll, k[:3])
    with pytest.raises(ValueError, match=r"^bic: k must be >= 0, got -1$"):
        rn.bic(ll, np.array([1, 2, -1, 0, 0]), 10)


def test_aic_bic_errors():
    with pytest.raises(
        ValueError, match=r"^aic: the shapes cannot be broadcast together: log_likelihood \(2,\), k \(3,\)"
    ):
        rn.aic([1.0, 2.0], [1, 2, 3])
    k = np.ones(50_000, np.int64)
    k[[30_000, 41_000]] = [-7, -1]
    with pytest.raises(ValueError, match=r"^aic: k must be >= 0, got -7$"):
        rn.aic(0.0, k)
    n = np.full(50_000, 10.0)
    n[45_000] = np.nan
    with pytest.raises(ValueError, match=r"^bic: n must be > 0, got nan$"):
        rn.bic(0.0, k, n)  # n is checked before k
    with pytest.raises(ValueError, match=r"^bic: n must be > 0, got -inf$"):
        rn.bic(0.0, 1, -np.inf)
    with pytest.raises(ValueError, match=r"^aic: k must be >= 0, got -0.5$"):
        rn.aic(0.0, [1.0, -0.5])
    with pytest.raises(TypeError, match=r"^bic: n has dtype bool; expected real numbers"):
        rn.bic(0.0, 1, True)
    with pytest.raises(TypeError, match=r"^aic: log_likelihood has dtype complex128"):
        rn.aic(1j, 1)
    with pytest.raises(ValueError, match=r"^bic: log_likelihood has 2 values for 3 models"):
        _rsnorm.information_criterion(np.zeros(2), np.ones(1), np.ones(1), 3)
    with pytest.raises(TypeError, match=r"^aic: k must be a 1-D int64 or float64 array"):
        _rsnorm.information_criterion(np.zeros(2), np.ones(2, np.int32), None, 2)


def test_errors(rng):
    with pytest.raises(ValueError, match="entropy: probabilities must be non-negative"):
        rn.entropy([0.5, -0.1])
    with pytest.raises(ValueError, match=r"q has shape \(3,\), p has \(2,\)"):
        rn.kl_div([0.5, 0.5], [0.2, 0.3, 0.5])
    with pytest.raises(ValueError, match="base must be positive"):
        rn.entropy([0.5, 0.5], base=1)
    with pytest.raises(TypeError, match="entropy: p has dtype int64"):
        rn.entropy(np.array([1, 2]))
    with pytest.raises(ValueError, match="zero entries"):
        rn.entropy(np.ones((2, 0)))
    logits = rng.standard_normal((3, 4))
    with pytest.raises(
        ValueError, match=r"^cross_entropy_with_logits: reduction must be 'none', 'mean' or 'sum', got .avg."
    ):
        rn.cross_entropy_with_logits(logits, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(TypeError, match=r"^cross_entropy_with_logits: argument 'reduction': .*str"):
        rn.cross_entropy_with_logits(logits, np.array([0, 1, 2]), reduction=1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="label_smoothing must be in"):
        rn.cross_entropy_with_logits(logits, np.array([0, 1, 2]), label_smoothing=1.5)
    with pytest.raises(ValueError, match="target 4 is out of range for 4 classes"):
        rn.cross_entropy_with_logits(logits, np.array([0, 1, 4]))
    with pytest.raises(ValueError, match=r"class-index target has shape \(2,\)"):
        rn.cross_entropy_with_logits(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        rn.softmax(logits, axis=2)
    with pytest.raises(ValueError, match=r"log_softmax: axis 1 is out of range for a 0-dimensional input"):
        rn.log_softmax(np.float64(1.0), axis=1)
    with pytest.raises(ValueError, match=r"js_distance: q must have the dtype of p"):
        rn.js_distance(np.ones(3, np.float32), np.ones(3))
    with pytest.raises(ValueError, match=r"kl_div: the input is 0-dimensional; it needs an axis"):
        rn.kl_div(np.float64(1.0), np.float64(1.0))
    with pytest.raises(ValueError, match="probability target must have the dtype of logits"):
        rn.cross_entropy_with_logits(logits, np.full((3, 4), 0.25, np.float32))
    with pytest.raises(ValueError, match=r"probability target has shape \(3, 3\), logits have \(3, 4\)"):
        rn.cross_entropy_with_logits(logits, np.full((3, 3), 1 / 3))
    with pytest.raises(ValueError, match="u_weights must be non-negative"):
        rn.wasserstein_1d([1.0, 2.0], [1.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="v_weights must have a positive sum"):
        rn.wasserstein_1d([1.0], [1.0], None, [0.0])
    with pytest.raises(ValueError, match="u_values is empty"):
        rn.wasserstein_1d([], [1.0])
    with pytest.raises(ValueError, match="must be 1-D"):
        rn.wasserstein_1d(np.ones((2, 2)), [1.0])
    with pytest.raises(ValueError, match="n must be > 0"):
        rn.bic(-1.0, 2, 0)
    with pytest.raises(ValueError, match="k must be >= 0"):
        rn.aic(-1.0, -2)
