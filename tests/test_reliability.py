"""Regression tests for the defects a hostile-user campaign found (issue "Reliability"): hangs,
deadlocks, silent wrong answers, panics and wrong exception types. Each test failed before its fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import rsnorm as rn
from rsnorm import optim


def run_python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter; a hang fails the test instead of stalling the suite."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
    )


# 1. Wasserstein of NaN/inf: an endless loop with the GIL released.
@pytest.mark.parametrize(
    ("u", "v", "expected"),
    [
        ([1.0, np.nan], [0.5], np.nan),
        ([np.nan], [np.nan], np.nan),
        ([1.0, np.inf], [0.5], np.inf),
        ([1.0, 2.0], [-np.inf], np.inf),
        ([1.0, np.inf], [np.inf], np.nan),  # inf − inf between the two infinities, as SciPy
        ([-np.inf, 0.0], [-np.inf], np.nan),
    ],
)
def test_wasserstein_non_finite_returns_like_scipy(u, v, expected):
    # repr writes NaN and infinities as nan and inf: name them in the child.
    code = f"import rsnorm; nan, inf = float('nan'), float('inf'); print(rsnorm.wasserstein_1d({u!r}, {v!r}))"
    out = run_python(code, timeout=30)
    assert out.returncode == 0, out.stderr
    got = float(out.stdout)
    np.testing.assert_equal(got, expected)
    scipy_stats = pytest.importorskip("scipy.stats")
    with np.errstate(invalid="ignore"):
        np.testing.assert_equal(got, scipy_stats.wasserstein_distance(u, v))


# 2. Fork while another thread is inside rsnorm or set_num_threads.
FORK_STRESS = """
import os, sys, threading, time
import numpy as np, rsnorm
x = np.random.default_rng(0).standard_normal((256, 1024)).astype(np.float32)
expected = rsnorm.layer_norm(x)
stop = False
def busy():
    while not stop:
        rsnorm.set_num_threads(2)
        rsnorm.layer_norm(x)
        rsnorm.wasserstein_1d(x[0], x[1])
threading.Thread(target=busy, daemon=True).start()
hung = wrong = 0
for _ in range(FORKS):
    pid = os.fork()
    if pid == 0:
        ok = (rsnorm.layer_norm(x) == expected).all() and rsnorm.wasserstein_1d(x[0], x[1]) >= 0
        os._exit(0 if ok else 3)
    deadline = time.monotonic() + 10
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            wrong += os.waitstatus_to_exitcode(status) != 0
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            hung += 1
            break
        time.sleep(0.001)
stop = True
print(hung, wrong)
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs fork")
def test_fork_while_another_thread_is_inside_rsnorm_never_hangs():
    out = run_python(FORK_STRESS.replace("FORKS", "300"), timeout=600)
    assert out.returncode == 0, out.stderr
    hung, wrong = map(int, out.stdout.split())
    assert (hung, wrong) == (0, 0)


# 3. out= sharing memory with a parameter or a running statistic.
def test_out_overlapping_weight_gives_the_result_of_a_copy(rng):
    x = rng.standard_normal((8, 4)).astype(np.float32)
    buf = np.zeros(36, np.float32)
    weight, out = buf[:4], buf[:32].reshape(8, 4)
    weight[:] = [2, 3, 4, 5]
    expected = rn.layer_norm(x, 4, weight.copy(), weight.copy() + 1)
    np.testing.assert_array_equal(rn.layer_norm(x, 4, weight, weight + 1, out=out), expected)
    weight[:] = [2, 3, 4, 5]
    expected = rn.rms_norm(x, 4, weight.copy())
    np.testing.assert_array_equal(rn.rms_norm(x, 4, weight, out=out), expected)
    weight[:] = [2, 3, 4, 5]
    r = rng.standard_normal((8, 4)).astype(np.float32)
    expected = rn.add_layer_norm(x, r, weight.copy())[0]
    y, _ = rn.add_layer_norm(x, r, weight, out=out)
    np.testing.assert_array_equal(y, expected)


