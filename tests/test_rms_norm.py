"""rms_norm: parity with float64 NumPy and recorded PyTorch, eps default, layouts, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import _tol
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rsnorm as rn
from conftest import FLOAT_DTYPES, TOL, golden_cases, layouts, rms_norm_ref


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("rms_norm"))
def test_matches_recorded_pytorch(rn, case, inputs, expected):
    kw = case["kwargs"]
    y = rn.rms_norm(inputs["x"], tuple(kw["normalized_shape"]), inputs["weight"], eps=kw["eps"])
    assert y.dtype == expected["y"].dtype
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_matches_float64_reference_in_every_layout(rn, rng, dtype):
    x = (rng.standard_normal((4, 6, 40)) * 2 + 0.5).astype(dtype)
    w = rng.standard_normal(40).astype(dtype)
    want = rms_norm_ref(x, 1, w, eps=1e-6)
    for name, view in layouts(x):
        y = rn.rms_norm(view, 40, w, eps=1e-6)
        assert y.dtype == dtype, name
        np.testing.assert_allclose(y, want, rtol=TOL[dtype], atol=TOL[dtype], err_msg=name)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_eps_none_is_the_dtype_machine_epsilon(dtype):
    # A zero row shows eps directly: y = 0 either way, but rstd = 1/sqrt(eps).
    x = np.zeros((1, 8), dtype)
    _, rstd = rn.rms_norm(x, return_stats=True)
    np.testing.assert_allclose(rstd.ravel(), [1 / np.sqrt(float(np.finfo(dtype).eps))], rtol=1e-6)


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=12),
        elements=st.floats(-1e3, 1e3, allow_nan=False),
    ),
    st.sampled_from([np.float32, np.float64]),
)
@settings(max_examples=60, deadline=None)
def test_property_matches_reference(x, dtype):
    x = x.astype(dtype)
    y, rstd = rn.rms_norm(x, eps=1e-6, return_stats=True)
    want = rms_norm_ref(x, 1, eps=1e-6)
    np.testing.assert_allclose(y, want, rtol=TOL[dtype], atol=TOL[dtype] * 10)
    assert rstd.shape == (*x.shape[:-1], 1)
    # |y| has mean square 1 unless eps dominates (rows near zero).
    ms = (x.astype(np.float64) ** 2).mean(-1)
    big = ms > 1e-3
    np.testing.assert_allclose(
        (want[big] ** 2).mean(-1), (y[big].astype(np.float64) ** 2).mean(-1), rtol=1e-4
    )


def test_out_in_place_and_nan_rows(rng):
    x = rng.standard_normal((5, 9)).astype(np.float32)
    x[2, 0] = np.nan
    want = rms_norm_ref(x)
    buf = x.copy()
    assert rn.rms_norm(buf, out=buf) is buf
    np.testing.assert_allclose(buf, want, rtol=2e-5, atol=2e-5, equal_nan=True)
    assert np.isnan(buf[2]).all() and np.isfinite(np.delete(buf, 2, axis=0)).all()


def test_errors(rng):
    x = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="eps must be"):
        rn.rms_norm(x, eps=-1e-6)
    with pytest.raises(ValueError, match=r"weight has shape \(3,\)"):
        rn.rms_norm(x, weight=np.ones(3))
    with pytest.raises(ValueError, match="normalized_shape"):
        rn.rms_norm(x, normalized_shape=(2, 4))
    with pytest.raises(TypeError, match="rms_norm: x has dtype int32"):
        rn.rms_norm(np.ones((2, 2), np.int32))
    with pytest.raises(ValueError, match="zero elements"):
        rn.rms_norm(np.ones((2, 0)))
    ro = np.empty_like(x)
    ro.flags.writeable = False
    with pytest.raises(ValueError, match="out is read-only"):
        rn.rms_norm(x, out=ro)
    assert rn.rms_norm(np.ones((0, 4))).shape == (0, 4)


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("rms_norm_backward"))
def test_rms_norm_backward_matches_autograd(rn, case, i, e):
    ns, eps = tuple(case["kwargs"]["normalized_shape"]), case["kwargs"]["eps"]
    _, rstd = rn.rms_norm(i["x"], ns, i["weight"], eps=eps, return_stats=True)
    dx, dw = rn.rms_norm_backward(i["grad_out"], i["x"], rstd, i["weight"], normalized_shape=ns)
    np.testing.assert_allclose(dx, e["dx"], **_tol(case))
    np.testing.assert_allclose(dw, e["dweight"], **_tol(case))
