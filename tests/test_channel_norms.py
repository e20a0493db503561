"""batch_norm, instance_norm, group_norm: recorded PyTorch values, float64 references, identities, errors."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import _tol, check, numeric_grad
from hypothesis import given, settings
from hypothesis import strategies as st

import rsnorm as rn
from conftest import golden_cases, lrn_ref
from rsnorm import batch_norm as host_batch_norm


def bn_ref(x, mean, var, w=None, b=None, eps=1e-5, axis=1):
    shape = [1] * x.ndim
    shape[axis] = -1
    y = (x - np.reshape(mean, shape)) / np.sqrt(np.reshape(var, shape) + eps)
    if w is not None:
        y = y * np.reshape(w, shape)
    if b is not None:
        y = y + np.reshape(b, shape)
    return y


def group_ref(x, groups, w=None, b=None, eps=1e-5):
    n, c = x.shape[:2]
    g = x.astype(np.float64).reshape(n, groups, -1)
    y = ((g - g.mean(-1, keepdims=True)) / np.sqrt(g.var(-1, keepdims=True) + eps)).reshape(x.shape)
    shape = (1, c) + (1,) * (x.ndim - 2)
    if w is not None:
        y = y * np.reshape(w, shape)
    if b is not None:
        y = y + np.reshape(b, shape)
    return y


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("batch_norm"))
def test_batch_norm_matches_recorded_pytorch(rn, case, inputs, expected):
    kw = case["kwargs"]
    rm, rv = inputs["running_mean"].copy(), inputs["running_var"].copy()
    extra = {"axis": kw["axis"]} if "axis" in kw else {}
    y = rn.batch_norm(
        inputs["x"],
        rm,
        rv,
        inputs["weight"],
        inputs["bias"],
        training=kw["training"],
        momentum=kw.get("momentum", 0.1),
        eps=kw["eps"],
        **extra,
    )
    tol = {"rtol": case["tol"]["rtol"], "atol": case["tol"]["atol"]}
    np.testing.assert_allclose(y, expected["y"], **tol)
    for name in ("running_mean", "running_var"):
        if name in expected:
            np.testing.assert_allclose({"running_mean": rm, "running_var": rv}[name], expected[name], **tol)


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("batch_norm_train_steps"))
def test_batch_norm_layer_three_training_steps(rn, case, inputs, expected):
    kw = case["kwargs"]
    bn = rn.nn.BatchNorm(inputs["weight"].shape[0], momentum=kw["momentum"], eps=kw["eps"])
    bn.load_state_dict({**bn.state_dict(), "weight": inputs["weight"], "bias": inputs["bias"]})
    tol = {"rtol": case["tol"]["rtol"], "atol": case["tol"]["atol"]}
    for i in range(3):
        np.testing.assert_allclose(bn(inputs[f"x{i}"]), expected[f"y{i}"], **tol)
    state = bn.state_dict()
    np.testing.assert_allclose(state["running_mean"], expected["running_mean"], **tol)
    np.testing.assert_allclose(state["running_var"], expected["running_var"], **tol)
    assert int(state["num_batches_tracked"]) == 3


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("instance_norm"))
def test_instance_norm_matches_recorded_pytorch(rn, case, inputs, expected):
    y = rn.instance_norm(
        inputs["x"], weight=inputs.get("weight"), bias=inputs.get("bias"), eps=case["kwargs"]["eps"]
    )
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("group_norm"))
def test_group_norm_matches_recorded_pytorch(rn, case, inputs, expected):
    kw = case["kwargs"]
    y = rn.group_norm(inputs["x"], kw["num_groups"], inputs["weight"], inputs["bias"], eps=kw["eps"])
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


@pytest.mark.parametrize("axis", [1, -1, 0])
def test_batch_norm_training_reference_and_running_update(rn, rng, axis):
    x = rng.standard_normal((6, 5, 4, 3)) * 2 + 3
    x = np.moveaxis(x, 1, axis)  # a non-contiguous view with channels at `axis`
    c = x.shape[axis]
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = np.zeros(c), np.ones(c)
    y, mean, rstd = rn.batch_norm(x, rm, rv, w, b, training=True, momentum=0.2, axis=axis, return_stats=True)
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    bmean, bvar = x.mean(axis=axes), x.var(axis=axes)
    n = x.size // c
    np.testing.assert_allclose(y, bn_ref(x, bmean, bvar, w, b, axis=axis), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(mean, bmean, rtol=1e-13)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(bvar + 1e-5), rtol=1e-13)
    np.testing.assert_allclose(rm, 0.2 * bmean, rtol=1e-13)
    np.testing.assert_allclose(rv, 0.8 + 0.2 * bvar * n / (n - 1), rtol=1e-13)


@pytest.mark.parametrize(
    "shape",
    [(1009, 7), (64, 56, 3), (2, 5, 6, 31), (12, 40, 64), (3, 1)],  # 1009 rows: prime, no grouping
)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batch_norm_channels_last_column_path(rn, rng, shape, dtype):
    """Channel on the last axis (NHWC, (batch, features)): statistics run down columns."""
    x = (rng.standard_normal(shape) * 0.5 + 1e4).astype(dtype)  # a large offset must not matter
    c = shape[-1]
    axes = tuple(range(x.ndim - 1))
    x64 = x.astype(np.float64)
    bmean, bvar = x64.mean(axis=axes), x64.var(axis=axes)
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = np.zeros(c), np.ones(c)
    y, mean, rstd = rn.batch_norm(
        x, rm, rv, w.astype(dtype), b.astype(dtype), training=True, axis=-1, return_stats=True
    )
    tol = 1e-4 if dtype == np.float32 else 1e-9
    np.testing.assert_allclose(
        y, bn_ref(x64, bmean, bvar, w.astype(dtype), b.astype(dtype), axis=-1), atol=tol
    )
    single = dtype == np.float32  # stats come back in x's dtype
    np.testing.assert_allclose(mean, bmean, rtol=1e-7 if single else 1e-12)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(bvar + 1e-5), rtol=1e-5 if single else 1e-10)
    n = x.size // c
    np.testing.assert_allclose(rv, 0.9 + 0.1 * bvar * n / (n - 1), rtol=1e-5)
    # In place, eval with the running statistics, and a transposed (non-contiguous) view agree.
    z = x.copy()
    rn.batch_norm(z, rm, rv, w, b, axis=-1, out=z)
    np.testing.assert_allclose(
        z, bn_ref(x64, rm, rv, w, b, axis=-1), rtol=1e-6 if single else 1e-12, atol=tol
    )
    xt = np.asfortranarray(x)
    # (Not bitwise: grouped rows fold their f64 block sums at other boundaries.)
    np.testing.assert_allclose(
        rn.batch_norm(xt, training=True, axis=-1), rn.batch_norm(x, training=True, axis=-1), atol=tol
    )


def test_batch_norm_columns_same_for_any_thread_count(rng):
    x = rng.standard_normal((4096, 48)).astype(np.float32)
    before = rn.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            rn.set_num_threads(threads)
            results.append(rn.batch_norm(x, training=True, axis=-1, return_stats=True))
    finally:
        rn.set_num_threads(before)
    for got in results[1:]:
        for a, b in zip(got, results[0], strict=True):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape", [(96, 6, 7, 7), (70, 5, 32), (40, 3, 300), (3, 4, 5000)])
def test_channel_norms_over_short_and_long_rows(rn, rng, shape):
    """Channel-first statistics over many short rows (shared lanes), long rows, and a first sample
    far from the rest (the units' first center is off); bitwise the same on 1 to 3 threads."""
    x = (rng.standard_normal(shape) * 0.5 + 1e4).astype(np.float32)
    x[0] += 30.0
    x64 = x.astype(np.float64)
    axes = (0, *range(2, x.ndim))
    c = shape[1]
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    before = rn.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            rn.set_num_threads(threads)
            results.append(
                (
                    rn.batch_norm(x, training=True, weight=w, bias=b, return_stats=True),
                    rn.group_norm(x, 1, w, b, return_stats=True),
                )
            )
    finally:
        rn.set_num_threads(before)
    for got in results[1:]:
        for a, ref in zip(got, results[0], strict=True):
            for u, v in zip(a, ref, strict=True):
                np.testing.assert_array_equal(u, v)
    (y, mean, rstd), (gy, gmean, grstd) = results[0]
    bmean, bvar = x64.mean(axis=axes), x64.var(axis=axes)
    np.testing.assert_allclose(mean, bmean, rtol=1e-7)  # stats come back as float32
    np.testing.assert_allclose(rstd, 1 / np.sqrt(bvar + 1e-5), rtol=1e-4)
    np.testing.assert_allclose(y, bn_ref(x64, bmean, bvar, w, b), atol=2e-3)
    np.testing.assert_allclose(gy, group_ref(x, 1, w, b), atol=2e-3)
    flat = x64.reshape(shape[0], -1)
    np.testing.assert_allclose(gmean.ravel(), flat.mean(axis=1), rtol=1e-7)
    np.testing.assert_allclose(grstd.ravel(), 1 / np.sqrt(flat.var(axis=1) + 1e-5), rtol=1e-4)
    # In place (y is x) gives the same bits, training and eval.
    z = x.copy()
    assert rn.batch_norm(z, training=True, weight=w, bias=b, out=z) is z
    np.testing.assert_array_equal(z, y)
    z = x.copy()
    rn.group_norm(z, 1, w, b, out=z)
    np.testing.assert_array_equal(z, gy)
    z = x.copy()
    want = rn.batch_norm(x, bmean, bvar, w, b)
    rn.batch_norm(z, bmean, bvar, w, b, out=z)
    np.testing.assert_array_equal(z, want)
    np.testing.assert_allclose(want, bn_ref(x64, bmean, bvar, w, b), atol=2e-3)
    # A strided view (every other sample) takes the row-by-row path to the same values.
    view = x[::2]
    np.testing.assert_allclose(
        rn.batch_norm(view, training=True), rn.batch_norm(view.copy(), training=True), atol=1e-6
    )
    np.testing.assert_allclose(rn.group_norm(view, 1), rn.group_norm(view.copy(), 1), atol=1e-6)


@given(
    st.integers(1, 70),
    st.integers(1, 8),
    st.integers(2, 300),
    st.sampled_from([0.0, 1e4]),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from(["contiguous", "strided", "in place"]),
    st.integers(0, 2**31),
)
@settings(max_examples=60, deadline=None)
def test_property_channel_norms_match_reference(n, c, length, offset, dtype, layout, seed):
    """BatchNorm train/eval, GroupNorm and InstanceNorm on (n, c, length) over short rows (lanes
    shared across rows and flushes), long rows, large offsets, strided views and in place."""
    rng = np.random.default_rng(seed)
    base = (offset + rng.standard_normal((n, c, 2 * length))).astype(dtype)
    x = base[:, :, ::2] if layout == "strided" else np.ascontiguousarray(base[:, :, :length])
    x64 = x.astype(np.float64)
    w, b = rng.standard_normal(c).astype(dtype), rng.standard_normal(c).astype(dtype)
    groups = next(g for g in (4, 3, 2, 1) if c % g == 0)
    tol = 2e-4 if dtype == np.float32 else 1e-9

    def run(op, *args, **kwargs):
        if layout != "in place":
            return op(x, *args, **kwargs)
        z = x.copy()
        assert op(z, *args, out=z, **kwargs) is z
        return z

    mean, var = x64.mean(axis=(0, 2)), x64.var(axis=(0, 2))
    if n * length > 1:
        np.testing.assert_allclose(
            run(rn.batch_norm, training=True, weight=w, bias=b), bn_ref(x64, mean, var, w, b), atol=tol
        )
    np.testing.assert_allclose(run(rn.batch_norm, mean, var, w, b), bn_ref(x64, mean, var, w, b), atol=tol)
    np.testing.assert_allclose(run(rn.group_norm, groups, w, b), group_ref(x64, groups, w, b), atol=tol)
    np.testing.assert_allclose(run(rn.instance_norm, weight=w, bias=b), group_ref(x64, c, w, b), atol=tol)


def test_batch_norm_eval_float32_running_stats_and_mean_only(rn, rng):
    x = rng.standard_normal((16, 4)).astype(np.float32)
    rm, rv = rng.standard_normal(4).astype(np.float32), rng.random(4).astype(np.float32) + 0.5
    y = rn.batch_norm(x, rm, rv)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, bn_ref(x.astype(np.float64), rm, rv), rtol=2e-5, atol=2e-5)
    # Mean-only: subtract the batch mean, no division; only running_mean moves.
    rm2 = np.zeros(4)
    y = rn.batch_norm(x.astype(np.float64), rm2, None, bias=np.ones(4), training=True, mean_only=True)
    np.testing.assert_allclose(y, x - x.mean(0) + 1, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(rm2, 0.1 * x.mean(0), rtol=1e-6)
    # No running statistics: batch statistics even in eval (track_running_stats=False).
    np.testing.assert_allclose(rn.batch_norm(x), bn_ref(x, x.mean(0), x.var(0)), rtol=2e-5, atol=2e-5)


def test_batch_norm_cumulative_average_needs_count(rng):
    x = rng.standard_normal((8, 3))
    rm, rv = np.zeros(3), np.ones(3)
    rn.batch_norm(x, rm, rv, training=True, momentum=None, num_batches_tracked=0)
    np.testing.assert_allclose(rm, x.mean(0), rtol=1e-13)  # first batch: factor 1
    with pytest.raises(ValueError, match="num_batches_tracked"):
        rn.batch_norm(x, rm, rv, training=True, momentum=None)


def test_momentum_conversion_pytorch_to_keras(rng):
    """PyTorch momentum m weights the new batch; Keras momentum 0.99 weights the old value."""
    x = rng.standard_normal((32, 2))
    rm, rv = np.ones(2), np.ones(2)
    rn.batch_norm(x, rm, rv, training=True, momentum=1 - 0.99)
    np.testing.assert_allclose(rm, 0.99 * 1 + 0.01 * x.mean(0), rtol=1e-13)


def test_group_norm_identities(rn, rng):
    x = rng.standard_normal((3, 6, 5, 4)) + 2
    # G=1: each sample normalized over (C, H, W), like a layer norm over the last three dims.
    np.testing.assert_allclose(rn.group_norm(x, 1), rn.layer_norm(x, (6, 5, 4)), rtol=1e-12, atol=1e-12)
    # G=C: instance norm.
    np.testing.assert_allclose(rn.group_norm(x, 6), rn.instance_norm(x), rtol=1e-12, atol=1e-12)
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    y, mean, rstd = rn.group_norm(x[:, :, ::-1], 3, w, b, return_stats=True)
    np.testing.assert_allclose(y, group_ref(x[:, :, ::-1], 3, w, b), rtol=1e-12, atol=1e-12)
    assert mean.shape == rstd.shape == (3, 3)


def test_instance_norm_running_stats(rn, rng):
    x = rng.standard_normal((4, 3, 10)) + 1
    rm, rv = np.zeros(3), np.ones(3)
    y, mean, rstd = rn.instance_norm(x, rm, rv, momentum=0.5, return_stats=True)
    np.testing.assert_allclose(mean, x.mean(-1), rtol=1e-13)
    np.testing.assert_allclose(rstd, 1 / np.sqrt(x.var(-1) + 1e-5), rtol=1e-13)
    np.testing.assert_allclose(
        y, (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5), rtol=1e-12
    )
    np.testing.assert_allclose(rm, 0.5 * x.mean(-1).mean(0), rtol=1e-13)
    np.testing.assert_allclose(rv, 0.5 + 0.5 * x.var(-1, ddof=1).mean(0), rtol=1e-13)
    # Eval with running statistics.
    y = rn.instance_norm(x, rm, rv, use_input_stats=False)
    np.testing.assert_allclose(y, bn_ref(x, rm, rv), rtol=1e-12)


def test_nn_layers_state_dict_round_trip(rng):
    bn = rn.nn.BatchNorm(3, dtype=np.float64)
    x = rng.standard_normal((10, 3, 4))
    bn(x)
    copy = rn.nn.BatchNorm(3, dtype=np.float64)
    copy.load_state_dict({k: v.copy() for k, v in bn.state_dict().items()})
    bn.eval()
    copy.eval()
    np.testing.assert_array_equal(bn(x), copy(x))
    assert set(bn.state_dict()) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    assert set(rn.nn.InstanceNorm(3).state_dict()) == set()
    assert set(rn.nn.InstanceNorm(3, affine=True, track_running_stats=True).state_dict()) == set(
        bn.state_dict()
    )
    with pytest.raises(ValueError, match=r"missing keys \['bias'\], unexpected keys \['gamma'\]"):
        rn.nn.LayerNorm(4).load_state_dict({"weight": np.ones(4), "gamma": np.ones(4)})
    with pytest.raises(ValueError, match=r"weight has shape \(5,\), expected \(4,\)"):
        rn.nn.RMSNorm(4).load_state_dict({"weight": np.ones(5)})
    gn = rn.nn.GroupNorm(2, 4)
    np.testing.assert_allclose(gn(x.reshape(5, 4, 6)), group_ref(x.reshape(5, 4, 6), 2), rtol=2e-5, atol=2e-5)
    with pytest.raises(ValueError, match="num_groups=3"):
        rn.nn.GroupNorm(3, 4)
    ln = rn.nn.LayerNorm((3, 4))
    assert ln(x).dtype == np.float64 and ln.parameters().keys() == {"weight", "bias"}


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: rn.batch_norm(x, axis=4), "axis 4 is out of range"),
        (
            lambda x: rn.batch_norm(x, np.zeros(3), np.ones(3)),
            r"running_mean has shape \(3,\), expected \(4,\)",
        ),
        (lambda x: rn.batch_norm(x, np.zeros(4), None), "both running_mean and running_var"),
        (lambda x: rn.batch_norm(x, momentum=1.5, training=True), "momentum must be in \\[0, 1\\], got 1.5"),
        (lambda x: rn.batch_norm(x, eps=-1), "eps must be"),
        (lambda x: rn.batch_norm(x[:1, :, :1, :1], training=True), "more than 1 value per channel"),
        (lambda x: rn.batch_norm(x, weight=np.ones(3)), r"weight has shape \(3,\), expected \(4,\)"),
        (lambda x: rn.group_norm(x, 3), "num_groups=3 must be >= 1 and divide the 4 channels"),
        (lambda x: rn.group_norm(x, 0), "num_groups=0"),
        (lambda x: rn.group_norm(x[0, 0, 0], 1), r"must be \(N, C, \.\.\.\)"),
        (lambda x: rn.instance_norm(x, use_input_stats=False), "needs running_mean"),
        (lambda x: rn.instance_norm(x[:, :, :1, :1]), "more than 1 spatial element"),
    ],
)
def test_errors(rng, call, match):
    x = rng.standard_normal((2, 4, 3, 3))
    with pytest.raises(ValueError, match=match):
        call(x)


