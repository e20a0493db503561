"""selu, local_response_norm, weight_norm, cosine_linear, moments/merge_moments and their layers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rsnorm as rn
from conftest import golden_cases, layouts

SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


def lrn_ref(x, size, alpha=1e-4, beta=0.75, k=1.0):
    """PyTorch's LRN in float64: zero-padded channel window, alpha divided by size."""
    x = np.asarray(x, dtype=np.float64)
    c = x.shape[1]
    sq = x**2
    div = np.zeros_like(x)
    for ch in range(c):
        lo, hi = max(0, ch - size // 2), min(c - 1, ch + (size - 1) // 2)
        div[:, ch] = sq[:, lo : hi + 1].sum(axis=1)
    return x / (k + alpha / size * div) ** beta


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("selu"))
def test_selu_matches_recorded_pytorch(rn, case, inputs, expected):
    np.testing.assert_allclose(
        rn.selu(inputs["x"]), expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"]
    )


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("local_response_norm"))
def test_lrn_matches_recorded_pytorch(rn, case, inputs, expected):
    kw = case["kwargs"]
    y = rn.local_response_norm(inputs["x"], kw["size"], alpha=kw["alpha"], beta=kw["beta"], k=kw["k"])
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("weight_norm"))
def test_weight_norm_matches_recorded_pytorch(rn, case, inputs, expected):
    w = rn.weight_norm(inputs["v"], inputs["g"], dim=case["kwargs"]["dim"])
    np.testing.assert_allclose(w, expected["w"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("cosine_linear"))
def test_cosine_linear_matches_recorded_pytorch(rn, case, inputs, expected):
    y = rn.cosine_linear(inputs["x"], inputs["weight"])
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


def test_selu_values_layouts_and_in_place(rn, rng):
    x = rng.standard_normal((6, 50)) * 3
    want = np.where(x > 0, SELU_SCALE * x, SELU_SCALE * SELU_ALPHA * np.expm1(x))
    for name, view in layouts(x):
        np.testing.assert_allclose(rn.selu(view), want, rtol=1e-14, atol=1e-15, err_msg=name)
    big = rng.standard_normal(300_000).astype(np.float32)  # parallel contiguous path
    np.testing.assert_allclose(
        rn.selu(big),
        np.where(big > 0, SELU_SCALE * big, SELU_SCALE * SELU_ALPHA * np.expm1(big)),
        rtol=2e-6,
        atol=1e-7,
    )
    buf = x.copy()
    assert rn.selu(buf, out=buf) is buf
    np.testing.assert_allclose(buf, want, rtol=1e-14, atol=1e-15)
    assert np.isnan(rn.selu(np.array([np.nan]))).all()
    assert rn.selu(np.float32(-1.0)).shape == ()
    assert rn.selu(np.zeros((0, 3), np.float16)).shape == (0, 3)


@pytest.mark.parametrize(
    "shape", [(2, 7, 5), (2, 9, 3, 4), (1, 4, 2, 3, 2), (2, 9, 7, 7)]
)  # 7x7: a padded step
@pytest.mark.parametrize("size", [1, 2, 5, 12])
def test_lrn_reference_3d_4d_5d_and_edges(rn, rng, shape, size):
    x = rng.standard_normal(shape) * 10
    np.testing.assert_allclose(
        rn.local_response_norm(x, size, 1e-2, 0.75, 2.0), lrn_ref(x, size, 1e-2, 0.75, 2.0), rtol=1e-12
    )
    np.testing.assert_allclose(
        rn.local_response_norm(x, size, 1e-2, 0.6, 1.0), lrn_ref(x, size, 1e-2, 0.6, 1.0), rtol=1e-12
    )


@pytest.mark.parametrize("size", [3, 5, 8])
def test_lrn_long_rows_in_tiles_across_threads_and_in_place(rng, size):
    """Rows longer than a tile (1024 positions) with a tail past the 64-wide steps; a batch of one
    splits its tiles across threads, which must not change a bit."""
    x = (rng.standard_normal((1, 6, 3, 700)) * 4).astype(np.float32)  # 2100 positions per channel
    want = lrn_ref(x, size, 1e-2, 0.75, 1.0)
    before = rn.get_num_threads()
    try:
        results = []
        for n in (1, 2, 5):
            rn.set_num_threads(n)
            results.append(rn.local_response_norm(x, size, 1e-2, 0.75, 1.0))
    finally:
        rn.set_num_threads(before)
    np.testing.assert_allclose(results[0], want, rtol=2e-6)
    for other in results[1:]:
        np.testing.assert_array_equal(other, results[0])
    buf = x.copy()
    assert rn.local_response_norm(buf, size, 1e-2, 0.75, 1.0, out=buf) is buf
    np.testing.assert_array_equal(buf, results[0])
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(
        rn.local_response_norm(x64, size, 1e-2, 0.6, 1.0), lrn_ref(x64, size, 1e-2, 0.6), rtol=1e-12
    )


def test_lrn_tensorflow_convention_by_scaling_alpha(rng):
    """TF: x / (bias + alpha_tf · Σ_{|d|≤r} x²)^beta; rsnorm with size = 2r+1, alpha = alpha_tf · size."""
    x = rng.standard_normal((2, 8, 3, 3))
    r, alpha_tf = 2, 1e-3
    sq = np.pad(x**2, ((0, 0), (r, r), (0, 0), (0, 0)))
    tf = x / (1.0 + alpha_tf * sum(sq[:, i : i + 8] for i in range(2 * r + 1))) ** 0.75
    np.testing.assert_allclose(
        rn.local_response_norm(x, 2 * r + 1, alpha=alpha_tf * (2 * r + 1)), tf, rtol=1e-12
    )


def test_lrn_float32_strided_and_errors(rng):
    x = rng.standard_normal((3, 6, 8, 8)).astype(np.float32)
    view = x[:, ::-1, ::2]
    np.testing.assert_allclose(rn.local_response_norm(view, 3), lrn_ref(view, 3), rtol=1e-5)
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        rn.local_response_norm(x, 0)
    with pytest.raises(ValueError, match="3 or more dims"):
        rn.local_response_norm(x[0, 0], 3)
    with pytest.raises(ValueError, match="beta must be finite"):
        rn.local_response_norm(x, 3, beta=float("inf"))


@pytest.mark.parametrize("dim", [0, 1, -1, None])
def test_weight_norm_dims(rn, rng, dim):
    v = rng.standard_normal((4, 3, 5))
    if dim is None:
        g = np.array(2.5)
        want = 2.5 * v / np.linalg.norm(v)
    else:
        d = dim % 3
        axes = tuple(i for i in range(3) if i != d)
        g = rng.random(v.shape[d]) + 0.5
        shape = [1, 1, 1]
        shape[d] = -1
        want = g.reshape(shape) * v / np.sqrt((v**2).sum(axis=axes, keepdims=True))
    np.testing.assert_allclose(rn.weight_norm(v, g, dim=dim), want, rtol=1e-13)
    np.testing.assert_allclose(rn.weight_norm(np.asfortranarray(v), g, dim=dim), want, rtol=1e-13)


def test_weight_norm_errors(rng):
    v = rng.standard_normal((4, 3))
    with pytest.raises(ValueError, match=r"g has shape \(3,\) \(3 elements\), expected 4"):
        rn.weight_norm(v, np.ones(3))
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        rn.weight_norm(v, np.ones(4), dim=2)
    with pytest.raises(TypeError, match="g has dtype int64"):
        rn.weight_norm(v, np.ones(4, np.int64))


def test_cosine_linear_properties_and_errors(rng):
    x, w, b = rng.standard_normal((5, 8)), rng.standard_normal((3, 8)), rng.standard_normal(3)
    y = rn.cosine_linear(x, w, b)
    want = (x @ w.T) / np.outer(np.linalg.norm(x, axis=1), np.linalg.norm(w, axis=1)) + b
    np.testing.assert_allclose(y, want, rtol=1e-12)
    np.testing.assert_allclose(rn.cosine_linear(3 * x, 0.5 * w), rn.cosine_linear(x, w), rtol=1e-12)
    assert np.isfinite(rn.cosine_linear(np.zeros((1, 8)), w)).all()  # eps keeps a zero row finite
    assert rn.cosine_linear(x.astype(np.float32), w).dtype == np.float32
    with pytest.raises(ValueError, match="weight must be"):
        rn.cosine_linear(x, w.T)
    with pytest.raises(ValueError, match=r"bias has shape \(2,\)"):
        rn.cosine_linear(x, w, np.ones(2))


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


def test_layers(rng):
    x = rng.standard_normal((128, 10)).astype(np.float32)
    layer = rn.nn.WeightNormLinear(10, 6, seed=1)
    assert set(layer.state_dict()) == {"weight_g", "weight_v", "bias"}
    assert layer.state_dict()["weight_g"].shape == (6, 1)
    y = layer.init_from_batch(x)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(layer(x), y, rtol=1e-6)
    lrn = rn.nn.LocalResponseNorm(3, alpha=1e-2)
    xs = rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(lrn(xs), lrn_ref(xs, 3, 1e-2), rtol=1e-12)
    cos = rn.nn.CosineLinear(10, 4, bias=True, seed=0)
    np.testing.assert_allclose(
        cos(x), rn.cosine_linear(x, cos.parameters()["weight"], np.zeros(4)), rtol=1e-6
    )


def test_sequence_batch_norm_steps_beyond_max(rng):
    seq = rn.nn.SequenceBatchNorm(3, max_steps=2, momentum=0.5, dtype=np.float64)
    x = rng.standard_normal((4, 16, 3)) + np.arange(4)[:, None, None]
    seq(x)
    rm = seq.state_dict()["running_mean"]
    np.testing.assert_allclose(rm[0], 0.5 * x[0].mean(0), rtol=1e-12)
    # Steps 1, 2, 3 all update step 1's statistics, in order.
    want = np.zeros(3)
    for t in (1, 2, 3):
        want = 0.5 * want + 0.5 * x[t].mean(0)
    np.testing.assert_allclose(rm[1], want, rtol=1e-12)
    seq.eval()
    y = seq(x)
    rv = seq.state_dict()["running_var"]
    np.testing.assert_allclose(y[3], (x[3] - rm[1]) / np.sqrt(rv[1] + 1e-5), rtol=1e-12)
    with pytest.raises(ValueError, match=r"must be \(T, N, 3, \.\.\.\)"):
        seq(np.zeros((2, 3)))
