"""Regression tests for the defects a hostile-user campaign found (issue "Reliability"): hangs,
deadlocks, silent wrong answers, panics and wrong exception types. Each test failed before its fix."""

from __future__ import annotations

import subprocess
import textwrap
import time

import numpy as np
import pytest

import rsnorm as rn
from conftest import PYTHON
from rsnorm import optim


def run_python(code: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Runs `code` in a fresh interpreter; a hang fails the test instead of stalling the suite."""
    return subprocess.run(
        [*PYTHON, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=timeout
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
busy_thread = threading.Thread(target=busy)
busy_thread.start()
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
# Joined, not a daemon: on Python < 3.14 a daemon thread inside a NumPy call that rsnorm makes
# (a dtype conversion) at interpreter exit is ended by pthread_exit, whose unwinding aborts when
# it reaches rsnorm's Rust frames. That is exit, not fork, and this test is about fork.
busy_thread.join()
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
    for got, want in zip(
        rn.merge_moments(a, b), rn.merge_moments(tuple(v.copy() for v in a), b), strict=True
    ):
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
    out = np.array(5.0, dtype="=" + dtype[1:])
    assert rn.softmax(x, out=out) is out and float(out) == 1.0
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


# --- 6. finite inputs whose squares overflow (or underflow) the row's type ---------------------


def _row_norm_reference(x: np.ndarray, rms: bool) -> np.ndarray:
    """LayerNorm/RMSNorm of each row without eps, in float64 after scaling each row by a power of
    two (so no square overflows even for float64 input)."""
    x64 = x.astype(np.float64)
    scale = 2.0 ** -np.floor(np.log2(np.abs(x64).max(axis=-1, keepdims=True)))
    z = x64 * scale
    if not rms:
        z = z - z.mean(axis=-1, keepdims=True)
    return z / np.sqrt((z * z).mean(axis=-1, keepdims=True))


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e20), (np.float64, 1e200), (np.float64, 1e-200)])
@pytest.mark.parametrize("n", [3, 64, 65, 1000, 5000])
def test_row_norms_of_huge_or_tiny_values_are_right_for_any_row_length(dtype, big, n):
    # Row 0: one huge value among ones (for tiny: all tiny); row 1: a ramp with a huge first value.
    unit = big if big < 1 else 1.0
    x = np.ones((2, n), np.float64)
    x[1] = np.linspace(-1, 1, n)
    x[:, 0] = [big, -big] if big > 1 else [3.0, -3.0]
    x = (x * unit).astype(dtype)
    for op, rms in [(rn.layer_norm, False), (rn.rms_norm, True)]:
        y = op(x, eps=0.0)
        np.testing.assert_allclose(y, _row_norm_reference(x, rms), rtol=1e-5, atol=1e-6, err_msg=op.__name__)
    # The fused add norms normalize the (finite) sum exactly so.
    half = x / 2
    y, s = rn.add_layer_norm(half, half, eps=0.0)
    np.testing.assert_array_equal(s, x)
    np.testing.assert_allclose(y, _row_norm_reference(x, False), rtol=1e-5, atol=1e-6)
    y, _ = rn.add_rms_norm(half, half, eps=0.0)
    np.testing.assert_allclose(y, _row_norm_reference(x, True), rtol=1e-5, atol=1e-6)
    # l2_normalize: x / ‖x‖ is RMSNorm / √n.
    want = _row_norm_reference(x, True) / np.sqrt(n)
    np.testing.assert_allclose(rn.l2_normalize(x, eps=0.0), want, rtol=1e-5)


@pytest.mark.parametrize("dtype, big", [(np.float32, 1e20), (np.float64, 1e200)])
def test_channel_norms_and_moments_of_huge_values(dtype, big, rng):
    x = (rng.standard_normal((3, 4, 9, 9)) * big).astype(dtype)
    x64 = x.astype(np.float64)

    def standardized(values: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
        scale = 2.0 ** -np.floor(np.log2(np.abs(values).max()))
        z = values * scale
        z = z - z.mean(axis=axes, keepdims=True)
        return z / np.sqrt((z * z).mean(axis=axes, keepdims=True))

    checks = {
        "batch_norm": (rn.batch_norm(x, training=True, eps=0.0), standardized(x64, (0, 2, 3))),
        "batch_norm channel-last": (
            rn.batch_norm(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=True, eps=0.0, axis=-1),
            standardized(x64, (0, 2, 3)).transpose(0, 2, 3, 1),
        ),
        "instance_norm": (rn.instance_norm(x, eps=0.0), standardized(x64, (2, 3))),
        "group_norm": (
            rn.group_norm(x, 2, eps=0.0),
            standardized(x64.reshape(3, 2, 2, 9, 9), (2, 3, 4)).reshape(x.shape),
        ),
    }
    for name, (got, want) in checks.items():
        assert np.isfinite(got).all(), name
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, err_msg=name)
    # moments: float32 values' M2 is representable in float64, and right; float64's overflows.
    _, mean, m2 = rn.moments(x, axis=(0, 2, 3))
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=1e-9, atol=big * 1e-12)
    if dtype == np.float32:
        deviations = x64 - x64.mean(axis=(0, 2, 3), keepdims=True)
        np.testing.assert_allclose(m2, (deviations**2).sum(axis=(0, 2, 3)), rtol=1e-9)
    else:
        assert np.isinf(m2).all()


def test_merged_moments_of_far_apart_means_stay_finite_where_they_can():
    # Two constant halves 1e200 apart: M2 = n/4 · 1e400 overflows, the mean does not.
    count, mean, m2 = rn.merge_moments((2, 1e200, 0.0), (2, -1e200, 0.0))
    assert (count, mean) == (4, 0.0) and np.isinf(m2)
    x = np.array([1e200, 1e200, -1e200, -1e200])
    np.testing.assert_allclose(rn.layer_norm(x, eps=0.0), [1, 1, -1, -1])
    np.testing.assert_allclose(rn.group_norm(x.reshape(1, 4, 1), 1, eps=0.0).ravel(), [1, 1, -1, -1])


# --- 7. results do not depend on the layout, non-finite values included ---------------------------


def test_non_finite_statistics_do_not_depend_on_the_layout():
    # Column statistics of a C-ordered table and row statistics of its Fortran-ordered copy.
    x = np.arange(160, dtype=np.float32).reshape(20, 8)
    x[7, 1] = -np.inf
    f = np.asfortranarray(x)
    for axis in (0, 1, None):
        for a, b in zip(rn.moments(x, axis=axis), rn.moments(f, axis=axis), strict=True):
            np.testing.assert_array_equal(a, b)
    # NumPy's answer: the mean is -inf, the M2 NaN, the other columns untouched.
    _, mean, m2 = rn.moments(x, axis=0)
    assert mean[1] == -np.inf and np.isnan(m2[1])
    np.testing.assert_array_equal(np.delete(m2, 1), np.full(7, 64 * 665.0))  # 64 · Σ(k − 9.5)², k < 20
    # A group whose infinity is in the first values of a contiguous span but not of its first row.
    g = np.ones((1, 32, 6), np.float32)
    g[0, 3, 2] = np.inf
    wide = np.zeros((1, 32, 12), np.float32)
    wide[..., ::2] = g
    for a, b in zip(
        rn.group_norm(g, 1, return_stats=True),
        rn.group_norm(wide[..., ::2], 1, return_stats=True),
        strict=False,
    ):
        np.testing.assert_array_equal(a, b)
    assert rn.group_norm(g, 1, return_stats=True)[1][0, 0] == np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_strided_and_contiguous_layouts_give_the_same_bits(dtype, rng):
    x = (1e4 + rng.standard_normal((6, 12, 5, 7))).astype(dtype)
    wide = np.zeros((*x.shape[:-1], 14), dtype)
    wide[..., ::2] = x
    strided = wide[..., ::2]
    for fn in (
        lambda v: rn.group_norm(v, 3, return_stats=True),
        lambda v: rn.batch_norm(v, training=True, return_stats=True),
        lambda v: rn.batch_norm(v.transpose(0, 2, 3, 1), training=True, axis=-1, return_stats=True),
        lambda v: rn.moments(v, axis=0),
        lambda v: rn.moments(v.transpose(0, 2, 3, 1), axis=(0, 1, 2)),
        lambda v: rn.softmax(v, axis=0),
        lambda v: rn.log_softmax(v, axis=1),
    ):
        for a, b in zip(fn(x), fn(strided), strict=True):
            np.testing.assert_array_equal(a, b)
    # Softmax down a leading axis equals softmax of the transposed rows, bit for bit.
    t = (rng.standard_normal((1500, 40)) * 5).astype(dtype)
    np.testing.assert_array_equal(rn.softmax(t, axis=0), rn.softmax(np.ascontiguousarray(t.T)).T)
    np.testing.assert_array_equal(rn.log_softmax(t, axis=0), rn.log_softmax(np.ascontiguousarray(t.T)).T)


# --- leaks: RSS flat over many calls of a success path and an error path ------------------------

LEAK_LOOP = """
import sys, numpy as np, rsnorm as rn

def rss_kb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4

x = np.random.default_rng(0).standard_normal((4, 33)).astype(np.float32)
w = np.ones(33, np.float32)
bad = np.ones(32, np.float32)

def success():
    rn.layer_norm(x, 33, w, w, return_stats=True)

def error():
    try:
        rn.layer_norm(x, 33, bad)
    except ValueError:
        pass

for path in (success, error):
    for _ in range(20_000):
        path()
    before = rss_kb()
    for _ in range(200_000):
        path()
    print(path.__name__, rss_kb() - before)
"""


def test_no_memory_growth_over_200k_calls():
    done = run_python(LEAK_LOOP, timeout=300)
    assert done.returncode == 0, done.stderr
    growth = dict(line.split() for line in done.stdout.split("\n") if line)
    assert set(growth) == {"success", "error"}
    for path, kb in growth.items():
        assert int(kb) < 1024, f"{path}: RSS grew {kb} KB over 200,000 calls"


# --- 18. float16 rows: bounded scratch --------------------------------------------------------

F16_PEAK = """
import resource, numpy as np, rsnorm as rn
x = np.ones((1, 1 << 24), np.float16)
x[0, ::3] = 2
rn.layer_norm(x[:, :100], out=x[:, :100])
rn.rms_norm(x[:, :100], out=x[:, :100])
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rn.layer_norm(x, out=x)
rn.rms_norm(x, out=x)
rn.l2_normalize(x, out=x)
print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) // 1024, x.nbytes >> 20)
"""


def test_float16_long_rows_need_bounded_scratch():
    # One row of 2^24 float16 values (32 MB) normalized in place: converting the whole row to
    # float32 and back had needed 128 MB of scratch.
    done = run_python(F16_PEAK, timeout=120)
    assert done.returncode == 0, done.stderr
    growth_mb, size_mb = map(int, done.stdout.split())
    assert growth_mb < size_mb // 4, f"peak RSS grew {growth_mb} MB for a {size_mb} MB row"


@pytest.mark.parametrize("layout", ["contiguous", "strided"])
def test_float16_long_rows_equal_the_float32_computation(layout, rng):
    # Chunked float16 rows compute exactly what float32 rows of the same values do.
    x = (1e3 + 20 * rng.standard_normal((2, 150_001))).astype(np.float16)
    if layout == "strided":
        wide = np.zeros((2, 300_002), np.float16)
        wide[:, ::2] = x
        x = wide[:, ::2]
    w = rng.standard_normal(x.shape[-1]).astype(np.float16)
    x32, w32 = x.astype(np.float32), w.astype(np.float32)
    y, mean, rstd = rn.layer_norm(x, w.shape, w, w, return_stats=True)
    y32, mean32, rstd32 = rn.layer_norm(x32, w.shape, w32, w32, return_stats=True)
    np.testing.assert_array_equal(y, y32.astype(np.float16))
    np.testing.assert_array_equal(mean, mean32)
    np.testing.assert_array_equal(rstd, rstd32)
    y, rstd = rn.rms_norm(x, w.shape, w, return_stats=True)
    y32, rstd32 = rn.rms_norm(x32, w.shape, w32, return_stats=True)
    np.testing.assert_array_equal(y, y32.astype(np.float16))
    np.testing.assert_array_equal(rstd, rstd32)
    np.testing.assert_array_equal(rn.l2_normalize(x), rn.l2_normalize(x32).astype(np.float16))


def test_non_contiguous_inputs_match_contiguous(rng):
    x = rng.standard_normal((12, 8)).T  # (8, 12), strided
    go = rng.standard_normal((12, 8))[:, ::-1].T
    w, b = rng.standard_normal(12), rng.standard_normal(12)
    _, mean, rstd = rn.layer_norm(x, 12, w, b, return_stats=True)
    got = rn.layer_norm_backward(go, x, mean, rstd, w, b)
    want = rn.layer_norm_backward(np.ascontiguousarray(go), np.ascontiguousarray(x), mean, rstd, w, b)
    for a, e in zip(got, want, strict=True):
        np.testing.assert_allclose(a, e, rtol=1e-14, atol=1e-14)


def test_fortran_ordered_statistics_and_targets_are_read_in_c_order(rng):
    """Statistics and class targets of two or more dims are read in their logical (C) order
    whatever their memory order: a Fortran-ordered array is contiguous too, and reading its
    memory as it lies had transposed it."""
    x = rng.standard_normal((3, 4, 6))
    g = rng.standard_normal(x.shape)
    _, mean, rstd = rn.instance_norm(x, return_stats=True)
    assert mean.shape == (3, 4)
    fortran = (np.asfortranarray(mean), np.asfortranarray(rstd))
    assert not fortran[0].flags.c_contiguous
    want = rn.instance_norm_backward(g, x, mean, rstd)[0]
    np.testing.assert_array_equal(rn.instance_norm_backward(g, x, *fortran)[0], want)
    _, mean, rstd = rn.group_norm(x, 2, return_stats=True)
    want = rn.group_norm_backward(g, x, mean, rstd, num_groups=2)[0]
    got = rn.group_norm_backward(g, x, np.asfortranarray(mean), np.asfortranarray(rstd), num_groups=2)
    np.testing.assert_array_equal(got[0], want)
    log_probs = rn.log_softmax(rng.standard_normal((4, 5, 3)), axis=1)
    target = rng.integers(0, 5, (4, 3))
    for t in (np.asfortranarray(target), np.asfortranarray(target.astype(np.int32))):
        assert not t.flags.c_contiguous
        for reduction in ("none", "sum"):
            np.testing.assert_array_equal(
                rn.nll_loss(log_probs, t, axis=1, reduction=reduction),
                rn.nll_loss(log_probs, target, axis=1, reduction=reduction),
            )
        np.testing.assert_array_equal(
            rn.cross_entropy_with_logits(log_probs, t, axis=1, reduction="none"),
            rn.cross_entropy_with_logits(log_probs, target, axis=1, reduction="none"),
        )


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
        for a, e in zip(results[0], other, strict=True):
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