def test_out_overlapping_running_stats_is_refused(rng):
    x = rng.standard_normal((6, 3, 4))
    buf = np.zeros(6 * 3 * 4 + 3)
    out = buf[:72].reshape(6, 3, 4)
    running_mean, running_var = buf[:3], np.ones(3)
    with pytest.raises(ValueError, match="batch_norm: running_mean and out share memory"):
        rn.batch_norm(x, running_mean, running_var, training=True, out=out)
    shared = np.zeros(3)
    with pytest.raises(ValueError, match="running_mean and running_var share memory"):
        rn.batch_norm(x, shared, shared, training=True)
    with pytest.raises(ValueError, match="instance_norm: running_mean and out share memory"):
        rn.instance_norm(x, running_mean, running_var, out=out)
    # Eval mode reads the statistics before writing anything: allowed, and right.
    running_mean[:] = 0.5
    expected = rn.batch_norm(x, running_mean.copy(), running_var)
    np.testing.assert_array_equal(rn.batch_norm(x, running_mean, running_var, out=out), expected)


# 4. Optimizers given overlapping parameters or gradients.
def test_optimizer_refuses_overlapping_parameters_and_gradients():
    a = np.zeros(10, np.float32)
    with pytest.raises(ValueError, match=r"SGD: parameter 0 .* and parameter 1 .* share memory"):
        optim.SGD([a[0:6], a[4:10]])
    interleaved = optim.SGD([a[0::2].copy(), a[1::2].copy()], lr=1.0)  # disjoint: fine
    assert len(interleaved.param_groups[0]["params"]) == 2
    opt = optim.SGD([a[0:4], a[4:10]], lr=1.0)
    with pytest.raises(ValueError, match=r"SGD.step: parameter 0 .* and gradient 1 .* share memory"):
        opt.step([np.ones(4, np.float32), a[3:9]])
    opt.step([np.ones(4, np.float32), np.ones(6, np.float32)])
    np.testing.assert_array_equal(a, -np.ones(10, np.float32))


# 5. l2_normalize of a row holding NaN.
def test_l2_normalize_nan_stays_in_its_row():
    x = np.array([[1.0, np.nan, 2.0], [1.0, 2.0, 3.0]])
    y = rn.l2_normalize(x)
    assert np.isnan(y[0]).all()
    np.testing.assert_allclose(y[1], x[1] / np.linalg.norm(x[1]))
    dx = rn.l2_normalize_backward(np.ones_like(x), x)
    assert np.isnan(dx[0]).all() and np.isfinite(dx[1]).all()


# 8. Unaligned parameters.
def test_unaligned_parameters_are_accepted(rng):
    def unaligned(values):
        raw = np.zeros(8 * len(values) + 1, np.uint8)[1:].view(np.float64)
        raw[:] = values
        assert not raw.flags.aligned
        return raw

    x = rng.standard_normal((3, 4))
    w = np.array([1.0, 2.0, 3.0, 4.0])
    np.testing.assert_array_equal(rn.layer_norm(x, 4, unaligned(w)), rn.layer_norm(x, 4, w))
    np.testing.assert_array_equal(rn.rms_norm(x, 4, unaligned(w)), rn.rms_norm(x, 4, w))
    x4 = rng.standard_normal((2, 4, 3))
    np.testing.assert_array_equal(rn.batch_norm(x4, weight=unaligned(w)), rn.batch_norm(x4, weight=w))
    np.testing.assert_array_equal(
        rn.weight_norm(x, unaligned([1.0, 2.0, 3.0])), rn.weight_norm(x, np.array([1.0, 2.0, 3.0]))
    )
    a, b = (unaligned([2.0, 3.0]), unaligned([1.0, 2.0]), unaligned([0.5, 0.5])), (2.0, 0.0, 1.0)
    for got, want in zip(rn.merge_moments(a, b), rn.merge_moments(tuple(v.copy() for v in a), b)):
        np.testing.assert_array_equal(got, want)


# 9. Empty inputs on the column path.
def test_empty_channel_last_inputs_give_empty_results():
    x = np.zeros((6, 1, 0))
    assert rn.batch_norm(x, np.zeros(1), np.ones(1)).shape == (6, 1, 0)
    dx, dw, _ = rn.batch_norm_backward(x, x, np.zeros(1), np.ones(1), np.ones(1), training=False)
    assert dx.shape == (6, 1, 0)
    np.testing.assert_array_equal(dw, [0.0])
    layer = rn.nn.BatchNorm(1).eval()
    assert layer(x).shape == (6, 1, 0)


