"""Class weights in cross-entropy and NLL loss, against float64 references written from PyTorch's
documented formulas (``F.cross_entropy`` with ``weight``/``label_smoothing``, ``F.nll_loss``)."""

from __future__ import annotations

import numpy as np
import pytest

import rsnorm


def log_softmax64(x, axis):
    x = np.asarray(x, np.float64)
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def ce_ref(logits, target, weight=None, axis=-1, reduction="mean", eps=0.0, ignore=-100):
    lp = np.moveaxis(log_softmax64(logits, axis), axis, -1)
    classes = lp.shape[-1]
    w = np.ones(classes) if weight is None else np.asarray(weight, np.float64)
    if np.asarray(target).dtype.kind in "iu":
        t = np.asarray(target).astype(np.int64)
        keep = t != ignore
        safe = np.where(keep, t, 0)
        picked = np.take_along_axis(lp, safe[..., None], -1)[..., 0]
        loss = (1 - eps) * -w[safe] * picked + eps / classes * -(lp * w).sum(-1)
        loss = np.where(keep, loss, 0.0)
        denominator = w[safe][keep].sum()
    else:
        s = np.moveaxis(np.asarray(target, np.float64), axis, -1) * (1 - eps) + eps / classes
        loss = -(lp * s * w).sum(-1)
        denominator = loss.size
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / denominator}[reduction]


def nll_ref(log_probs, target, weight=None, axis=-1, reduction="mean", ignore=-100):
    lp = np.moveaxis(np.asarray(log_probs, np.float64), axis, -1)
    w = np.ones(lp.shape[-1]) if weight is None else np.asarray(weight, np.float64)
    t = np.asarray(target).astype(np.int64)
    keep = t != ignore
    safe = np.where(keep, t, 0)
    loss = np.where(keep, -w[safe] * np.take_along_axis(lp, safe[..., None], -1)[..., 0], 0.0)
    return {"none": loss, "sum": loss.sum(), "mean": loss.sum() / w[safe][keep].sum()}[reduction]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_class_weights_scale_each_class_as_pytorch(rn, rng, reduction, eps, dtype):
    logits = (rng.standard_normal((6, 5, 3)) * 3).astype(dtype)  # (N, C, d): classes on axis 1
    target = rng.integers(0, 5, (6, 3))
    target[1, 2] = -100
    weight = rng.uniform(0.2, 2.0, 5)
    tol = 1e-12 if dtype == np.float64 else 2e-6
    kw = {"axis": 1, "reduction": reduction, "label_smoothing": eps}
    got = rn.cross_entropy_with_logits(logits, target, weight=weight, **kw)
    want = ce_ref(logits, target, weight, 1, reduction, eps)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)
    probs = rsnorm.softmax(rng.standard_normal((6, 5, 3)), axis=1).astype(dtype)
    got = rn.cross_entropy_with_logits(logits, probs, weight=weight, **kw)
    np.testing.assert_allclose(got, ce_ref(logits, probs, weight, 1, reduction, eps), rtol=tol, atol=tol)
    # weights of ones are no weights
    ones = rn.cross_entropy_with_logits(logits, target, weight=np.ones(5), **kw)
    np.testing.assert_allclose(ones, rn.cross_entropy_with_logits(logits, target, **kw), rtol=tol, atol=tol)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("weighted", [False, True])
