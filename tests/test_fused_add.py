"""add_layer_norm / add_rms_norm: the residual add fused with the norm, in one pass."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import check, numeric_grad

import rsnorm as rn
from conftest import FLOAT_DTYPES, TOL, layer_norm_ref, rms_norm_ref


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_add_layer_norm_equals_add_then_norm(rn, rng, dtype):
    x = rng.standard_normal((3, 5, 24)).astype(dtype)
    r = rng.standard_normal((3, 5, 24)).astype(dtype)
    w, b = rng.standard_normal(24).astype(dtype), rng.standard_normal(24).astype(dtype)
    y, s = rn.add_layer_norm(x, r, w, b)
    np.testing.assert_array_equal(s, x + r)
    np.testing.assert_allclose(y, layer_norm_ref(x + r, 1, w, b), rtol=TOL[dtype], atol=TOL[dtype])
    if dtype != np.float16:
        np.testing.assert_array_equal(y, rn.layer_norm(x + r, 24, w, b))


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_add_rms_norm_equals_add_then_norm(rn, rng, dtype):
    x = rng.standard_normal((7, 32)).astype(dtype)
    r = rng.standard_normal((7, 32)).astype(dtype)
    w = rng.standard_normal(32).astype(dtype)
    y, s, rstd = rn.add_rms_norm(x, r, w, 1e-6, return_stats=True)
    np.testing.assert_array_equal(s, x + r)
    np.testing.assert_allclose(y, rms_norm_ref(x + r, 1, w, 1e-6), rtol=TOL[dtype], atol=TOL[dtype])
    assert rstd.shape == (7, 1)


def test_in_place_transformer_style(rn, rng):
    """x, residual = add_rms_norm(x, residual, w, out=x, residual_out=residual)."""
    x = rng.standard_normal((4, 16))
    r = rng.standard_normal((4, 16))
    want_y, want_s = rms_norm_ref(x + r, 1, None, 1e-6), x + r
    y, s = rn.add_rms_norm(x, r, None, 1e-6, out=x, residual_out=r)
    assert y is x and s is r
    np.testing.assert_allclose(x, want_y, rtol=1e-12)
    np.testing.assert_allclose(r, want_s, rtol=1e-15)
    # Swapped: the sum written over x, the normalized output over the residual.
    x2, r2 = rng.standard_normal((4, 16)), rng.standard_normal((4, 16))
    want_y, want_s = layer_norm_ref(x2 + r2), x2 + r2
    rn.add_layer_norm(x2, r2, out=r2, residual_out=x2)
    np.testing.assert_allclose(r2, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(x2, want_s, rtol=1e-15)


def test_stats_and_strided_inputs(rn, rng):
    x = rng.standard_normal((6, 10)).T  # non-contiguous (10, 6)
    r = rng.standard_normal((10, 12))[:, ::2]
    y, s, mean, rstd = rn.add_layer_norm(x, r, return_stats=True)
    np.testing.assert_allclose(s, x + r, rtol=1e-15)
    np.testing.assert_allclose(y, layer_norm_ref(x + r), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean.ravel(), (x + r).mean(-1), rtol=1e-12)
    assert rstd.shape == (10, 1)


def test_errors(rng):
    x = rng.standard_normal((3, 4)).astype(np.float32)
    with pytest.raises(ValueError, match=r"residual has shape \(3, 5\), x has \(3, 4\)"):
        rn.add_layer_norm(x, np.ones((3, 5), np.float32))
    with pytest.raises(ValueError, match="residual must have the dtype of x"):
        rn.add_rms_norm(x, np.ones((3, 4)))
    with pytest.raises(TypeError, match="residual has dtype int64"):
        rn.add_layer_norm(x, np.ones((3, 4), np.int64))
    buf = np.empty((3, 4), np.float32)
    with pytest.raises(ValueError, match="out and residual_out share memory"):
        rn.add_layer_norm(x, x.copy(), out=buf, residual_out=buf)
    with pytest.raises(ValueError, match="eps must be"):
        rn.add_layer_norm(x, x, eps=-1)
    with pytest.raises(ValueError, match="weight has shape"):
        rn.add_rms_norm(x, x, np.ones(3))


def test_fused_add_backward(rn, rng):
    x, r, go = rng.standard_normal((3, 6)), rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    gs = rng.standard_normal((3, 6))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    _, s, mean, rstd = rn.add_layer_norm(x, r, w, b, return_stats=True)
    dx, dr, dw, db = rn.add_layer_norm_backward(go, s, mean, rstd, w, b, grad_residual_out=gs)

    def loss():
        return float(sum((g * o).sum() for g, o in zip((go, gs), rn.add_layer_norm(x, r, w, b), strict=True)))

    check(dx, numeric_grad(loss, x), "add_layer_norm dx")
    check(dr, numeric_grad(loss, r), "add_layer_norm dresidual")
    check(dw, numeric_grad(loss, w), "add_layer_norm dweight")
    check(db, numeric_grad(loss, b), "add_layer_norm dbias")
    _, s, rstd = rn.add_rms_norm(x, r, w, 1e-6, return_stats=True)
    dx, dr, dw = rn.add_rms_norm_backward(go, s, rstd, w)
    loss = lambda: float((go * rn.add_rms_norm(x, r, w, 1e-6)[0]).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "add_rms_norm dx")
    check(dw, numeric_grad(loss, w), "add_rms_norm dweight")
