"""``normalize(x, p, axis, eps)``: Lp normalization along any axis, forward and backward, against
float64 references written from ``F.normalize``'s formula (x / max(‖x‖_p, eps)) and its autograd,
and against ONNX's recorded LpNormalization outputs (eps = 0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rsnorm

PS = [1.0, 2.0, 3.0, 1.5, np.inf]


def norm_ref(x, p, axis):
    """‖x‖_p in float64, scaled by max |x| so squares (or p-th powers) neither overflow nor underflow."""
    x = np.asarray(x, np.float64)
    top = np.abs(x).max(axis=axis, keepdims=True, initial=0.0)
    usable = np.isfinite(top) & (top > 0)
    scaled = np.linalg.norm(x / np.where(usable, top, 1.0), ord=p, axis=axis, keepdims=True)
    return np.where(usable, top * scaled, top)


def normalize_ref(x, p=2.0, axis=-1, eps=1e-12):
    return np.asarray(x, np.float64) / np.maximum(norm_ref(x, p, axis), eps)


def backward_ref(g, x, p=2.0, axis=-1, eps=1e-12):
    """PyTorch's autograd of x / clamp_min(‖x‖_p, eps), written out in float64: the quotient's
    g/N, and through the norm (when not clamped) −Σ g·x/N² times ∂N/∂x = sign(x)(|x|/N)^(p−1)
    (p = inf: sign(x) on the values equal to the max, shared equally)."""
    x, g = np.asarray(x, np.float64), np.asarray(g, np.float64)
    n = norm_ref(x, p, axis)
    clamped = n < eps
    d = np.maximum(n, eps)
    if p == np.inf:
        at_max = np.abs(x) == n
        dn = np.sign(x) * at_max / at_max.sum(axis=axis, keepdims=True)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            dn = np.sign(x) * (np.abs(x) / n) ** (p - 1)
    dot = (g * x).sum(axis=axis, keepdims=True)
    through_norm = np.where(clamped, 0.0, dot / d**2 * dn)
    return g / d - through_norm


TOL = {np.float16: 2e-3, np.float32: 2e-6, np.float64: 1e-13}


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("axis", [0, 1, -1])
@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_normalize_matches_formula(rn, rng, p, axis, dtype):
    x = (rng.standard_normal((5, 6, 7)) * 3).astype(dtype)
    got = rn.normalize(x, p, axis)
    assert got.dtype == dtype and got.shape == x.shape
    np.testing.assert_allclose(got, normalize_ref(x, p, axis), rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("p", PS)
@pytest.mark.parametrize("axis", [0, 2, -1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_normalize_backward_matches_autograd(rng, p, axis, dtype):
    x = rng.standard_normal((4, 5, 6)).astype(dtype)
    g = rng.standard_normal((4, 5, 6)).astype(dtype)
    got = rsnorm.normalize_backward(g, x, p, axis)
    assert got.dtype == dtype and got.shape == x.shape
    tol = 10 * TOL[dtype]
    np.testing.assert_allclose(got, backward_ref(g, x, p, axis), rtol=tol, atol=tol)


@pytest.mark.parametrize("p", [1.0, 2.0, 2.5, np.inf])
def test_backward_is_the_derivative(rng, p):
    """Central differences of Σ g·normalize(x) in float64."""
    x = rng.standard_normal((3, 6))
    g = rng.standard_normal((3, 6))
    dx = rsnorm.normalize_backward(g, x, p, 0)
    h = 1e-6
    for i, j in [(0, 0), (1, 3), (2, 5)]:
        up, down = x.copy(), x.copy()
        up[i, j] += h
        down[i, j] -= h
        numeric = ((rsnorm.normalize(up, p, 0) - rsnorm.normalize(down, p, 0)) * g).sum() / (2 * h)
        assert abs(numeric - dx[i, j]) < 1e-7, (p, i, j, numeric, dx[i, j])


def test_inf_norm_gradient_is_shared_by_ties():
    x = np.array([[3.0, -3.0, 1.0, 2.0]])
    g = np.array([[1.0, 2.0, 3.0, 4.0]])
    dx = rsnorm.normalize_backward(g, x, np.inf)
    # N = 3, Σ g·x = 3 − 6 + 3 + 8 = 8; each of the two maxima takes half of −8/9·sign.
    want = g / 3 - np.array([[1.0, -1.0, 0.0, 0.0]]) * 8 / 9 / 2
    np.testing.assert_allclose(dx, want, rtol=1e-15)


def test_l2_normalize_is_the_p2_last_axis_case(rng):
    for dtype in (np.float16, np.float32, np.float64):
        x = rng.standard_normal((9, 33)).astype(dtype)
        g = rng.standard_normal((9, 33)).astype(dtype)
        np.testing.assert_array_equal(rsnorm.normalize(x), rsnorm.l2_normalize(x))
        np.testing.assert_array_equal(rsnorm.normalize_backward(g, x), rsnorm.l2_normalize_backward(g, x))


def test_eps_clamps_small_norms_and_zero_slices_stay_zero():
    x = np.array([[1e-14, -2e-14], [0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(rsnorm.normalize(x, 2.0, -1, 1e-12), [[0.01, -0.02], [0, 0], [0.6, 0.8]])
    # eps = 0 (ONNX): the plain norm; a zero slice stays zeros, as ONNX Runtime gives it.
    y = rsnorm.normalize(x, 1.0, -1, 0.0)
    np.testing.assert_allclose(y, [[1 / 3, -2 / 3], [0, 0], [3 / 7, 4 / 7]], rtol=1e-15)
    g = np.ones_like(x)
    dx = rsnorm.normalize_backward(g, x, 2.0, -1, 1e-12)
    np.testing.assert_allclose(dx[0], 1e12)  # clamped: g / eps
    np.testing.assert_array_equal(rsnorm.normalize_backward(g, x, 2.0, -1, 0.0)[1], 0.0)


def test_huge_and_tiny_values_do_not_overflow():
    for p in (2.0, 3.0, 7.5):
        big = np.array([1e300, -1e300, 5e299])
        np.testing.assert_allclose(rsnorm.normalize(big, p), normalize_ref(big / 1e300, p), rtol=1e-14)
        tiny = np.array([3e-310, 4e-310], dtype=np.float64)
        np.testing.assert_allclose(
            rsnorm.normalize(tiny, p, eps=0.0), normalize_ref(tiny * 1e300, p), rtol=1e-6
        )
    tiny32 = np.array([3e-40, 4e-40], np.float32)  # subnormal: 1/norm overflows
    np.testing.assert_allclose(rsnorm.normalize(tiny32, eps=0.0), [0.6, 0.8], rtol=1e-4)
    f32 = np.full(8, 3e38, np.float32)
    np.testing.assert_allclose(rsnorm.normalize(f32, 1.0), np.full(8, 0.125), rtol=1e-7)


@pytest.mark.parametrize("p", PS)
def test_nan_and_inf_stay_in_their_slice(p):
    x = np.ones((3, 4))
    x[1, 2] = np.nan
    y = rsnorm.normalize(x, p)
    assert np.isnan(y[1]).all() and np.isfinite(y[[0, 2]]).all()
    dx = rsnorm.normalize_backward(np.ones_like(x), x, p)
    assert np.isnan(dx[1]).all() and np.isfinite(dx[[0, 2]]).all()
    x[1, 2] = np.inf
    y = rsnorm.normalize(x, p)
    assert np.isfinite(y[[0, 2]]).all()
    np.testing.assert_array_equal(y[1, [0, 1, 3]], 0.0)


def test_out_strides_in_place_read_only_and_empty(rng):
    x = rng.standard_normal((6, 10))
    want = normalize_ref(x, 3.0, 0)
    out = np.empty_like(x)
    assert rsnorm.normalize(x, 3.0, 0, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-14)
    strided = np.asfortranarray(x)[:, ::2]
    np.testing.assert_allclose(rsnorm.normalize(strided, 1.0, 0), normalize_ref(strided, 1.0, 0), rtol=1e-14)
    frozen = x.copy()
    frozen.flags.writeable = False
    np.testing.assert_allclose(rsnorm.normalize(frozen, 3.0, 0), want, rtol=1e-14)
    inplace = x.copy()
    rsnorm.normalize(inplace, 3.0, 0, out=inplace)
    np.testing.assert_allclose(inplace, want, rtol=1e-14)
    assert rsnorm.normalize(np.zeros((0, 4), np.float32), 1.0, 0).shape == (0, 4)
    assert rsnorm.normalize_backward(np.zeros((3, 0)), np.zeros((3, 0)), np.inf).shape == (3, 0)
    assert rsnorm.normalize(np.float64(-2.0), 1.0) == -1.0  # a 0-d array: one value along axis 0


def test_errors_name_the_function_and_argument():
    x = np.ones((2, 3))
    for p in (0.5, 0.0, -1.0, np.nan, -np.inf):
        with pytest.raises(ValueError, match=r"normalize: p must be a number >= 1 or inf, got"):
            rsnorm.normalize(x, p)
    with pytest.raises(ValueError, match=r"normalize_backward: p must be a number >= 1 or inf, got 0.5"):
        rsnorm.normalize_backward(x, x, 0.5)
    with pytest.raises(TypeError, match="normalize"):
        rsnorm.normalize(x, "two")
    with pytest.raises(ValueError, match=r"normalize: axis 2 is out of range"):
        rsnorm.normalize(x, 2.0, 2)
    with pytest.raises(ValueError, match=r"normalize: eps must be a finite number >= 0, got -1"):
        rsnorm.normalize(x, 2.0, -1, -1.0)
    with pytest.raises(ValueError, match=r"normalize_backward: grad has shape \(3, 2\), x has \(2, 3\)"):
        rsnorm.normalize_backward(np.ones((3, 2)), x)
    with pytest.raises(ValueError, match=r"normalize_backward: grad must have the dtype of x"):
        rsnorm.normalize_backward(x.astype(np.float32), x)
    with pytest.raises(ValueError, match=r"normalize: out has shape"):
        rsnorm.normalize(x, out=np.empty((3, 2)))
    with pytest.raises(TypeError, match=r"normalize: .*x"):
        rsnorm.normalize(np.ones(3, np.int32))


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
        elements=st.floats(-1e6, 1e6, allow_subnormal=False),
    ),
    p=st.sampled_from(PS),
    data=st.data(),
)
def test_property_slices_have_unit_norm(x, p, data):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    y = rsnorm.normalize(x, p, axis, 0.0)
    n = norm_ref(x, p, axis)
    got = norm_ref(y, p, axis)
    np.testing.assert_allclose(got[n > 0], 1.0, rtol=1e-12)
    np.testing.assert_array_equal(np.broadcast_to(n == 0, y.shape) & (y != 0), False)
    np.testing.assert_allclose(y, np.where(n > 0, x / np.where(n > 0, n, 1), 0.0), rtol=1e-12, atol=1e-300)


def _onnx_cases():
    data = np.load(Path(__file__).parent / "data" / "onnx_lp_normalization.npz")
    for case in json.loads(str(data["index"])):
        key = case["key"]
        yield pytest.param(case["attrs"], data[f"{key}/in0"], data[f"{key}/out0"], id=key)


@pytest.mark.parametrize("attrs,x,want", list(_onnx_cases()))
def test_onnx_lp_normalization(rn, attrs, x, want):
    """ONNX's LpNormalization (recorded by tools/record_onnx_cases.py: the backend node test and
    ONNX Runtime's outputs for p = 1 and 2 along every axis, with a zero slice): eps = 0."""
    got = rn.normalize(x, float(attrs.get("p", 2)), attrs.get("axis", -1), 0.0)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("p", PS)
def test_dask_slices_across_chunks(rng, p):
    """Slices split over chunks: the norm from dask reductions in float64, scaled as the kernel
    scales it (1e300 does not overflow), equal to the CPU result."""
    da = pytest.importorskip("dask.array")
    import rsnorm.dask  # registers the backend

    x = rng.standard_normal((12, 7))
    x[3] *= 1e300
    x[5] = 0.0
    dx = da.from_array(x, chunks=(5, 3))
    for axis in (0, 1):
        got = rsnorm.normalize(dx, p, axis, 0.0).compute()
        np.testing.assert_allclose(got, rsnorm.normalize(x, p, axis, 0.0), rtol=1e-13, atol=1e-300)
    with pytest.raises(ValueError, match="normalize: p must be"):
        rsnorm.normalize(dx, 0.5)