# 10. Out-of-range Python ints: ValueError naming the argument, never OverflowError.
@pytest.mark.parametrize(
    ("call", "argument"),
    [
        (lambda x: rn.layer_norm(x, eps=10**400), "eps"),
        (lambda x: rn.softmax(x, axis=2**63), "axis"),
        (lambda x: rn.group_norm(x.reshape(2, 4, 1), 2**70), "num_groups"),
        (lambda x: rn.local_response_norm(x.reshape(2, 4, 1), 2**64), "size"),
        (lambda x: rn.weight_norm(x, np.ones(2), dim=2**70), "dim"),
        (
            lambda x: rn.batch_norm(
                x, np.zeros(4), np.ones(4), momentum=None, num_batches_tracked=2**64, training=True
            ),
            "num_batches_tracked",
        ),
        (lambda x: rn.set_num_threads(2**70), "n"),
        (lambda x: optim.Adam([x], lr=10**400), "lr"),
    ],
)
def test_out_of_range_ints_are_value_errors_naming_the_argument(call, argument):
    x = np.ones((2, 4))
    with pytest.raises(ValueError, match=rf"\b{argument}\b"):
        call(x)


def test_negative_batch_count_is_refused():
    x = np.ones((2, 4))
    with pytest.raises(ValueError, match="num_batches_tracked"):
        rn.batch_norm(x, np.zeros(4), np.ones(4), momentum=None, num_batches_tracked=-1, training=True)


def test_cosine_linear_with_no_features_is_refused():
    with pytest.raises(ValueError, match="CosineLinear"):
        rn.nn.CosineLinear(0, 3)


# 11. Optimizer API misuse: ValueError/TypeError saying what is wrong.
def test_optimizer_misuse_errors():
    a = np.zeros(3)
    with pytest.raises(ValueError, match="SGD: parameter group 0 must be a dict with a 'params' list"):
        optim.SGD([{"lr": 0.1}])
    with pytest.raises(ValueError, match="load_state_dict: expected a dict with 'state' and 'param_groups'"):
        optim.SGD([a]).load_state_dict({})
    with pytest.raises(ValueError, match="state of parameter 0 must be a dict, got NoneType"):
        optim.SGD([a]).load_state_dict({"state": {0: None}, "param_groups": [{"params": [0]}]})
    b = np.zeros(2)
    state = {"state": {0: {"momentum_buffer": np.zeros(3)}, 1: None}, "param_groups": [{"params": [0, 1]}]}
    with pytest.raises(ValueError, match=r"SGD\.load_state_dict: state of parameter 1 must be a dict"):
        optim.SGD([a, b], momentum=0.9).load_state_dict(state)
    with pytest.raises(TypeError, match=r"clip_grad_norm: grads\[0\] must be a numpy.ndarray"):
        optim.clip_grad_norm([[1.0, 2.0]], 1.0)  # type: ignore[list-item]
    with pytest.raises(ValueError, match=r"Adam: betas must be a pair"):
        optim.Adam([a], betas=(0.9, 0.9, 0.9))  # type: ignore[arg-type]


# 12. One rule for 0-d inputs, whatever the byte order or alignment.
@pytest.mark.parametrize("dtype", ["<f8", ">f8", "<f4", ">f4"])
def test_zero_d_inputs_keep_their_shape(dtype):
    x = np.array(0.75, dtype=dtype)
    assert rn.selu(x).shape == ()
    np.testing.assert_allclose(rn.selu(x), rn.selu(np.array([0.75]))[0])
    assert rn.softmax(x).shape == () and float(rn.softmax(x)) == 1.0
    assert rn.log_softmax(x, axis=0).shape == () and float(rn.log_softmax(x)) == 0.0
    with pytest.raises(ValueError, match="softmax: axis 1 is out of range"):
        rn.softmax(x, axis=1)
    with pytest.raises(ValueError, match="layer_norm: x is 0-dimensional"):
        rn.layer_norm(x)