def test_nll_loss_equals_pytorchs_definition(rn, rng, reduction, weighted):
    log_probs = log_softmax64(rng.standard_normal((4, 7, 2, 3)), 1).astype(np.float32)  # (N, C, d1, d2)
    target = rng.integers(0, 7, (4, 2, 3))
    target[0, 0, 0] = 3  # ignored below
    weight = rng.uniform(0.1, 3.0, 7) if weighted else None
    got = rn.nll_loss(log_probs, target, weight, axis=1, reduction=reduction, ignore_index=3)
    want = nll_ref(log_probs, target, weight, 1, reduction, ignore=3)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
    assert np.asarray(got).dtype == np.float32
    # classes last, float64, strided log-probabilities
    lp = log_softmax64(rng.standard_normal((9, 11)), -1)[::2]
    t = rng.integers(0, 11, 5)
    np.testing.assert_allclose(
        rn.nll_loss(lp, t, reduction=reduction), nll_ref(lp, t, reduction=reduction), rtol=1e-14
    )
    # rows enough for the loads issued ahead of the row being read, ignored targets among them
    lp = log_softmax64(rng.standard_normal((300, 11)), -1)
    t = rng.integers(0, 11, 300)
    t[[0, 17, 40, 299]] = -100
    w = rng.uniform(0.1, 3.0, 11) if weighted else None
    got = rn.nll_loss(lp, t, w, reduction=reduction)
    np.testing.assert_allclose(got, nll_ref(lp, t, w, reduction=reduction), rtol=1e-14)


def test_class_weights_of_every_layout_and_dtype_give_the_same_loss(rng):
    """A float64 or float32 weight vector is read directly, any other through NumPy: a strided,
    read-only, byte-swapped, integer or list weight gives the loss of its float64 copy, bit for
    bit (float32 and integers convert to float64 exactly)."""
    lp = log_softmax64(rng.standard_normal((300, 6)), -1).astype(np.float32)
    t = rng.integers(0, 6, 300)
    t[[3, 200]] = -100
    base = np.array([0.5, 1.25, 2.0, 0.75, 3.0, 1.5])
    frozen = base.copy()
    frozen.flags.writeable = False
    layouts = {
        "float32": base.astype(np.float32),
        "strided": np.repeat(base, 2)[::2],
        "float32 strided": np.repeat(base, 2).astype(np.float32)[::2],
        "read-only": frozen,
        "byte-swapped": base.astype(">f8"),
        "int": np.array([1, 2, 3, 1, 2, 3]),
        "list": base.tolist(),
    }
    for reduction in ("mean", "sum", "none"):
        want = np.asarray(rsnorm.nll_loss(lp, t, base, reduction=reduction))
        np.testing.assert_allclose(want, nll_ref(lp, t, base, reduction=reduction), rtol=1e-6)
        for name, weight in layouts.items():
            expected = (
                want
                if name != "int"
                else rsnorm.nll_loss(lp, t, np.array([1.0, 2, 3, 1, 2, 3]), reduction=reduction)
            )
            got = rsnorm.nll_loss(lp, t, weight, reduction=reduction)
            assert np.asarray(got).tobytes() == np.asarray(expected).tobytes(), (name, reduction)
            got = rsnorm.cross_entropy_with_logits(lp, t, weight=weight, reduction=reduction)
            want_ce = rsnorm.cross_entropy_with_logits(
                lp, t, weight=np.asarray(weight, dtype=np.float64), reduction=reduction
            )
            assert np.asarray(got).tobytes() == np.asarray(want_ce).tobytes(), (name, reduction)
    # Every target ignored: the weighted mean is 0 / 0, as PyTorch's.
    assert np.isnan(rsnorm.nll_loss(lp[:2], np.array([-100, -100]), base))
    with pytest.raises(ValueError, match="nll_loss: weight has 5 values for 6 classes"):
        rsnorm.nll_loss(lp, t, base[:5].astype(np.float32))


@pytest.mark.parametrize(
    "dtype", [np.int8, np.uint8, np.int16, np.uint16, np.int32, np.uint32, np.int64, np.uint64]
)
def test_class_indices_of_every_integer_dtype(rng, dtype):
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, 2, 3], dtype=dtype)
    want = ce_ref(logits, target.astype(np.int64))
    np.testing.assert_allclose(rsnorm.cross_entropy_with_logits(logits, target), want, rtol=1e-14)
    lp = log_softmax64(logits, -1)
    np.testing.assert_allclose(rsnorm.nll_loss(lp, target), nll_ref(lp, target.astype(np.int64)), rtol=1e-14)


