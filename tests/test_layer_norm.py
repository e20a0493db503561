"""layer_norm: parity with float64 NumPy and recorded PyTorch, layouts, out=, stats, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import _tol, check, numeric_grad
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import rsnorm as rn
from conftest import FLOAT_DTYPES, TOL, golden_cases, layer_norm_ref, layouts


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("layer_norm"))
def test_matches_recorded_pytorch(rn, case, inputs, expected):
    kw = case["kwargs"]
    x = inputs["x"].T if kw.get("transpose_x") else inputs["x"]
    y = rn.layer_norm(x, tuple(kw["normalized_shape"]), inputs["weight"], inputs["bias"], eps=kw["eps"])
    assert y.dtype == expected["y"].dtype
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("layer_norm_stats"))
def test_stats_match_recorded_pytorch(rn, case, inputs, expected):
    kw = case["kwargs"]
    y, mean, rstd = rn.layer_norm(
        inputs["x"], tuple(kw["normalized_shape"]), eps=kw["eps"], return_stats=True
    )
    tol = {"rtol": case["tol"]["rtol"], "atol": case["tol"]["atol"]}
    np.testing.assert_allclose(y, expected["y"], **tol)
    np.testing.assert_allclose(mean.reshape(-1), expected["mean"], **tol)
    np.testing.assert_allclose(rstd.reshape(-1), expected["rstd"], **tol)


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
@pytest.mark.parametrize("affine", [False, True])
def test_matches_float64_reference_in_every_layout(rn, rng, dtype, affine):
    x = (rng.standard_normal((5, 7, 33)) * 3 + 1).astype(dtype)
    w = rng.standard_normal(33).astype(dtype) if affine else None
    b = rng.standard_normal(33).astype(dtype) if affine else None
    want = layer_norm_ref(x, 1, w, b)
    for name, view in layouts(x):
        y = rn.layer_norm(view, 33, w, b)
        assert y.dtype == dtype and y.shape == x.shape, name
        np.testing.assert_allclose(y, want, rtol=TOL[dtype], atol=TOL[dtype], err_msg=name)


def test_several_normalized_dims_and_non_mergeable_layout(rn, rng):
    x = rng.standard_normal((3, 4, 6, 5))
    w = rng.standard_normal((6, 5))
    want = layer_norm_ref(x, 2, w)
    # Transposing the inner dims leaves rows that are not one stride apart: the gather path.
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    np.testing.assert_allclose(rn.layer_norm(xt, (6, 5), w), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rn.layer_norm(x[:, ::2], (6, 5), w), want[:, ::2], rtol=1e-12, atol=1e-12)


def test_large_offset_rows_normalize_like_noise(rn, rng):
    noise = rng.standard_normal((64, 4096)).astype(np.float32)
    for offset in (0.0, 1e4):
        x = (offset + noise).astype(np.float32)
        err = np.abs(rn.layer_norm(x) - layer_norm_ref(x)).max()
        assert err <= 1e-4, (offset, err)


@given(
    hnp.arrays(
        np.float64,
        hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=9),
        elements=st.floats(-1e6, 1e6, allow_nan=False, width=32),
    ),
    st.sampled_from([np.float32, np.float64]),
    st.floats(1e-8, 1.0),
)
@settings(max_examples=60, deadline=None)
def test_property_matches_reference(x, dtype, eps):
    x = x.astype(dtype)
    k = 1 + (x.ndim > 1 and x.shape[-1] % 2 == 0)
    y, mean, rstd = rn.layer_norm(x, x.shape[-k:], eps=eps, return_stats=True)
    want = layer_norm_ref(x, k, eps=eps)
    # Error bound relative to the row's scale: one ulp of max|x| divided by the std floor sqrt(eps).
    scale = np.abs(x.astype(np.float64)).max() / np.sqrt(eps) if x.size else 0.0
    tol = TOL[dtype] + 4 * np.finfo(dtype).eps * scale
    np.testing.assert_allclose(y, want, rtol=0, atol=tol)
    assert mean.shape == x.shape[: x.ndim - k] + (1,) * k
    # Invariant: re-normalizing with the returned stats reproduces y.
    np.testing.assert_allclose((x.astype(np.float64) - mean) * rstd, y, rtol=0, atol=tol)


def test_return_stats_shapes_and_dtypes(rn, rng):
    x = rng.standard_normal((2, 3, 4, 5)).astype(np.float32)
    y, mean, rstd = rn.layer_norm(x, (4, 5), return_stats=True)
    np.testing.assert_allclose(y, layer_norm_ref(x, 2), rtol=2e-5, atol=2e-5)
    assert mean.shape == rstd.shape == (2, 3, 1, 1)
    assert mean.dtype == rstd.dtype == np.float32
    np.testing.assert_allclose(mean, x.mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x.var(axis=(2, 3), keepdims=True) + 1e-5), rtol=1e-5)
    # float16 input computes in float32 and reports float32 statistics.
    _, m16, _ = rn.layer_norm(x.astype(np.float16), return_stats=True)
    assert m16.dtype == np.float32


def test_out_argument_and_in_place(rn, rng):
    x = rng.standard_normal((6, 10))
    want = layer_norm_ref(x)
    out = np.empty_like(x)
    assert rn.layer_norm(x, out=out) is out
    np.testing.assert_allclose(out, want, rtol=1e-12)
    out_f = np.empty((6, 10), order="F")
    rn.layer_norm(x, out=out_f)
    np.testing.assert_allclose(out_f, want, rtol=1e-12)
    strided = np.zeros((6, 20))
    rn.layer_norm(x, out=strided[:, ::2])
    np.testing.assert_allclose(strided[:, ::2], want, rtol=1e-12)
    assert not strided[:, 1::2].any()
    inplace = x.copy()
    assert rn.layer_norm(inplace, out=inplace) is inplace
    np.testing.assert_allclose(inplace, want, rtol=1e-12)
    # Overlapping but not identical: out is x reversed along rows; the input is copied first.
    both = x.copy()
    rn.layer_norm(both, out=both[::-1])
    np.testing.assert_allclose(both[::-1], want, rtol=1e-12)


def test_weight_and_bias_of_other_float_dtype_are_cast(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    w, b = rng.standard_normal(8), rng.standard_normal(8)
    y = rn.layer_norm(x, 8, w, b)
    assert y.dtype == np.float32
    np.testing.assert_allclose(
        y, layer_norm_ref(x, 1, w.astype(np.float32), b.astype(np.float32)), rtol=2e-5, atol=2e-5
    )
    # Lists are accepted like np.asarray would.
    np.testing.assert_allclose(
        rn.layer_norm([[1.0, 2.0, 3.0]]), layer_norm_ref([[1.0, 2.0, 3.0]]), rtol=1e-12
    )


def test_nan_and_inf_stay_in_their_row(rng):
    x = rng.standard_normal((4, 16)).astype(np.float32)
    x[1, 3] = np.nan
    x[2, 5] = np.inf
    y = rn.layer_norm(x)
    assert np.isnan(y[1]).all() and np.isnan(y[2]).all()
    assert np.isfinite(y[[0, 3]]).all()
    np.testing.assert_allclose(y[[0, 3]], layer_norm_ref(x[[0, 3]]), rtol=2e-5, atol=2e-5)


def test_empty_inputs():
    assert rn.layer_norm(np.zeros((0, 5), np.float32)).shape == (0, 5)
    y, mean, rstd = rn.layer_norm(np.zeros((0, 3, 5)), return_stats=True)
    assert y.shape == (0, 3, 5) and mean.shape == rstd.shape == (0, 3, 1)
    with pytest.raises(ValueError, match="zero elements"):
        rn.layer_norm(np.zeros((3, 0), np.float32))


def test_read_only_input_is_fine_and_never_written(rng):
    x = rng.standard_normal((3, 4))
    x.flags.writeable = False
    np.testing.assert_allclose(rn.layer_norm(x), layer_norm_ref(x), rtol=1e-12)


def test_byte_swapped_input(rng):
    x = rng.standard_normal((3, 9))
    np.testing.assert_allclose(rn.layer_norm(x.astype(">f8")), layer_norm_ref(x), rtol=1e-12)


@pytest.mark.parametrize(
    ("x", "match"),
    [
        (np.ones((2, 3), np.int64), "dtype int64"),
        (np.ones((2, 3), bool), "dtype bool"),
        (np.ones((2, 3), np.complex128), "dtype complex128"),
        (np.array([[object()]]), "dtype object"),
    ],
)
def test_wrong_input_dtype_is_type_error(x, match):
    with pytest.raises(TypeError, match=match) as info:
        rn.layer_norm(x)
    assert "layer_norm" in str(info.value)


def test_bad_arguments_are_value_errors(rng):
    x = rng.standard_normal((2, 3, 4)).astype(np.float32)
    cases = [
        (dict(normalized_shape=5), r"normalized_shape \[5\]"),
        (dict(normalized_shape=(2, 4)), r"normalized_shape \[2, 4\]"),
        (dict(normalized_shape=(1, 2, 3, 4)), "normalized_shape"),
        (dict(normalized_shape=()), "normalized_shape"),
        (dict(normalized_shape="abc"), "normalized_shape"),
        (dict(weight=np.ones(5)), r"weight has shape \(5,\), expected \(4,\)"),
        (dict(bias=np.ones((1, 4))), r"bias has shape \(1, 4\)"),
        (dict(eps=-1.0), "eps must be a finite number >= 0, got -1"),
        (dict(eps=float("nan")), "got NaN"),
        (dict(out=np.empty((2, 3, 5), np.float32)), r"out has shape \(2, 3, 5\)"),
        (dict(out=np.empty((2, 3, 4), np.float64)), "out has dtype float64, expected float32"),
        (dict(out=np.broadcast_to(np.empty(4, np.float32), (2, 3, 4))), "out is read-only"),
    ]
    for kwargs, match in cases:
        with pytest.raises(ValueError, match=match):
            rn.layer_norm(x, **kwargs)
    with pytest.raises(ValueError, match="0-dimensional"):
        rn.layer_norm(np.float32(3.0))
    with pytest.raises(TypeError, match="weight has dtype int64"):
        rn.layer_norm(x, weight=np.ones(4, np.int64))
    with pytest.raises(TypeError, match=r"out must be a numpy\.ndarray"):
        rn.layer_norm(x, out=[0.0])
    overlapping = np.lib.stride_tricks.as_strided(np.empty(8, np.float32), (2, 3, 4), (0, 4, 4))
    with pytest.raises(ValueError, match="overlapping"):
        rn.layer_norm(x, out=overlapping)


def test_large_arrays_equal_their_pieces_bitwise(rng):
    """A 67 MB array (split across threads, rows of 4101 float32 not 16-byte aligned) gives bitwise
    the results of the same rows computed in small serial pieces, out of place and in place."""
    x = rng.standard_normal((4100, 4101), dtype=np.float32)
    w = rng.standard_normal(4101).astype(np.float32)
    big = rn.layer_norm(x, 4101, w, w)
    pieces = np.concatenate([rn.layer_norm(x[i : i + 256], 4101, w, w) for i in range(0, 4100, 256)])
    np.testing.assert_array_equal(big, pieces)
    rms_big = rn.rms_norm(x, 4101, w)
    np.testing.assert_array_equal(
        rms_big, np.concatenate([rn.rms_norm(x[i : i + 256], 4101, w) for i in range(0, 4100, 256)])
    )
    rn.layer_norm(x, 4101, w, w, out=x)  # in place, streamed
    np.testing.assert_array_equal(x, big)


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("layer_norm_backward"))
def test_layer_norm_backward_matches_autograd(rn, case, i, e):
    ns, eps = tuple(case["kwargs"]["normalized_shape"]), case["kwargs"]["eps"]
    _, mean, rstd = rn.layer_norm(i["x"], ns, i["weight"], i["bias"], eps=eps, return_stats=True)
    dx, dw, db = rn.layer_norm_backward(
        i["grad_out"], i["x"], mean, rstd, i["weight"], i["bias"], normalized_shape=ns
    )
    for got, key in ((dx, "dx"), (dw, "dweight"), (db, "dbias")):
        np.testing.assert_allclose(got, e[key], **_tol(case), err_msg=key)


@given(st.integers(1, 4), st.integers(2, 7), st.booleans(), st.integers(0, 2**31), st.sampled_from([1, 2]))
@settings(max_examples=25, deadline=None)
def test_layer_and_rms_norm_gradients(rows, cols, affine, seed, k):
    rng = np.random.default_rng(seed)
    shape = (rows, 2, cols) if k == 2 else (rows, cols)
    ns = shape[-k:]
    x, go = rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape)
    w = rng.standard_normal(ns) if affine else None
    b = rng.standard_normal(ns) if affine else None
    _, mean, rstd = rn.layer_norm(x, ns, w, b, return_stats=True)
    dx, dw, db = rn.layer_norm_backward(go, x, mean, rstd, w, b, normalized_shape=ns)
    loss = lambda: float((go * rn.layer_norm(x, ns, w, b)).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "layer_norm dx")
    if affine:
        check(dw, numeric_grad(loss, w), "layer_norm dweight")
        check(db, numeric_grad(loss, b), "layer_norm dbias")
    else:
        assert dw is None and db is None
    _, rstd = rn.rms_norm(x, ns, w, 1e-6, return_stats=True)
    dx, dw = rn.rms_norm_backward(go, x, rstd, w, normalized_shape=ns)
    loss = lambda: float((go * rn.rms_norm(x, ns, w, 1e-6)).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "rms_norm dx")
    if affine:
        check(dw, numeric_grad(loss, w), "rms_norm dweight")
