"""``out=`` of the backward passes: a training loop writes each step's gradients into the same arrays.

A backward returning several arrays takes ``out`` as NumPy's functions with several outputs do: a tuple
with one entry per result, each an array or None. The results written there equal the fresh ones bit
for bit (strided, in place over grad_out or x, or overlapping an input), and every misuse is refused
before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pytest

import rsnorm as rn


class Case(NamedTuple):
    """A backward call: ``call(grad, x)`` with the rest fixed, the names of its results, the shape of
    each (None: x's), and which are computed (a parameter's gradient is not when it is None)."""

    name: str
    call: Callable[..., Any]
    results: tuple[str, ...]
    shapes: tuple[tuple[int, ...] | None, ...]
    shape: tuple[int, ...]


def _cases(dtype: Any) -> list[Case]:
    rng = np.random.default_rng(3)
    row, chan, wn = (6, 40), (4, 6, 10), (6, 12)
    w = rng.standard_normal(40).astype(dtype)
    b = rng.standard_normal(40).astype(dtype)
    cw = rng.standard_normal(6).astype(dtype)
    g = (rng.random(6) + 0.5).astype(dtype)

    # The fused adds' backward takes the sum's statistics, which the plain norm of x gives here.
    def layer(backward):
        def call(grad, x, **kw):
            _, mean, rstd = rn.layer_norm(x, 40, w, b, return_stats=True)
            return backward(grad, x, mean, rstd, w, b, **kw)

        return call

    def rms(backward):
        def call(grad, x, **kw):
            _, rstd = rn.rms_norm(x, 40, w, return_stats=True)
            return backward(grad, x, rstd, w, **kw)

        return call

    def channel(forward, backward, **extra):
        def call(grad, x, **kw):
            stats = forward(x)
            return backward(grad, x, stats[-2], stats[-1], cw, **extra, **kw)

        return call

    bn = channel(lambda x: rn.batch_norm(x, training=True, return_stats=True), rn.batch_norm_backward)
    bn_eval = channel(
        lambda x: rn.batch_norm(x, training=True, return_stats=True), rn.batch_norm_backward, training=False
    )
    gn = channel(lambda x: rn.group_norm(x, 3, return_stats=True), rn.group_norm_backward, num_groups=3)
    inn = channel(lambda x: rn.instance_norm(x, return_stats=True), rn.instance_norm_backward)
    param, cparam = (40,), (6,)
    return [
        Case(
            "layer_norm_backward",
            layer(rn.layer_norm_backward),
            ("dx", "dweight", "dbias"),
            (None, param, param),
            row,
        ),
        Case("rms_norm_backward", rms(rn.rms_norm_backward), ("dx", "dweight"), (None, param), row),
        Case(
            "add_layer_norm_backward",
            layer(rn.add_layer_norm_backward),
            ("dx", "dresidual", "dweight", "dbias"),
            (None, None, param, param),
            row,
        ),
        Case(
            "add_rms_norm_backward",
            rms(rn.add_rms_norm_backward),
            ("dx", "dresidual", "dweight"),
            (None, None, param),
            row,
        ),
        Case("batch_norm_backward", bn, ("dx", "dweight", "dbias"), (None, cparam, cparam), chan),
        Case("batch_norm_backward eval", bn_eval, ("dx", "dweight", "dbias"), (None, cparam, cparam), chan),
        Case("group_norm_backward", gn, ("dx", "dweight", "dbias"), (None, cparam, cparam), chan),
        Case("instance_norm_backward", inn, ("dx", "dweight", "dbias"), (None, cparam, cparam), chan),
        Case(
            "weight_norm_backward",
            lambda grad, v, **kw: rn.weight_norm_backward(grad, v, g, dim=0, **kw),
            ("dv", "dg"),
            (None, (6,)),
            wn,
        ),
    ]


def _single(dtype: Any) -> list[tuple[str, Callable[..., Any]]]:
    return [
        ("selu_backward", rn.selu_backward),
        ("l2_normalize_backward", rn.l2_normalize_backward),
        ("normalize_backward", lambda grad, x, **kw: rn.normalize_backward(grad, x, 1.0, 0, **kw)),
        ("softmax_backward", rn.softmax_backward),
    ]


DTYPES = [np.float32, np.float64]


def _inputs(case_shape: tuple[int, ...], dtype: Any, offset: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(case_shape) + offset).astype(dtype)
    grad = rng.standard_normal(case_shape).astype(dtype)
    return grad, x


def _equal(got: Any, want: Any) -> None:
    assert (got is None) == (want is None)
    if want is not None:
        assert got.dtype == want.dtype and got.shape == want.shape
        np.testing.assert_array_equal(got, want)


def _ids(cases: list[Any]) -> list[str]:
    return [c[0] for c in cases]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(len(_cases(np.float32))), ids=_ids(_cases(np.float32)))
def test_results_written_into_out_are_the_fresh_results(dtype, index):
    case = _cases(dtype)[index]
    grad, x = _inputs(case.shape, dtype, offset=1e3)
    want = case.call(grad, x)
    shapes = [x.shape if s is None else s for s in case.shapes]
    # Strided outputs (every other element of a wider array): written through their strides.
    wide = [np.full((*s[:-1], 2 * s[-1]), 7.0, dtype) for s in shapes]
    out = [w[..., ::2] for w in wide]
    if case.name.startswith("add_"):
        out[1] = out[0]  # dx and dresidual are one array
    got = case.call(grad, x, out=tuple(out))
    assert all(g is o for g, o in zip(got, out, strict=True))
    for g, e in zip(got, want, strict=True):
        _equal(g, e)
    # The elements between the strided ones are untouched.
    for w in wide:
        assert (w[..., 1::2] == 7.0).all()
    # None entries are fresh arrays; the others are still written.
    some = tuple(o if i == len(out) - 1 else None for i, o in enumerate(out))
    got = case.call(grad, x, out=some)
    assert got[-1] is out[-1] and got[0] is not out[0]
    for g, e in zip(got, want, strict=True):
        _equal(g, e)


@pytest.mark.parametrize("into", ["grad", "x"])
@pytest.mark.parametrize("index", range(len(_cases(np.float32))), ids=_ids(_cases(np.float32)))
def test_dx_may_be_grad_out_or_x(index, into):
    """In place: the gradient written over an input it is computed from, as a loop reusing its
    gradient buffer does."""
    case = _cases(np.float64)[index]
    grad, x = _inputs(case.shape, np.float64)
    want = case.call(grad, x)
    target = grad.copy() if into == "grad" else x.copy()
    args = (target, x) if into == "grad" else (grad, target)
    out = (target,) + (None,) * (len(case.results) - 1)
    got = case.call(*args, out=out)
    assert got[0] is target
    for g, e in zip(got, want, strict=True):
        _equal(g, e)


@pytest.mark.parametrize("index", range(len(_cases(np.float32))), ids=_ids(_cases(np.float32)))
def test_dx_overlapping_an_input_is_computed_from_the_input_before(index):
    """dx over grad_out shifted by one row: the input is read as it was, not as dx overwrites it."""
    case = _cases(np.float64)[index]
    grad, x = _inputs(case.shape, np.float64)
    want = case.call(grad, x)
    buffer = np.concatenate([grad, grad[:1]])
    shifted = buffer[:-1]
    got = case.call(shifted, x, out=(buffer[1:],) + (None,) * (len(case.results) - 1))
    for g, e in zip(got, want, strict=True):
        _equal(g, e)


@pytest.mark.parametrize("index", range(len(_cases(np.float32))), ids=_ids(_cases(np.float32)))
def test_misused_out_is_refused_before_anything_is_written(index):
    case = _cases(np.float32)[index]
    grad, x = _inputs(case.shape, np.float32)
    name = case.name.split()[0]
    n = len(case.results)
    dx = np.zeros_like(x)
    first = case.results[0]
    with pytest.raises(TypeError, match=rf"{name}: out must be a tuple of {n} arrays or None \({first}, "):
        case.call(grad, x, out=dx)
    with pytest.raises(ValueError, match=rf"{name}: out has {n - 1} entries, expected {n}"):
        case.call(grad, x, out=(dx,) * (n - 1))
    with pytest.raises(ValueError, match=rf"{name}: out\[0\] has shape \(1, 2\), expected"):
        case.call(grad, x, out=(np.zeros((1, 2), np.float32),) + (None,) * (n - 1))
    with pytest.raises(ValueError, match=rf"{name}: out\[0\] has dtype float64, expected float32"):
        case.call(grad, x, out=(np.zeros(x.shape),) + (None,) * (n - 1))
    last = case.shapes[-1]
    assert last is not None
    locked = np.zeros(last, np.float32)
    locked.flags.writeable = False
    with pytest.raises(ValueError, match=rf"{name}: out\[{n - 1}\] is read-only"):
        case.call(grad, x, out=(dx,) + (None,) * (n - 2) + (locked,))
    assert not dx.any()  # dx was checked with the rest, and left as it was


def test_a_gradient_not_computed_takes_no_out_entry():
    x = np.random.default_rng(0).standard_normal((3, 8)).astype(np.float32)
    _, mean, rstd = rn.layer_norm(x, return_stats=True)
    dw = np.zeros(8, np.float32)
    with pytest.raises(
        ValueError,
        match=r"layer_norm_backward: out\[1\] is given, but that gradient is not computed \(weight is None\)",
    ):
        rn.layer_norm_backward(x, x, mean, rstd, out=(None, dw, None))
    with pytest.raises(ValueError, match=r"batch_norm_backward: out\[1\] is given.*\(weight is None\)"):
        c = x.reshape(3, 8, 1)
        _, m, r = rn.batch_norm(c, training=True, return_stats=True)
        rn.batch_norm_backward(c, c, m, r, out=(None, dw, None))


def test_fused_add_backward_takes_dx_in_either_entry_but_one_array():
    rng = np.random.default_rng(1)
    x, grad = (rng.standard_normal((4, 16)) for _ in range(2))
    _, rstd = rn.rms_norm(x, return_stats=True)
    want = rn.add_rms_norm_backward(grad, x, rstd)
    dx = np.empty_like(x)
    got = rn.add_rms_norm_backward(grad, x, rstd, out=(None, dx, None))
    assert got[0] is dx and got[1] is dx
    np.testing.assert_array_equal(dx, want[0])
    with pytest.raises(
        ValueError, match=r"add_rms_norm_backward: out\[0\] and out\[1\] are different arrays"
    ):
        rn.add_rms_norm_backward(grad, x, rstd, out=(np.empty_like(x), dx, None))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("index", range(4), ids=_ids(_single(np.float32)))
def test_single_result_backward_writes_out_and_runs_in_place(dtype, index):
    name, call = _single(dtype)[index]
    grad, x = _inputs((5, 24), dtype)
    x = np.abs(x) + 0.1 if name == "softmax_backward" else x
    want = call(grad, x)
    out = np.empty_like(x)
    assert call(grad, x, out=out) is out
    _equal(out, want)
    for into in ("grad", "x"):
        target = grad.copy() if into == "grad" else x.copy()
        args = (target, x) if into == "grad" else (grad, target)
        assert call(*args, out=target) is target
        _equal(target, want)
    with pytest.raises(ValueError, match=rf"{name}: out has shape \(5, 23\), expected \(5, 24\)"):
        call(grad, x, out=out[:, 1:])
    locked = np.empty_like(x)
    locked.flags.writeable = False
    with pytest.raises(ValueError, match=rf"{name}: out is read-only"):
        call(grad, x, out=locked)