def test_loss_errors_name_the_function_argument_and_value(rng):
    logits = rng.standard_normal((3, 4))
    with pytest.raises(ValueError, match="cross_entropy_with_logits: target 4 is out of range for 4 classes"):
        rsnorm.cross_entropy_with_logits(logits, np.array([0, 4, 1]))
    huge = np.array([0, 2**64 - 1, 1], dtype=np.uint64)
    with pytest.raises(
        ValueError, match="nll_loss: target 18446744073709551615 is out of range for 4 classes"
    ):
        rsnorm.nll_loss(logits, huge)
    with pytest.raises(
        ValueError, match="cross_entropy_with_logits: target 18446744073709551615 is out of range"
    ):
        rsnorm.cross_entropy_with_logits(logits, huge)
    with pytest.raises(ValueError, match="nll_loss: target -2 is out of range for 4 classes"):
        rsnorm.nll_loss(logits, np.array([0, -2, 1]))
    with pytest.raises(ValueError, match="weight has 3 values for 4 classes"):
        rsnorm.cross_entropy_with_logits(logits, np.array([0, 1, 2]), weight=np.ones(3))
    with pytest.raises(ValueError, match="nll_loss: weight has 5 values for 4 classes"):
        rsnorm.nll_loss(logits, np.array([0, 1, 2]), np.ones(5))
    with pytest.raises(TypeError, match="nll_loss: target has dtype float64; expected class indices"):
        rsnorm.nll_loss(logits, np.zeros(3))
    with pytest.raises(ValueError, match=r"nll_loss: target has shape \(2,\), expected \(3,\)"):
        rsnorm.nll_loss(logits, np.array([0, 1]))
    with pytest.raises(ValueError, match=r"nll_loss.*reduction must be 'none', 'mean' or 'sum', got 'avg'"):
        rsnorm.nll_loss(logits, np.array([0, 1, 2]), reduction="avg")
    with pytest.raises(TypeError, match="nll_loss: log_probs has dtype int64"):
        rsnorm.nll_loss(np.zeros((3, 4), np.int64), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="nll_loss: axis 2 is out of range"):
        rsnorm.nll_loss(logits, np.array([0, 1, 2]), axis=2)
    with pytest.raises(TypeError, match="nll_loss: weight has dtype <U1"):
        rsnorm.nll_loss(logits, np.array([0, 1, 2]), np.array(["a"] * 4))


def test_all_targets_ignored_and_empty_batches(rng):
    lp = log_softmax64(rng.standard_normal((3, 4)), -1)
    assert np.isnan(rsnorm.nll_loss(lp, np.full(3, -100)))
    np.testing.assert_array_equal(rsnorm.nll_loss(lp, np.full(3, -100), reduction="none"), 0.0)
    assert rsnorm.nll_loss(np.zeros((0, 4)), np.zeros(0, np.int64), reduction="sum") == 0.0
    nan_row = lp.copy()
    nan_row[1, 2] = np.nan
    got = rsnorm.nll_loss(nan_row, np.array([0, 2, 1]), reduction="none")
    assert np.isnan(got[1]) and np.isfinite(got[[0, 2]]).all()
    # A class axis without classes: every target must be ignored, and nothing is read.
    assert np.isnan(rsnorm.nll_loss(np.zeros((3, 0)), np.full(3, -100)))
    np.testing.assert_array_equal(
        rsnorm.nll_loss(np.zeros((3, 0)), np.full(3, -7), ignore_index=-7, reduction="none"), 0.0
    )
    with pytest.raises(ValueError, match="nll_loss: target 0 is out of range for 0 classes"):
        rsnorm.nll_loss(np.zeros((3, 0)), np.array([-100, 0, -100]))


@pytest.mark.parametrize("weighted", [False, True])
def test_ignored_rows_leave_no_trace_in_nll_loss(rng, weighted):
    """An ignored row's values never reach the loss: NaN and inf in every class of those rows
    (the rows of a batch beyond the prefetch distance, and within it) change nothing."""
    lp = log_softmax64(rng.standard_normal((40, 9)), -1).astype(np.float32)
    t = rng.integers(0, 9, 40)
    ignored = [0, 5, 20, 33, 39]
    t[ignored] = -100
    w = rng.uniform(0.1, 3.0, 9) if weighted else None
    poisoned = lp.copy()
    poisoned[ignored] = np.nan
    poisoned[ignored[::2], 0] = np.inf
    for reduction in ("mean", "sum", "none"):
        want = rsnorm.nll_loss(lp, t, w, reduction=reduction)
        got = rsnorm.nll_loss(poisoned, t, w, reduction=reduction)
        assert np.asarray(got).tobytes() == np.asarray(want).tobytes(), reduction
        np.testing.assert_allclose(got, nll_ref(lp, t, w, reduction=reduction), rtol=1e-6)