def test_running_stats_of_every_layout_update_as_their_float64_copy(rng):
    """Native float64 and float32 running statistics are read and written in place, any other
    through NumPy's casts: each layout ends with the float64 update cast to its dtype, bit for
    bit, and normalizes in evaluation as its float64 copy does."""
    x = (rng.standard_normal((16, 5, 5)) * 2 + 3).astype(np.float32)
    # Values every layout holds exactly, so that each update starts from the same numbers.
    start_mean = rng.standard_normal(5).astype(np.float16).astype(np.float64)
    start_var = (rng.random(5) + 0.5).astype(np.float16).astype(np.float64)
    layouts = {
        "float64": lambda v: v.copy(),
        "float32": lambda v: v.astype(np.float32),
        "float16": lambda v: v.astype(np.float16),
        "float32 strided": lambda v: np.repeat(v, 2).astype(np.float32)[::2],
        "byte-swapped": lambda v: v.astype(">f8"),
    }
    for axis in (1, -1):
        rm, rv = start_mean.copy(), start_var.copy()
        want_y = rn.batch_norm(x, rm, rv, training=True, momentum=0.3, axis=axis)
        want_eval = rn.batch_norm(x, rm, rv, training=False, axis=axis)
        assert not np.array_equal(rm, start_mean)
        for name, make in layouts.items():
            lm, lv = make(start_mean), make(start_var)
            y = rn.batch_norm(x, lm, lv, training=True, momentum=0.3, axis=axis)
            np.testing.assert_array_equal(y, want_y, err_msg=name)
            np.testing.assert_array_equal(lm, rm.astype(lm.dtype), err_msg=name)
            np.testing.assert_array_equal(lv, rv.astype(lv.dtype), err_msg=name)
            if lm.dtype.itemsize == 8:
                got = rn.batch_norm(x, lm, lv, training=False, axis=axis)
                np.testing.assert_array_equal(got, want_eval, err_msg=name)
    im, iv = np.zeros(5, np.float32), np.ones(5, np.float32)
    rn.instance_norm(x[:, :, None], im, iv, momentum=0.5)
    ref_m, ref_v = np.zeros(5), np.ones(5)
    rn.instance_norm(x[:, :, None], ref_m, ref_v, momentum=0.5)
    np.testing.assert_array_equal(im, ref_m.astype(np.float32))
    np.testing.assert_array_equal(iv, ref_v.astype(np.float32))


