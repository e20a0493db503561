"""selu: recorded PyTorch values, layouts, in place, and its gradient."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import _tol

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