def test_int64_targets_of_every_layout_give_the_same_loss(rng):
    """A C-contiguous target is read as one slice, any other through ndarray's iterator or
    NumPy's cast: strided, Fortran-ordered, read-only and byte-swapped targets give the bits of a
    contiguous copy."""
    lp = log_softmax64(rng.standard_normal((6, 5, 4)), 1)
    target = rng.integers(0, 5, (6, 4))
    target[2, 1] = -100
    frozen = target.copy()
    frozen.flags.writeable = False
    layouts = {
        "strided": np.repeat(target, 2, axis=1)[:, ::2],
        "fortran": np.asfortranarray(target),
        "read-only": frozen,
        "byte-swapped": target.astype(">i8"),
    }
    w = rng.uniform(0.1, 3.0, 5)
    for reduction in ("mean", "sum", "none"):
        want = np.asarray(rsnorm.nll_loss(lp, target, w, axis=1, reduction=reduction))
        np.testing.assert_allclose(want, nll_ref(lp, target, w, 1, reduction), rtol=1e-14)
        want_ce = np.asarray(rsnorm.cross_entropy_with_logits(lp, target, axis=1, reduction=reduction))
        for name, t in layouts.items():
            got = rsnorm.nll_loss(lp, t, w, axis=1, reduction=reduction)
            assert np.asarray(got).tobytes() == want.tobytes(), (name, reduction)
            got = rsnorm.cross_entropy_with_logits(lp, t, axis=1, reduction=reduction)
            assert np.asarray(got).tobytes() == want_ce.tobytes(), (name, reduction)


def _onnx_cases():
    import json
    from pathlib import Path

    data = np.load(Path(__file__).parent / "data" / "onnx_losses.npz")
    for case in json.loads(str(data["index"])):
        yield pytest.param(
            case, {k: data[k] for k in data.files if k.startswith(case["key"] + "/")}, id=case["key"]
        )


@pytest.mark.parametrize("case,arrays", list(_onnx_cases()))
def test_onnx_backend_node_cases(rn, case, arrays):
    """The ONNX backend node tests of NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss
    (recorded by tools/record_onnx_cases.py): classes on axis 1, weights, ignore_index, reductions."""
    key, attrs = case["key"], case["attrs"]
    inputs = [arrays[f"{key}/in{i}"] for i in range(case["inputs"])]
    weight = inputs[2] if len(inputs) > 2 else None
    kw = {
        "axis": 1,
        "reduction": attrs.get("reduction", "mean"),
        "ignore_index": attrs.get("ignore_index", -100),
    }
    if case["op"] == "NegativeLogLikelihoodLoss":
        got = rn.nll_loss(inputs[0], inputs[1], weight, **kw)
    else:
        got = rn.cross_entropy_with_logits(inputs[0], inputs[1], weight=weight, **kw)
    want = arrays[f"{key}/out0"]
    assert np.shape(got) == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def ce_grad_ref(grad_out, logits, target, weight=None, axis=-1, reduction="mean", eps=0.0, ignore=-100):
    """The gradient of ``ce_ref`` with respect to the logits, in float64: per sample p·Σw·q − w·q with
    p = softmax(logits) and q the smoothed target (one-hot for class indices), scaled by the loss's
    gradient (the mean's divided by its denominator); ignored samples 0."""
    x = np.moveaxis(np.asarray(logits, np.float64), axis, -1)
    classes = x.shape[-1]
    p = np.exp(log_softmax64(x, -1))
    w = np.ones(classes) if weight is None else np.asarray(weight, np.float64)
    if np.asarray(target).dtype.kind in "iu":
        t = np.asarray(target).astype(np.int64)
        keep = t != ignore
        safe = np.where(keep, t, 0)
        q = (1 - eps) * np.eye(classes)[safe] + eps / classes
        denominator = w[safe][keep].sum()
    else:
        q = (1 - eps) * np.moveaxis(np.asarray(target, np.float64), axis, -1) + eps / classes
        keep = np.ones(x.shape[:-1], bool)
        denominator = keep.size
    grad = p * (w * q).sum(-1, keepdims=True) - w * q
    g = np.asarray(grad_out, np.float64)
    scale = {"none": g, "sum": g, "mean": g / denominator}[reduction]
    grad = np.where(keep[..., None], grad * np.broadcast_to(scale, keep.shape)[..., None], 0.0)
    return np.moveaxis(grad, -1, axis)