def test_read_only_running_stats_in_training_is_error_but_fine_in_eval(rng):
    x = rng.standard_normal((5, 2))
    rm, rv = np.zeros(2), np.ones(2)
    rm.flags.writeable = False
    with pytest.raises(ValueError, match="running_mean is read-only"):
        rn.batch_norm(x, rm, rv, training=True)
    rn.batch_norm(x, rm, rv, training=False)
    with pytest.raises(TypeError, match=r"running_var must be a numpy\.ndarray"):
        rn.batch_norm(x, np.zeros(2), [1.0, 1.0], training=True)
    with pytest.raises(TypeError, match="batch_norm: x has dtype int64"):
        rn.batch_norm(np.ones((2, 2), np.int64))


def test_float16_and_empty(rng):
    x = rng.standard_normal((4, 3, 5)).astype(np.float16)
    y = rn.group_norm(x, 3)
    assert y.dtype == np.float16
    np.testing.assert_allclose(y, group_ref(x, 3), atol=1e-2)
    assert rn.batch_norm(np.zeros((0, 3)), np.zeros(3), np.ones(3)).shape == (0, 3)
    xh = rng.standard_normal((40, 6)).astype(np.float16)  # the column path gathers f16
    yh = rn.batch_norm(xh, training=True, axis=-1)
    assert yh.dtype == np.float16
    ref = bn_ref(xh.astype(np.float64), xh.astype(np.float64).mean(0), xh.astype(np.float64).var(0), axis=-1)
    np.testing.assert_allclose(yh, ref, atol=1e-2)
    assert rn.group_norm(np.zeros((0, 4, 2)), 2).shape == (0, 4, 2)


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("batch_norm_backward"))
def test_batch_norm_backward_matches_autograd(rn, case, i, e):
    _, mean, rstd = rn.batch_norm(
        i["x"],
        None,
        None,
        i["weight"],
        i["bias"],
        training=True,
        eps=case["kwargs"]["eps"],
        return_stats=True,
    )
    dx, dw, db = rn.batch_norm_backward(i["grad_out"], i["x"], mean, rstd, i["weight"], training=True)
    for got, key in ((dx, "dx"), (dw, "dweight"), (db, "dbias")):
        np.testing.assert_allclose(got, e[key], **_tol(case), err_msg=key)


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("group_norm_backward"))
def test_group_norm_backward_matches_autograd(rn, case, i, e):
    g, eps = case["kwargs"]["num_groups"], case["kwargs"]["eps"]
    _, mean, rstd = rn.group_norm(i["x"], g, i["weight"], i["bias"], eps=eps, return_stats=True)
    dx, dw, db = rn.group_norm_backward(i["grad_out"], i["x"], mean, rstd, i["weight"], num_groups=g)
    for got, key in ((dx, "dx"), (dw, "dweight"), (db, "dbias")):
        np.testing.assert_allclose(got, e[key], **_tol(case), err_msg=key)


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("instance_norm_backward"))
def test_instance_norm_backward_matches_autograd(rn, case, i, e):
    _, mean, rstd = rn.instance_norm(i["x"], eps=case["kwargs"]["eps"], return_stats=True)
    dx, dw, db = rn.instance_norm_backward(i["grad_out"], i["x"], mean, rstd)
    np.testing.assert_allclose(dx, e["dx"], **_tol(case))
    assert dw is None and db.shape == (i["x"].shape[1],)


