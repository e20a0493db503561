"""weight_norm and cosine_linear (and their layers' math): recorded PyTorch values, float64
references, dims, gradients, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import _tol, check, numeric_grad

import rsnorm as rn
from conftest import golden_cases


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("weight_norm_backward"))
def test_weight_norm_backward_matches_autograd(rn, case, i, e):
    dv, dg = rn.weight_norm_backward(i["grad_out"], i["v"], i["g"], dim=case["kwargs"]["dim"])
    np.testing.assert_allclose(dv, e["dv"], **_tol(case))
    np.testing.assert_allclose(dg, e["dg"], **_tol(case))
    assert dg.shape == i["g"].shape


@pytest.mark.parametrize("dim", [0, 1, -1, None])
def test_weight_norm_gradients(rn, rng, dim):
    v = rng.standard_normal((3, 4, 2))
    g = rng.random(1 if dim is None else v.shape[dim]) + 0.5
    gw = rng.standard_normal(v.shape)
    dv, dg = rn.weight_norm_backward(gw, v, g, dim=dim)
    loss = lambda: float((gw * rn.weight_norm(v, g, dim=dim)).sum())  # noqa: E731
    check(dv, numeric_grad(loss, v), "dv")
    check(dg, numeric_grad(loss, g), "dg")


def test_cosine_linear_and_selu_gradients(rn, rng):
    x, w, go = rng.standard_normal((4, 5)), rng.standard_normal((3, 5)), rng.standard_normal((4, 3))
    dx, dw = rn.cosine_linear_backward(go, x, w)
    loss = lambda: float((go * rn.cosine_linear(x, w)).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "cosine dx")
    check(dw, numeric_grad(loss, w), "cosine dweight")
    xs, gs = rng.standard_normal((3, 7)) * 2, rng.standard_normal((3, 7))
    loss = lambda: float((gs * rn.selu(xs)).sum())  # noqa: E731
    check(rn.selu_backward(gs, xs), numeric_grad(loss, xs), "selu dx")


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("weight_norm"))
def test_weight_norm_matches_recorded_pytorch(rn, case, inputs, expected):
    w = rn.weight_norm(inputs["v"], inputs["g"], dim=case["kwargs"]["dim"])
    np.testing.assert_allclose(w, expected["w"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("cosine_linear"))
def test_cosine_linear_matches_recorded_pytorch(rn, case, inputs, expected):
    y = rn.cosine_linear(inputs["x"], inputs["weight"])
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


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
    if dim is not None:  # g with ones around its axis (PyTorch's shape) is reshaped; 1-D is not
        kept = rn.weight_norm(v, g.reshape(shape), dim=dim)
        np.testing.assert_array_equal(kept, rn.weight_norm(v, g, dim=dim))


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
