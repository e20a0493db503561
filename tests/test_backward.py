"""Backward passes: recorded PyTorch autograd values and central finite differences in float64."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rsnorm as rn
from conftest import golden_cases


def numeric_grad(loss, arr, h=1e-6):
    """Central differences of the scalar loss() with respect to every element of arr (in place)."""
    grad = np.zeros_like(arr)
    flat, gflat = arr.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + h
        up = loss()
        flat[i] = keep - h
        down = loss()
        flat[i] = keep
        gflat[i] = (up - down) / (2 * h)
    return grad


def check(analytic, numeric, name):
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7, err_msg=name)


# ----------------------------------------------------------------------- recorded PyTorch autograd


def _tol(case):
    return {"rtol": case["tol"]["rtol"], "atol": case["tol"]["atol"]}


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("layer_norm_backward"))
def test_layer_norm_backward_matches_autograd(rn, case, i, e):
    ns, eps = tuple(case["kwargs"]["normalized_shape"]), case["kwargs"]["eps"]
    _, mean, rstd = rn.layer_norm(i["x"], ns, i["weight"], i["bias"], eps=eps, return_stats=True)
    dx, dw, db = rn.layer_norm_backward(
        i["grad_out"], i["x"], mean, rstd, i["weight"], i["bias"], normalized_shape=ns
    )
    for got, key in ((dx, "dx"), (dw, "dweight"), (db, "dbias")):
        np.testing.assert_allclose(got, e[key], **_tol(case), err_msg=key)


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("rms_norm_backward"))
def test_rms_norm_backward_matches_autograd(rn, case, i, e):
    ns, eps = tuple(case["kwargs"]["normalized_shape"]), case["kwargs"]["eps"]
    _, rstd = rn.rms_norm(i["x"], ns, i["weight"], eps=eps, return_stats=True)
    dx, dw = rn.rms_norm_backward(i["grad_out"], i["x"], rstd, i["weight"], normalized_shape=ns)
    np.testing.assert_allclose(dx, e["dx"], **_tol(case))
    np.testing.assert_allclose(dw, e["dweight"], **_tol(case))


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


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("weight_norm_backward"))
def test_weight_norm_backward_matches_autograd(rn, case, i, e):
    dv, dg = rn.weight_norm_backward(i["grad_out"], i["v"], i["g"], dim=case["kwargs"]["dim"])
    np.testing.assert_allclose(dv, e["dv"], **_tol(case))
    np.testing.assert_allclose(dg, e["dg"], **_tol(case))
    assert dg.shape == i["g"].shape


@pytest.mark.parametrize(("case", "i", "e"), golden_cases("selu_backward"))
def test_selu_backward_matches_autograd(rn, case, i, e):
    np.testing.assert_allclose(rn.selu_backward(i["grad_out"], i["x"]), e["dx"], **_tol(case))


# ----------------------------------------------------------------------- finite differences


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


@given(
    # Fewer than 32 values after the channel run down columns; (2, 3, 40) with axis 1 runs by rows.
    st.sampled_from([(4, 3), (3, 2, 4), (2, 3, 2, 2), (2, 3, 40)]),
    st.sampled_from([1, -1]),
    st.booleans(),
    st.integers(0, 2**31),
)
@settings(max_examples=20, deadline=None)
def test_batch_norm_gradients_training_and_eval(rn, shape, axis, affine, seed):
    rng = np.random.default_rng(seed)
    x, go = rng.standard_normal(shape) + 0.5, rng.standard_normal(shape)
    c = shape[axis]
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    _, mean, rstd = rn.batch_norm(x, None, None, w, b, training=True, axis=axis, return_stats=True)
    dx, dw, db = rn.batch_norm_backward(go, x, mean, rstd, w, training=True, axis=axis)
    loss = lambda: float((go * rn.batch_norm(x, None, None, w, b, training=True, axis=axis)).sum())  # noqa: E731
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
    loss = lambda: float((go * rn.batch_norm(x, rm, rv, w, b, training=False, axis=axis)).sum())  # noqa: E731
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
    rng = np.random.default_rng(seed)
    x, go = rng.standard_normal(shape) * 3 + 0.5, rng.standard_normal(shape)
    c = shape[axis]
    w = rng.standard_normal(c) if affine else None
    b = rng.standard_normal(c) if affine else None
    rm = rng.standard_normal(c)

    def forward() -> np.ndarray:
        return rn.batch_norm(x, rm.copy(), None, w, b, training=training, axis=axis, mean_only=True)

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


def test_fused_add_backward(rn, rng):
    x, r, go = rng.standard_normal((3, 6)), rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    gs = rng.standard_normal((3, 6))
    w, b = rng.standard_normal(6), rng.standard_normal(6)
    _, s, mean, rstd = rn.add_layer_norm(x, r, w, b, return_stats=True)
    dx, dr, dw, db = rn.add_layer_norm_backward(go, s, mean, rstd, w, b, grad_residual_out=gs)
    loss = lambda: float(sum((g * o).sum() for g, o in zip((go, gs), rn.add_layer_norm(x, r, w, b))))  # noqa: E731
    check(dx, numeric_grad(loss, x), "add_layer_norm dx")
    check(dr, numeric_grad(loss, r), "add_layer_norm dresidual")
    check(dw, numeric_grad(loss, w), "add_layer_norm dweight")
    check(db, numeric_grad(loss, b), "add_layer_norm dbias")
    _, s, rstd = rn.add_rms_norm(x, r, w, 1e-6, return_stats=True)
    dx, dr, dw = rn.add_rms_norm_backward(go, s, rstd, w)
    loss = lambda: float((go * rn.add_rms_norm(x, r, w, 1e-6)[0]).sum())  # noqa: E731
    check(dx, numeric_grad(loss, x), "add_rms_norm dx")
    check(dw, numeric_grad(loss, w), "add_rms_norm dweight")


# ----------------------------------------------------------------------- layouts, dtypes, errors


def test_non_contiguous_inputs_match_contiguous(rng):
    x = rng.standard_normal((12, 8)).T  # (8, 12), strided
    go = rng.standard_normal((12, 8))[:, ::-1].T
    w, b = rng.standard_normal(12), rng.standard_normal(12)
    _, mean, rstd = rn.layer_norm(x, 12, w, b, return_stats=True)
    got = rn.layer_norm_backward(go, x, mean, rstd, w, b)
    want = rn.layer_norm_backward(np.ascontiguousarray(go), np.ascontiguousarray(x), mean, rstd, w, b)
    for a, e in zip(got, want):
        np.testing.assert_allclose(a, e, rtol=1e-14, atol=1e-14)


def test_float32_gradients_and_thread_independence(rng):
    x = (rng.standard_normal((256, 300)) + 50).astype(np.float32)
    go = rng.standard_normal((256, 300)).astype(np.float32)
    w, b = rng.standard_normal(300).astype(np.float32), rng.standard_normal(300).astype(np.float32)
    _, mean, rstd = rn.layer_norm(x, 300, w, b, return_stats=True)
    before = rn.get_num_threads()
    try:
        results = []
        for n in (1, 2, 5):
            rn.set_num_threads(n)
            results.append(rn.layer_norm_backward(go, x, mean, rstd, w, b))
    finally:
        rn.set_num_threads(before)
    for other in results[1:]:
        for a, e in zip(results[0], other):
            np.testing.assert_array_equal(a, e)
    dx, dw, db = results[0]
    assert dx.dtype == dw.dtype == db.dtype == np.float32
    x64 = x.astype(np.float64)
    xhat = (x64 - x64.mean(-1, keepdims=True)) / np.sqrt(x64.var(-1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(dw, (go * xhat).sum(0), rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(db, go.astype(np.float64).sum(0), rtol=1e-5, atol=1e-4)


def test_backward_errors(rng):
    x, go = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    _, mean, rstd = rn.layer_norm(x, return_stats=True)
    with pytest.raises(ValueError, match=r"grad_out has shape \(4, 6\), x has \(4, 5\)"):
        rn.layer_norm_backward(np.ones((4, 6)), x, mean, rstd)
    with pytest.raises(ValueError, match=r"mean has 3 values .* statistics from another shape"):
        rn.layer_norm_backward(go, x, mean[:3], rstd)
    with pytest.raises(ValueError, match="grad_out must have the dtype of x"):
        rn.layer_norm_backward(go.astype(np.float32), x, mean, rstd)
    with pytest.raises(TypeError, match="layer_norm_backward: x has dtype int64"):
        rn.layer_norm_backward(go, np.ones((4, 5), np.int64), mean, rstd)
    with pytest.raises(ValueError, match="rstd has 2 values"):
        rn.batch_norm_backward(go, x, np.zeros(5), np.ones(2))
    with pytest.raises(ValueError, match="num_groups=3"):
        rn.group_norm_backward(go[None], x[None], np.zeros(3), np.ones(3), num_groups=3)
    with pytest.raises(ValueError, match=r"g has 2 values"):
        rn.weight_norm_backward(go, x, np.ones(2))
    with pytest.raises(ValueError, match="cosine_linear_backward: grad_out has shape"):
        rn.cosine_linear_backward(go, x, np.ones((3, 5)))


# ----------------------------------------------------------------------- layers


@pytest.mark.parametrize(
    "make",
    [
        lambda: rn.nn.LayerNorm(6, dtype=np.float64),
        lambda: rn.nn.RMSNorm(6, eps=1e-6, dtype=np.float64),
        lambda: rn.nn.BatchNorm(6, dtype=np.float64),
        lambda: rn.nn.BatchNorm(6, mean_only=True, dtype=np.float64),
        lambda: rn.nn.GroupNorm(3, 6, dtype=np.float64),
        lambda: rn.nn.InstanceNorm(6, affine=True, dtype=np.float64),
        lambda: rn.nn.WeightNormLinear(6, 4, dtype=np.float64, seed=0),
        lambda: rn.nn.CosineLinear(6, 4, bias=True, dtype=np.float64, seed=0),
    ],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_backward_matches_finite_differences(rng, make, mode):
    layer = make()
    # Non-trivial parameters and running statistics.
    for arr in layer.parameters().values():
        arr[...] = rng.standard_normal(arr.shape) + 1
    if isinstance(layer, rn.nn.CosineLinear | rn.nn.WeightNormLinear):
        x = rng.standard_normal((5, 6))
    else:
        x = rng.standard_normal(
            (5, 6, 3) if not isinstance(layer, rn.nn.LayerNorm | rn.nn.RMSNorm) else (5, 3, 6)
        )
    layer(x)  # one training step moves the running statistics
    if mode == "eval":
        layer.eval()
    # A training forward moves the running statistics: loss() restores them (buffers only).
    state = {k: v.copy() for k, v in layer.state_dict().items() if k not in layer.parameters()}
    go = rng.standard_normal(layer(x).shape)
    dx = layer.backward(go)

    def loss():
        layer.load_state_dict(state, strict=False)
        return float((go * layer(x)).sum())

    check(dx, numeric_grad(loss, x), f"{type(layer).__name__} dx")
    assert set(layer.grad) == set(layer.parameters())
    for name, param in layer.parameters().items():
        grads_now = dict(layer.grad)
        check(grads_now[name], numeric_grad(loss, param), f"{type(layer).__name__} d{name}")


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