@given(
    # Fewer than 32 values after the channel run down columns; (2, 3, 40) with axis 1 runs by rows.
    st.sampled_from([(4, 3), (3, 2, 4), (2, 3, 2, 2), (2, 3, 40)]),
    st.sampled_from([1, -1]),
    st.booleans(),
    st.integers(0, 2**31),
)
@settings(max_examples=20, deadline=None)
def test_batch_norm_gradients_training_and_eval(rn, shape, axis, affine, seed):
    """The backend's backward against central differences of the NumPy backend's forward (which each
    backend's forward matches elsewhere): through a device's forward they cost two round trips per
    element, 23 s of lavapipe for this test."""
    rng = np.random.default_rng(seed)
    x, go = rng.standard_normal(shape) + 0.5, rng.standard_normal(shape)
    c = shape[axis]
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    _, mean, rstd = rn.batch_norm(x, None, None, w, b, training=True, axis=axis, return_stats=True)
    dx, dw, db = rn.batch_norm_backward(go, x, mean, rstd, w, training=True, axis=axis)
    loss = lambda: float((go * host_batch_norm(x, None, None, w, b, training=True, axis=axis)).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "batch_norm dx")
    if affine:
        check(dw, numeric_grad(loss, w), "dweight")
    np.testing.assert_allclose(
        db, go.sum(axis=tuple(i for i in range(go.ndim) if i != axis % go.ndim)), rtol=1e-12
    )
    # Eval: running statistics are constants.
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5
    _, mean, rstd = rn.batch_norm(x, rm, rv, w, b, training=False, axis=axis, return_stats=True)
    dx, dw, db = rn.batch_norm_backward(go, x, mean, rstd, w, training=False, axis=axis)
    loss = lambda: float((go * host_batch_norm(x, rm, rv, w, b, training=False, axis=axis)).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "batch_norm eval dx")


