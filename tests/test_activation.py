"""selu: recorded PyTorch values, layouts, in place, and its gradient."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import _tol

import rsnorm
import rsnorm as rn
from conftest import golden_cases, layouts


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("selu_backward"))
def test_selu_backward_matches_autograd(rn, case, i, e):
    np.testing.assert_allclose(rn.selu_backward(i["grad_out"], i["x"]), e["dx"], **_tol(case))


def test_selu_backward_large_and_strided_in_float32(rng):
    """Contiguous arrays go through parallel chunks (with a tail), strided ones row by row; both
    against float64 closed form dx = go·λ (x > 0), go·λ·α·eˣ (x ≤ 0)."""
    lam, alpha = 1.0507009873554805, 1.6732632423543772
    x = (rng.standard_normal(300_001) * 4).astype(np.float32)
    go = rng.standard_normal(x.shape).astype(np.float32)
    x64, go64 = x.astype(np.float64), go.astype(np.float64)
    want = np.where(x64 > 0, go64 * lam, go64 * lam * alpha * np.exp(x64))
    np.testing.assert_allclose(rn.selu_backward(go, x), want, rtol=2e-6, atol=1e-30)
    xs, gs = x[:300_000].reshape(600, 500)[:, ::3], go[:300_000].reshape(600, 500)[:, ::3]
    np.testing.assert_allclose(
        rn.selu_backward(gs, xs), want[:300_000].reshape(600, 500)[:, ::3], rtol=2e-6, atol=1e-30
    )
    edges = np.tile(np.array([np.nan, np.inf, -np.inf, 3e38, -3e38, -1e-8], np.float32), 1000)
    got = rn.selu_backward(np.ones_like(edges), edges)[:6]
    np.testing.assert_allclose(got, [np.nan, lam, 0, lam, 0, lam * alpha], rtol=1e-6)


SELU_SCALE, SELU_ALPHA = 1.0507009873554805, 1.6732632423543772


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("selu"))
def test_selu_matches_recorded_pytorch(rn, case, inputs, expected):
    np.testing.assert_allclose(
        rn.selu(inputs["x"]), expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"]
    )


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


def softmax_grads64(grad_out, y, axis, log):
    g, y = np.asarray(grad_out, np.float64), np.asarray(y, np.float64)
    if log:
        return g - np.exp(y) * g.sum(axis=axis, keepdims=True)
    return y * (g - (g * y).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("axis", [-1, 0, 1])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_softmax_backward_equals_the_float64_formula(rn, rng, log, axis, dtype):
    """dx = y·(g − Σg·y) (softmax) and g − exp(y)·Σg (log_softmax) from the forward's output, along
    every axis of (N, C, d), on 1e4-offset logits."""
    x = (rng.standard_normal((6, 9, 5)) * 3 + 1e4).astype(dtype)
    g = rng.standard_normal(x.shape).astype(dtype)
    y = (rsnorm.log_softmax if log else rsnorm.softmax)(x, axis=axis)
    fn = rn.log_softmax_backward if log else rn.softmax_backward
    got = fn(g, y, axis)
    assert got.dtype == dtype and got.shape == x.shape
    want = softmax_grads64(g, y, axis, log)
    tol = 1e-13 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())


def test_softmax_backward_layouts_out_and_edges(rng):
    x = rng.standard_normal((7, 12))
    y, ly = rsnorm.softmax(x), rsnorm.log_softmax(x)
    g = rng.standard_normal(x.shape)
    for name, view in layouts(g):
        np.testing.assert_allclose(
            rsnorm.softmax_backward(view, y),
            softmax_grads64(g, y, -1, False),
            rtol=1e-12,
            atol=1e-15,
            err_msg=name,
        )
    buf = g.copy()
    assert rsnorm.log_softmax_backward(buf, ly, out=buf) is buf  # in place over grad_out
    np.testing.assert_allclose(buf, softmax_grads64(g, ly, -1, True), rtol=1e-12, atol=1e-15)
    # any y (not a forward's output), positive too: exp is exact past the vectorized range
    np.testing.assert_allclose(
        rsnorm.log_softmax_backward(g, ly + 3.0), softmax_grads64(g, ly + 3.0, -1, True), rtol=1e-12
    )
    bad = g.copy()
    bad[3, 4] = np.nan
    got = rsnorm.softmax_backward(bad, y)
    assert np.isnan(got[3]).all() and np.isfinite(np.delete(got, 3, axis=0)).all()
    assert rsnorm.softmax_backward(np.float32(2.0), np.float32(1.0)).shape == ()
    assert rsnorm.softmax_backward(np.zeros((0, 3), np.float16), np.zeros((0, 3), np.float16)).shape == (0, 3)
    half = rsnorm.softmax_backward(g.astype(np.float16), y.astype(np.float16))
    np.testing.assert_allclose(half, softmax_grads64(g, y, -1, False), atol=2e-3)
    with pytest.raises(ValueError, match=r"softmax_backward: grad_out has shape \(7, 11\), y has \(7, 12\)"):
        rsnorm.softmax_backward(g[:, 1:], y)
    with pytest.raises(ValueError, match=r"log_softmax_backward: grad_out must have the dtype of y"):
        rsnorm.log_softmax_backward(g.astype(np.float32), ly)
    with pytest.raises(ValueError, match=r"softmax_backward: axis 2 is out of range"):
        rsnorm.softmax_backward(g, y, 2)
    with pytest.raises(ValueError, match=r"softmax_backward: out has shape"):
        rsnorm.softmax_backward(g, y, out=np.empty((12, 7)))