def test_the_gradient_reference_is_the_losss_derivative(rng):
    """Central differences of the float64 loss reference confirm the gradient reference the tests
    below compare with, for each target kind, weights and smoothing."""
    logits = rng.standard_normal((3, 5, 2)) * 2
    weight = rng.uniform(0.2, 2.0, 5)
    targets = [np.array([[1, -100], [4, 0], [2, 2]]), rsnorm.softmax(rng.standard_normal((3, 5, 2)), axis=1)]
    for target in targets:
        kw = {"weight": weight, "axis": 1, "eps": 0.3}
        want = ce_grad_ref(1.0, logits, target, **kw)
        numeric = np.zeros_like(logits)
        for i in np.ndindex(logits.shape):
            step = np.zeros_like(logits)
            step[i] = 1e-6
            numeric[i] = (ce_ref(logits + step, target, **kw) - ce_ref(logits - step, target, **kw)) / 2e-6
        np.testing.assert_allclose(want, numeric, atol=1e-8)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("eps", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_cross_entropy_backward_is_the_gradient_of_the_loss(rn, rng, reduction, eps, weighted, dtype):
    # 1e4-offset logits of 7 classes (not a multiple of any vector width) on axis 1 of (N, C, d).
    logits = (rng.standard_normal((6, 7, 3)) * 3 + 1e4).astype(dtype)
    target = rng.integers(0, 7, (6, 3))
    target[1, 2] = -100
    probs = rsnorm.softmax(rng.standard_normal((6, 7, 3)), axis=1).astype(dtype)
    weight = rng.uniform(0.2, 2.0, 7) if weighted else None
    grad_out = rng.standard_normal((6, 3)) if reduction == "none" else np.float64(1.7)
    tol = 1e-12 if dtype == np.float64 else 1e-6
    kw = {"weight": weight, "axis": 1, "reduction": reduction, "label_smoothing": eps}
    for t in (target, probs):
        got = rn.cross_entropy_with_logits_backward(grad_out, logits, t, **kw)
        assert got.dtype == dtype and got.shape == logits.shape
        want = ce_grad_ref(grad_out, logits, t, weight, 1, reduction, eps)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())
        # the loss of these offset logits, too (smoothing once lost 2e-4 to the offset on the CPU)
        loss = rn.cross_entropy_with_logits(logits, t, **kw)
        want_loss = ce_ref(logits, t, weight, 1, reduction, eps)
        np.testing.assert_allclose(loss, want_loss, rtol=tol * 10, atol=tol * 10)


def test_cross_entropy_backward_classes_last_and_ignored_rows(rn, rng):
    logits = rng.standard_normal((40, 10)).astype(np.float32)
    target = rng.integers(0, 10, 40).astype(np.uint8)
    target[::3] = 255
    got = rn.cross_entropy_with_logits_backward(1.0, logits, target, ignore_index=255)
    np.testing.assert_allclose(got, ce_grad_ref(1.0, logits, target, ignore=255), rtol=0, atol=1e-7)
    assert not got[::3].any()
    every = rn.cross_entropy_with_logits_backward(1.0, logits, np.full(40, 255, np.uint8), ignore_index=255)
    assert not every.any()  # nothing to average: no gradient (as PyTorch's)