@given(
    st.sampled_from([(4, 3), (3, 2, 4), (2, 3, 40)]),
    st.sampled_from([1, -1]),
    st.booleans(),
    st.booleans(),
    st.integers(0, 2**31),
)
@settings(max_examples=20, deadline=None)
def test_mean_only_batch_norm_gradients(rn, shape, axis, affine, training, seed):
    """As above: the numeric gradients go through the NumPy backend's forward."""
    rng = np.random.default_rng(seed)
    x, go = rng.standard_normal(shape) * 3 + 0.5, rng.standard_normal(shape)
    c = shape[axis]
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    rm = rng.standard_normal(c)

    def forward() -> np.ndarray:
        return host_batch_norm(x, rm.copy(), None, w, b, training=training, axis=axis, mean_only=True)

    _, mean, rstd = rn.batch_norm(
        x, rm.copy(), None, w, b, training=training, axis=axis, mean_only=True, return_stats=True
    )
    dx, dw, db = rn.batch_norm_backward(go, x, mean, rstd, w, training=training, axis=axis, mean_only=True)
    loss = lambda: float((go * forward()).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "mean-only dx")
    if affine:
        check(dw, numeric_grad(loss, w), "mean-only dweight")
        check(db, numeric_grad(loss, b), "mean-only dbias")
    # The forward scaled by 1: rstd is not read.
    again = rn.batch_norm_backward(go, x, mean, rstd * 0 + 7, w, training=training, axis=axis, mean_only=True)
    np.testing.assert_array_equal(again[0], dx)