# 13. Arguments the contract refuses.
def test_refused_arguments():
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match="l2_normalize: eps must be a finite number >= 0"):
        rn.l2_normalize(x, eps=-1)
    with pytest.raises(ValueError, match="l2_normalize_backward: eps must be a finite number >= 0"):
        rn.l2_normalize_backward(x, x, eps=np.nan)
    with pytest.raises(TypeError, match="cosine_linear_backward: grad_out"):
        rn.cosine_linear_backward(np.ones((2, 2), np.int64), x, np.ones((2, 3)))
    with pytest.raises(TypeError, match="bias"):
        rn.layer_norm(x, 3, None, np.ones(3, np.complex128))
    with pytest.raises(ValueError, match="target"):
        rn.cross_entropy_with_logits(x, np.array([2**63, 0], np.uint64))
    with pytest.raises(ValueError, match="aic: k must be >= 0, got nan"):
        rn.aic(-1.0, k=np.nan)
    with pytest.raises(ValueError, match="set_num_threads: n must be between 1 and 1024, got 0"):
        rn.set_num_threads(0)


# 14. LRN's cost does not grow with `size`.
def test_lrn_huge_window_is_fast_and_right(rng):
    x = rng.random((1, 4000, 1, 2)).astype(np.float32)
    start = time.perf_counter()
    y = rn.local_response_norm(x, 10**9)
    elapsed = time.perf_counter() - start
    total = (x.astype(np.float64) ** 2).sum(axis=1, keepdims=True)
    expected = x / (1.0 + 1e-4 / 1e9 * total) ** 0.75
    np.testing.assert_allclose(y, expected, rtol=1e-6)
    assert elapsed < 1.0
    # A long window (running sums) equals the direct sums, NaN/inf confined to their windows.
    x = rng.standard_normal((2, 200, 3)).astype(np.float64)
    x[0, 10, 1] = np.nan
    x[1, 150, 2] = np.inf
    size = 41
    sq = np.nan_to_num(x**2, nan=0.0, posinf=0.0)
    pad = np.pad(sq, ((0, 0), (size // 2, (size - 1) // 2), (0, 0)))
    window = np.stack([pad[:, c : c + size].sum(axis=1) for c in range(200)], axis=1)
    expected = x / (2.0 + 1e-2 / size * window) ** 0.6
    for n, c0, pos, kind in [(0, 10, 1, "nan"), (1, 150, 2, "inf")]:
        lo, hi = max(0, c0 - (size - 1) // 2), min(200, c0 + size // 2 + 1)
        expected[n, lo:hi, pos] = np.nan if kind == "nan" else 0.0
    expected[0, 10, 1] = np.nan
    expected[1, 150, 2] = np.nan  # inf · 0
    got = rn.local_response_norm(x, size, alpha=1e-2, beta=0.6, k=2.0)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)


# 15. Empty arrays with billions of zero-length rows.
def test_billions_of_empty_rows_return_at_once():
    x = np.empty((7, 7263, 3, 14647, 0))
    start = time.perf_counter()
    assert rn.l2_normalize(x).shape == x.shape
    assert rn.selu(x).shape == x.shape
    assert time.perf_counter() - start < 0.5


# 16. Thread counts are bounded.
def test_thread_count_is_capped():
    before = rn.get_num_threads()
    with pytest.raises(ValueError, match="between 1 and 1024"):
        rn.set_num_threads(100000)
    assert rn.get_num_threads() == before


# 17. float16 fused add norms normalize exactly the sum they return.
@pytest.mark.parametrize("op", ["add_layer_norm", "add_rms_norm"])
def test_float16_add_norm_normalizes_the_returned_sum(rng, op):
    x = rng.standard_normal((16, 100)).astype(np.float16)
    r = rng.standard_normal((16, 100)).astype(np.float16)
    y, s = getattr(rn, op)(x, r)
    plain = rn.layer_norm(s) if op == "add_layer_norm" else rn.rms_norm(s, eps=np.finfo(np.float16).eps)
    np.testing.assert_array_equal(y, plain)


# 19. Messages name the function and the argument.
def test_messages_name_function_and_argument():
    x = np.ones((2, 3))
    with pytest.raises(TypeError, match="layer_norm: argument 'eps'"):
        rn.layer_norm(x, eps="big")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"softmax\(\) missing 1 required positional argument"):
        rn.softmax()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="entropy: argument 'axis'"):
        rn.entropy(x, axis="0")  # type: ignore[arg-type]