def test_cross_entropy_backward_grad_out_of_every_kind_gives_the_same_bits(rng):
    """A Python float is taken as the 0-d value it is (NumPy's float64 scalar is one too); any
    other number or 0-d array goes through NumPy: every kind gives the same gradient."""
    logits = rng.standard_normal((7, 5)).astype(np.float32)
    target = rng.integers(0, 5, 7)
    want = rsnorm.cross_entropy_with_logits_backward(np.array(2.5), logits, target)
    np.testing.assert_allclose(want, ce_grad_ref(2.5, logits, target), rtol=1e-5, atol=1e-7)
    for grad_out in (2.5, np.float64(2.5), np.float32(2.5), np.array(2.5, np.float32)):
        got = rsnorm.cross_entropy_with_logits_backward(grad_out, logits, target)
        np.testing.assert_array_equal(got, want, err_msg=repr(grad_out))
    doubled = rsnorm.cross_entropy_with_logits_backward(5, logits, target, reduction="sum")
    np.testing.assert_array_equal(
        doubled, rsnorm.cross_entropy_with_logits_backward(5.0, logits, target, reduction="sum")
    )


def test_cross_entropy_backward_out_nan_and_errors(rng):
    logits = rng.standard_normal((5, 4))
    target = np.array([0, 3, 1, 2, 0])
    out = np.empty_like(logits)
    assert rsnorm.cross_entropy_with_logits_backward(1.0, logits, target, out=out) is out
    np.testing.assert_allclose(out, ce_grad_ref(1.0, logits, target), rtol=1e-13, atol=1e-15)
    inplace = logits.copy()
    rsnorm.cross_entropy_with_logits_backward(1.0, inplace, target, out=inplace)
    np.testing.assert_allclose(inplace, out, rtol=1e-13, atol=1e-15)
    bad = logits.copy()
    bad[2, 1] = np.nan
    got = rsnorm.cross_entropy_with_logits_backward(np.ones(5), bad, target, reduction="none")
    assert np.isnan(got[2]).all() and np.isfinite(np.delete(got, 2, axis=0)).all()
    name = "cross_entropy_with_logits_backward"
    with pytest.raises(
        ValueError, match=rf"{name}: grad_out has shape \(5,\), the loss \(reduction 'mean'\)"
    ):
        rsnorm.cross_entropy_with_logits_backward(np.ones(5), logits, target)
    with pytest.raises(
        ValueError, match=rf"{name}: grad_out has shape \(\), the loss \(reduction 'none'\) has \(5,\)"
    ):
        rsnorm.cross_entropy_with_logits_backward(1.0, logits, target, reduction="none")
    with pytest.raises(ValueError, match=rf"{name}: target 4 is out of range for 4 classes"):
        rsnorm.cross_entropy_with_logits_backward(1.0, logits, np.array([0, 4, 1, 2, 0]))
    with pytest.raises(ValueError, match=rf"{name}: label_smoothing must be in \[0, 1\], got -0.5"):
        rsnorm.cross_entropy_with_logits_backward(1.0, logits, target, label_smoothing=-0.5)
    with pytest.raises(ValueError, match=rf"{name}: weight has 3 values for 4 classes"):
        rsnorm.cross_entropy_with_logits_backward(1.0, logits, target, weight=np.ones(3))
    with pytest.raises(ValueError, match=rf"{name}: probability target has shape \(5, 3\)"):
        rsnorm.cross_entropy_with_logits_backward(1.0, logits, np.ones((5, 3)))
    with pytest.raises(ValueError, match=rf"{name}: reduction must be"):
        rsnorm.cross_entropy_with_logits_backward(1.0, logits, target, reduction="avg")
    with pytest.raises(TypeError, match=rf"{name}: grad_out has dtype"):
        rsnorm.cross_entropy_with_logits_backward("x", logits, target)
    with pytest.raises(ValueError, match=rf"{name}: out has shape"):
        rsnorm.cross_entropy_with_logits_backward(1.0, logits, target, out=np.empty((4, 5)))