@pytest.mark.parametrize("shape", [(2, 3, 5), (3, 2, 6, 6)])
def test_instance_norm_eval_gradients(rn, rng, shape):
    """With running statistics (use_input_stats=False) the statistics are constants."""
    x, go = rng.standard_normal(shape), rng.standard_normal(shape)
    c = shape[1]
    w, b = rng.standard_normal(c), rng.standard_normal(c)
    rm, rv = rng.standard_normal(c), rng.random(c) + 0.5

    def forward() -> np.ndarray:
        return rn.instance_norm(x, rm, rv, w, b, use_input_stats=False)

    _, mean, rstd = rn.instance_norm(x, rm, rv, w, b, use_input_stats=False, return_stats=True)
    dx, dw, db = rn.instance_norm_backward(go, x, mean, rstd, w, use_input_stats=False)
    loss = lambda: float((go * forward()).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "instance_norm eval dx")
    check(dw, numeric_grad(loss, w), "instance_norm eval dweight")
    check(db, numeric_grad(loss, b), "instance_norm eval dbias")


@pytest.mark.parametrize(("shape", "axis"), [((4, 3, 40), 1), ((4, 5, 3), -1)])
def test_eval_gradient_is_finite_where_x_is_infinite(rn, rng, shape, axis):
    """dx = go·w·rstd in evaluation mode: an infinite x (rows path and columns path) must not make
    its gradient NaN."""
    x, go = rng.standard_normal(shape), rng.standard_normal(shape)
    x[1, 1, 2] = np.inf
    c = shape[axis]
    w, rm, rv = rng.standard_normal(c), rng.standard_normal(c), rng.random(c) + 0.5
    _, mean, rstd = rn.batch_norm(x, rm, rv, w, training=False, axis=axis, return_stats=True)
    dx, _, _ = rn.batch_norm_backward(go, x, mean, rstd, w, training=False, axis=axis)
    bshape = [1] * len(shape)
    bshape[axis] = c
    np.testing.assert_allclose(dx, go * (w / np.sqrt(rv + 1e-5)).reshape(bshape), rtol=1e-12)


@given(st.sampled_from([(2, 4, 3), (1, 6, 2, 2), (3, 2, 5)]), st.booleans(), st.integers(0, 2**31))
@settings(max_examples=20, deadline=None)
def test_group_and_instance_norm_gradients(shape, affine, seed):
    rng = np.random.default_rng(seed)
    x, go = rng.standard_normal(shape), rng.standard_normal(shape)
    c = shape[1]
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    groups = 2 if c % 2 == 0 else 1
    _, mean, rstd = rn.group_norm(x, groups, w, b, return_stats=True)
    dx, dw, _ = rn.group_norm_backward(go, x, mean, rstd, w, num_groups=groups)
    loss = lambda: float((go * rn.group_norm(x, groups, w, b)).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "group_norm dx")
    if affine:
        check(dw, numeric_grad(loss, w), "group_norm dweight")
    _, mean, rstd = rn.instance_norm(x, None, None, w, b, return_stats=True)
    dx, dw, _ = rn.instance_norm_backward(go, x, mean, rstd, w)
    loss = lambda: float((go * rn.instance_norm(x, None, None, w, b)).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "instance_norm dx")


def test_sequence_batch_norm_backward(rng):
    layer = rn.nn.SequenceBatchNorm(3, max_steps=2, dtype=np.float64)
    x = rng.standard_normal((3, 4, 3))
    go = rng.standard_normal(x.shape)
    layer(x)
    dx = layer.backward(go)
    state = {k: v.copy() for k, v in layer.state_dict().items() if k not in layer.parameters()}

    def loss():
        layer.load_state_dict(state, strict=False)
        return float((go * layer(x)).sum())

    check(dx, numeric_grad(loss, x), "dx")
    check(layer.grad["weight"], numeric_grad(loss, layer.parameters()["weight"]), "dweight")
    with pytest.raises(ValueError, match="call the layer"):
        rn.nn.LayerNorm(3).backward(np.ones((1, 3)))
    with pytest.raises(TypeError, match="LocalResponseNorm has no backward"):
        rn.nn.LocalResponseNorm(3).backward(np.ones((1, 3, 2)))


def test_batch_norm_backward_channels_last_equals_channels_first(rng):
    """The column path (NHWC) and the row path (NCHW, 49 values per slice) agree."""
    x = rng.standard_normal((6, 5, 7, 7)) * 3 + 2
    go = rng.standard_normal(x.shape)
    w = rng.standard_normal(5)
    last = lambda a: np.ascontiguousarray(np.moveaxis(a, 1, -1))  # noqa: E731
    for training in (True, False):
        _, mean, rstd = rn.batch_norm(x, None, None, w, training=True, return_stats=True)
        first = rn.batch_norm_backward(go, x, mean, rstd, w, training=training)
        nhwc = rn.batch_norm_backward(last(go), last(x), mean, rstd, w, training=training, axis=-1)
        np.testing.assert_allclose(nhwc[0], last(first[0]), rtol=1e-11, atol=1e-12)
        np.testing.assert_allclose(nhwc[1], first[1], rtol=1e-11)
        np.testing.assert_allclose(nhwc[2], first[2], rtol=1e-11)
    xf = last(x).astype(np.float32)  # float32 through the grouped contiguous rows
    _, mean, rstd = rn.batch_norm(xf, training=True, axis=-1, return_stats=True)
    dx, _, db = rn.batch_norm_backward(last(go).astype(np.float32), xf, mean, rstd, axis=-1)
    assert dx.dtype == np.float32
    np.testing.assert_allclose(db, last(go).sum(axis=(0, 1, 2)), rtol=1e-5)
    np.testing.assert_allclose(dx.sum(axis=(0, 1, 2)), 0.0, atol=1e-3)  # dx of a batch norm sums to 0


@pytest.mark.parametrize(("case", "inputs", "expected"), golden_cases("local_response_norm"))
def test_lrn_matches_recorded_pytorch(rn, case, inputs, expected):
    kw = case["kwargs"]
    y = rn.local_response_norm(inputs["x"], kw["size"], alpha=kw["alpha"], beta=kw["beta"], k=kw["k"])
    np.testing.assert_allclose(y, expected["y"], rtol=case["tol"]["rtol"], atol=case["tol"]["atol"])


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


@pytest.mark.parametrize(("shape", "axis"), [((2, 3, 4, 5), 1), ((3, 4, 5, 3), -1), ((40, 3), -1)])
def test_batch_norm_running_var_correction_as_onnx_and_keras(rn, rng, shape, axis):
    """ONNX BatchNormalization in training mode (and Keras): the running variance moves towards the
    biased batch variance, with ONNX's momentum the weight of the old value."""
    x = rng.standard_normal(shape) * 3 + 1
    c = shape[axis]
    scale, bias = rng.standard_normal(c), rng.standard_normal(c)
    mean0, var0 = rng.standard_normal(c), rng.random(c) + 0.5
    onnx_momentum, eps = 0.9, 1e-5
    axes = tuple(d for d in range(x.ndim) if d != axis % x.ndim)
    batch_mean, batch_var = x.mean(axis=axes), x.var(axis=axes)
    want_y = bn_ref(x, batch_mean, batch_var, scale, bias, eps, axis)
    want_mean = mean0 * onnx_momentum + batch_mean * (1 - onnx_momentum)
    want_var = var0 * onnx_momentum + batch_var * (1 - onnx_momentum)
    rm, rv = mean0.copy(), var0.copy()
    y = rn.batch_norm(
        x, rm, rv, scale, bias, True, 1 - onnx_momentum, eps, axis=axis, running_var_correction=0
    )
    np.testing.assert_allclose(y, want_y, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(rm, want_mean, rtol=1e-13)
    np.testing.assert_allclose(rv, want_var, rtol=1e-13)
    # The default stays PyTorch's: towards the unbiased variance.
    rm, rv = mean0.copy(), var0.copy()
    rn.batch_norm(x, rm, rv, scale, bias, True, 1 - onnx_momentum, eps, axis=axis)
    n = x.size // c
    np.testing.assert_allclose(rv, var0 * onnx_momentum + batch_var * n / (n - 1) * (1 - onnx_momentum))


def test_batch_norm_layers_keep_their_running_var_correction(rng):
    x = rng.standard_normal((8, 3, 5))
    keras = rn.nn.BatchNorm(3, momentum=0.5, running_var_correction=0, dtype=np.float64)
    keras(x)
    want = 0.5 + 0.5 * x.var(axis=(0, 2))
    np.testing.assert_allclose(keras.state_dict()["running_var"], want, rtol=1e-13)
    state = {k: np.array(v) for k, v in keras.state_dict().items()}
    assert int(state["running_var_correction"]) == 0
    # Saving and loading round-trips the convention; a PyTorch-convention layer keeps PyTorch's keys.
    loaded = rn.nn.BatchNorm(3, dtype=np.float64)
    assert "running_var_correction" not in loaded.state_dict()
    loaded.load_state_dict(state)
    assert loaded.running_var_correction == 0
    torch_state = {k: v for k, v in state.items() if k != "running_var_correction"}
    keras.load_state_dict(torch_state)  # a PyTorch state dict: the layer keeps its convention
    assert keras.running_var_correction == 0
    seq = rn.nn.SequenceBatchNorm(3, max_steps=2, momentum=0.5, dtype=np.float64, running_var_correction=0)
    xs = rng.standard_normal((2, 8, 3))
    seq(xs)
    np.testing.assert_allclose(seq.state_dict()["running_var"][1], 0.5 + 0.5 * xs[1].var(axis=0), rtol=1e-13)
    with pytest.raises(ValueError, match=r"BatchNorm: running_var_correction must be an int >= 0.*got -1"):
        rn.nn.BatchNorm(3, running_var_correction=-1)
    with pytest.raises(ValueError, match=r"^batch_norm: running_var_correction must be >= 0 .*got -2"):
        rn.batch_norm(x, None, None, training=True, running_var_correction=-2)
