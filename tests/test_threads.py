"""Threading: thread-count control, identical results across counts, concurrent callers, fork."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import rsnorm as rn
from conftest import PYTHON


@pytest.fixture
def restore_threads():
    before = rn.get_num_threads()
    yield
    rn.set_num_threads(before)


def test_set_and_get(restore_threads):
    rn.set_num_threads(1)
    assert rn.get_num_threads() == 1
    rn.set_num_threads(3)
    assert rn.get_num_threads() == 3
    for bad in (0, -2, 1025):
        with pytest.raises(ValueError, match=f"n must be between 1 and 1024, got {bad}"):
            rn.set_num_threads(bad)
    with pytest.raises(ValueError, match=r"set_num_threads: n = \d+ is out of range"):
        rn.set_num_threads(2**70)


def test_results_identical_across_thread_counts(rng, restore_threads):
    # Large enough to be split across threads.
    x = rng.standard_normal((512, 1024)).astype(np.float32) + 100
    w = rng.standard_normal(1024).astype(np.float32)
    results = []
    for n in (1, 2, 3, 7):
        rn.set_num_threads(n)
        results.append((rn.layer_norm(x, 1024, w, w), rn.rms_norm(x, 1024, w), rn.add_layer_norm(x, x, w)[0]))
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)


def test_wasserstein_identical_across_thread_counts(rng, restore_threads):
    """Long samples are swept in a fixed number of parts, whatever the thread count, and sorted in
    halves from 2**19 values: the same bits on 1, 2 and 3 threads, weighted or not."""
    u, v = rng.standard_normal(600_000), rng.standard_normal(90_000) * 2 + 0.1
    uw, vw = rng.random(u.size), rng.random(v.size)
    results = []
    for n in (1, 2, 3):
        rn.set_num_threads(n)
        results.append((rn.wasserstein_1d(u, v), rn.wasserstein_1d(u, v, uw, vw)))
    assert all(r == results[0] for r in results[1:]), results


def test_concurrent_python_threads_get_correct_results(rng):
    # Large calls release the GIL; small ones (under 1024 elements) keep it.
    xs = [rng.standard_normal((256, 512) if i % 2 else (4, 64)) + i for i in range(8)]
    want = [rn.layer_norm(x) for x in xs]
    errors = []

    def worker(i):
        try:
            for _ in range(20):
                np.testing.assert_array_equal(rn.layer_norm(xs[i]), want[i])
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    # A thread still alive after the timeout means a deadlock.
    assert not any(t.is_alive() for t in threads), "deadlock: a worker thread never finished"
    assert not errors, errors[0]


@pytest.mark.parametrize(
    "call",
    [
        lambda x, y: rn.layer_norm(x, out=y),
        lambda x, y: rn.rms_norm(x, out=y),
        lambda x, y: rn.softmax(x, out=y),
        lambda x, y: rn.selu(x, out=y),
        lambda x, y: rn.batch_norm(x, training=True, out=y),
    ],
    ids=["layer_norm", "rms_norm", "softmax", "selu", "batch_norm"],
)
def test_large_calls_let_other_python_threads_run(rng, restore_threads, call):
    """DESIGN: the GIL is released during compute. A spinning Python thread must record ticks in
    the middle of one long call; holding the GIL, it could only tick in the switch intervals
    (0.5 ms here) before the call entered Rust and after it left. Calls under 1024 elements keep
    the GIL, as NumPy's below 500: their work is shorter than the hand-off."""
    rn.set_num_threads(1)
    # 256 MB each way: on a Zen 5 VM a 64 MB LayerNorm took 4 ms on one thread, under the 5 ms
    # the check below needs.
    x = rng.random((8192, 8192), dtype=np.float32)
    y = np.empty_like(x)
    ticks: list[float] = []
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            ticks.append(time.perf_counter())

    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)
    spinner = threading.Thread(target=spin)
    spinner.start()
    try:
        while not ticks:
            time.sleep(0.001)
        windows = []
        for _ in range(5):
            start = time.perf_counter()
            call(x, y)
            windows.append((start, time.perf_counter()))
    finally:
        stop.set()
        spinner.join()
        sys.setswitchinterval(interval)
    seen = np.asarray(ticks)
    ran = []
    for start, end in windows:
        # Long enough that the middle fifth lies beyond both switch intervals.
        assert end - start > 0.005, "the call is too short to tell"
        lo, hi = start + 0.4 * (end - start), start + 0.6 * (end - start)
        ran.append(bool(((seen > lo) & (seen < hi)).any()))
    # One call's middle suffices: holding the GIL, no call could have one. Asking it of every call
    # failed in CI when the spinner got no CPU for a whole middle fifth (a shared 2-core VM).
    assert any(ran), "no Python thread ran during any of the calls"


def test_mid_size_calls_while_workers_are_awake_match_one_thread(rng, restore_threads):
    # Calls of 2**15 to 2**18 elements of work use the workers only while they are awake, right
    # after a large call; either way each row must come out as one thread computes it.
    big = rng.standard_normal((1024, 1024)).astype(np.float32)
    xs = [(rng.standard_normal((rows, 1000)) * 3 + 1e3).astype(np.float32) for rows in (40, 64, 130)]
    calls = [
        lambda x: rn.layer_norm(x, 1000),
        lambda x: rn.softmax(x / 100),
        lambda x: rn.log_softmax(x / 100, axis=0),
    ]
    rn.set_num_threads(1)
    want = [[call(x) for x in xs] for call in calls]
    rn.set_num_threads(2)
    for _ in range(5):
        for call, expected in zip(calls, want, strict=True):
            for x, w in zip(xs, expected, strict=True):
                rn.layer_norm(big, 1024)
                np.testing.assert_array_equal(call(x), w)


def test_environment_variable_sets_default():
    code = "import rsnorm; print(rsnorm.get_num_threads())"
    out = subprocess.run(
        [*PYTHON, "-c", code],
        env={**os.environ, "RSNORM_NUM_THREADS": "3"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert out.stdout.strip() == "3"


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_can_compute_after_parent_used_the_pool(rng):
    # The parent spins up the pool first; a child that inherited it must not hang.
    code = """
import os, numpy as np, rsnorm as rn
x = np.random.default_rng(0).standard_normal((512, 1024))
y = rn.layer_norm(x)
pid = os.fork()
if pid == 0:
    ok = np.array_equal(rn.layer_norm(x), y)
    os._exit(0 if ok else 3)
_, status = os.waitpid(pid, 0)
print(os.waitstatus_to_exitcode(status))
"""
    out = subprocess.run([*PYTHON, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "0"


# The f32 exponential (and SELU's f32 eˣ − 1) fuses its multiply-adds at the levels with FMA (AVX2,
# AVX-512, NEON), where eˣ is within 1.04 ulp; the scalar level rounds them separately (1.31 ulp), so
# there only these outputs may differ, by an ulp or two.
FUSED_EXP = {"softmax", "softmax_columns", "log_softmax", "softmax_backward_log", "selu_backward", "selu"}
# The information measures' f64 logarithm fuses its polynomial's steps at those levels too.
FUSED_LN = {"entropy", "kl_div", "cross_entropy", "js_divergence"}


def test_simd_paths_give_identical_results():
    """Every SIMD level the CPU has computes bitwise the same results; the scalar path too, but for the
    f32 exponential's and the information measures' f64 logarithm's last bits."""
    code = """
import numpy as np, rsnorm as rn, sys
rng = np.random.default_rng(5)
x = rng.standard_normal((64, 1000)).astype(np.float32) * 3 + 1e3
w = np.linspace(-1, 1, 1000, dtype=np.float32)
img = rng.standard_normal((8, 16, 12, 12)).astype(np.float32) * 2 + 5
nhwc = np.ascontiguousarray(np.moveaxis(img, 1, -1))
img7 = np.ascontiguousarray(img[:, :, :7, :7])
p = [rng.standard_normal(10_000).astype(np.float32)]
rn.optim.Adam(p, lr=1e-2).step([rng.standard_normal(10_000).astype(np.float32)])
probs = rng.random((300, 1000)) + 1e-3
probs[::7, 3] = 0.0  # rows with a zero take the logarithm with its cases
outputs = {
    "layer_norm": rn.layer_norm(x, 1000, w, w),
    "rms_norm": rn.rms_norm(x, 1000, w),
    "batch_norm": rn.batch_norm(img, training=True),
    "batch_norm_nhwc": rn.batch_norm(nhwc, training=True, axis=-1),
    "group_norm": rn.group_norm(img, 4),
    "instance_norm_7x7": rn.instance_norm(img7),
    "batch_norm_7x7": rn.batch_norm(img7, training=True),
    "layer_norm_49": rn.layer_norm(x[:, :49], 49),
    "batch_norm_backward_7x7": rn.batch_norm_backward(
        img7 * 0.5, img7, *rn.batch_norm(img7, training=True, return_stats=True)[1:]
    )[0],
    "layer_norm_backward": rn.layer_norm_backward(
        x / 7, x, *rn.layer_norm(x, 1000, return_stats=True)[1:], w
    )[0],
    "softmax": rn.softmax(x / 100),
    "softmax_f64": rn.softmax(x.astype(np.float64) / 100),
    "softmax_columns": rn.log_softmax(x[:, :100] / 100, axis=0),
    "log_softmax": rn.log_softmax(x / 100),
    "softmax_backward_log": rn.log_softmax_backward(x / 1e4, rn.log_softmax(x / 100)),
    "selu_backward": rn.selu_backward(x / 1e3, x - 1e3),
    "selu": rn.selu(x - 1e3),
    "selu_f64": rn.selu(x.astype(np.float64) - 1e3),
    "lrn": rn.local_response_norm(x.reshape(2, 8, 4000)[:, :, :1100], 5),
    "adam": p[0],
    "entropy": rn.entropy(probs),
    "kl_div": rn.kl_div(probs, probs[::-1]),
    "cross_entropy": rn.cross_entropy(probs, probs[::-1]),
    "js_divergence": rn.js_divergence(probs, probs[::-1]),
}
np.savez(sys.argv[1], **outputs)
print(rn.simd_level())
"""
    import tempfile

    outputs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for level in ("scalar", "avx2", "avx512"):
            printed, saved = _outputs_in_subprocess(
                code, os.path.join(tmp, f"{level}.npz"), RSNORM_SIMD=level
            )
            outputs[printed] = saved
    if set(outputs) == {"neon"}:
        pytest.skip("aarch64 has one SIMD level, NEON, which RSNORM_SIMD cannot lower")
    assert "scalar" in outputs
    fused = [level for level in outputs if level != "scalar"]
    for level, results in outputs.items():
        for op, result in results.items():
            if op in FUSED_EXP | FUSED_LN and level != "scalar":
                # Exact among the levels with FMA; against the scalar level within a few ulps.
                np.testing.assert_array_equal(result, outputs[fused[0]][op], err_msg=f"{level} {op}")
                tolerance = 5e-7 if op in FUSED_EXP else 1e-14
                np.testing.assert_allclose(result, outputs["scalar"][op], rtol=tolerance, atol=tolerance)
            else:
                np.testing.assert_array_equal(result, outputs["scalar"][op], err_msg=f"{level} {op}")
    # The scalar level does differ somewhere (so the tolerance above is needed, and fusing happens).
    assert not fused or any(
        not np.array_equal(outputs["scalar"][op], outputs[level][op]) for op in FUSED_EXP for level in fused
    )


def _outputs_in_subprocess(code: str, path: str, **env: str) -> tuple[str, dict]:
    """Runs `code` (which saves its outputs to `path`) in a fresh interpreter with `env` set; returns
    what it printed and the outputs."""
    run = subprocess.run(
        [*PYTHON, "-c", code, path],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    with np.load(path) as saved:
        return run.stdout.strip(), dict(saved)


def _identical_either_way(tmp_path, code: str, switch: str, printed: tuple[str, str]) -> dict:
    """Runs `code` with the environment switch `switch` at "0" and at "1"; checks that it printed
    `printed[flag]` (what `show_config()` says of the switch) and that every output is the same
    either way. Returns the outputs with the switch on."""
    outputs = {}
    for flag in (0, 1):
        path = str(tmp_path / f"{flag}.npz")
        said, outputs[flag] = _outputs_in_subprocess(code, path, **{switch: str(flag)})
        assert said == printed[flag]
    for op, result in outputs[1].items():
        np.testing.assert_array_equal(result, outputs[0][op], err_msg=op)
    return outputs[1]


PREFETCH_CODE = """
import sys, numpy as np, rsnorm as rn
rng = np.random.default_rng(5)
# Rows of 4 KB and more are prefetch targets; a (8192, 1024) f32 output (32 MB) also has its next
# output row prefetched. Offset rows, parameters, and the channel norms' 12.5 KB rows.
x = (rng.standard_normal((8192, 1024)) + 1e4).astype(np.float32)
r = rng.standard_normal(x.shape).astype(np.float32)
w = rng.standard_normal(1024).astype(np.float32)
img = (rng.standard_normal((4, 8, 56, 56)) + 10).astype(np.float32)
c = rng.standard_normal(8).astype(np.float32)
outputs = {
    "layer_norm": rn.layer_norm(x, 1024, w, w),
    "rms_norm": rn.rms_norm(x, 1024, w),
    "add_layer_norm": rn.add_layer_norm(x, r, w, w)[0],
    "add_rms_norm": rn.add_rms_norm(x, r, w)[0],
    "batch_norm": rn.batch_norm(img, None, None, c, c, training=True),
    "batch_norm_eval": rn.batch_norm(img, c * 0, c * 0 + 2, c, c),
    "group_norm": rn.group_norm(img, 4, c, c),
    "instance_norm": rn.instance_norm(img, weight=c, bias=c),
}
np.savez(sys.argv[1], **outputs)
from rsnorm._config import config
print(config()["prefetch"])
"""


def test_norms_identical_with_and_without_row_prefetch(tmp_path):
    """The norms' software prefetch of their next rows is chosen by CPU vendor (RSNORM_PREFETCH
    overrides): it changes when memory arrives, never a result."""
    _identical_either_way(tmp_path, PREFETCH_CODE, "RSNORM_PREFETCH", ("hardware only", "rows ahead"))


NONTEMPORAL_CODE = """
import sys, numpy as np, rsnorm as rn
rng = np.random.default_rng(6)
# Calls whose arrays hold at least 64 MB together store non-temporally (where on): rows of 1027
# values, so rows start off a cache line, an output that starts 4 bytes past one, offset data,
# float64, and the backward's dx (with and without parameter gradients, and in place).
x = (rng.standard_normal((8193, 1027)) * 2 + 1e4).astype(np.float32)
w = rng.standard_normal(1027).astype(np.float32)
go = rng.standard_normal(x.shape).astype(np.float32)
off = np.empty(x.size + 1, np.float32)[1:].reshape(x.shape)
x64 = rng.standard_normal((4100, 1024))
y, mean, rstd = rn.layer_norm(x, 1027, w, w, return_stats=True)
_, rms_rstd = rn.rms_norm(x, 1027, w, return_stats=True)
outputs = {
    "layer_norm": y,
    "rms_norm": rn.rms_norm(x, 1027, w),
    "layer_norm_offset_out": rn.layer_norm(x, 1027, out=off).copy(),
    "rms_norm_f64": rn.rms_norm(x64, 1024),
}
outputs.update(zip(("dx", "dweight", "dbias"), rn.layer_norm_backward(go, x, mean, rstd, w, w)))
outputs["dx_no_params"] = rn.layer_norm_backward(go, x, mean, rstd)[0]
outputs["dx_offset"] = rn.layer_norm_backward(go, x, mean, rstd, w, w, out=(off, None, None))[0].copy()
outputs["rms_dx"] = rn.rms_norm_backward(go, x, rms_rstd, w)[0]
g = go.copy()
outputs["dx_in_place"] = rn.layer_norm_backward(g, x, mean, rstd, w, w, out=(g, None, None))[0]
inplace = x.copy()
outputs["layer_norm_in_place"] = rn.layer_norm(inplace, 1027, out=inplace)
big = rng.standard_normal(9 << 20).astype(np.float32)
copied = np.empty_like(big)
rn._rsnorm._parallel_copy(big, copied)
assert np.array_equal(copied, big)
np.savez(sys.argv[1], **outputs)
from rsnorm._config import config
print(config()["stores"])
"""


def test_norms_identical_with_and_without_nontemporal_stores(tmp_path):
    """Large outputs are stored non-temporally where the CPU gains from it (RSNORM_NONTEMPORAL
    overrides): it changes how memory is written, never a result."""
    outputs = _identical_either_way(
        tmp_path, NONTEMPORAL_CODE, "RSNORM_NONTEMPORAL", ("cached", "non-temporal from 64 MB a call")
    )
    # And right: the float64 RMSNorm (eps None: the dtype's, as torch) against NumPy.
    rng = np.random.default_rng(6)
    rng.standard_normal((8193, 1027))
    rng.standard_normal(1027)
    rng.standard_normal((8193, 1027))
    x64 = rng.standard_normal((4100, 1024))
    expect = x64 / np.sqrt((x64 * x64).mean(axis=1, keepdims=True) + np.finfo(np.float64).eps)
    np.testing.assert_allclose(outputs["rms_norm_f64"], expect, rtol=1e-12, atol=1e-12)


STREAMING_CODE = """
import sys, numpy as np, rsnorm as rn
rng = np.random.default_rng(7)
# Calls under 16 MB run their loops at full width, larger ones with 256-bit vectors: offset data
# of both sizes through the channel norms (rows and channel-last columns) and the row norms'
# backward, forward and backward, float32 and float64.
outputs = {}
for name, shape in (("small", (8, 24, 20, 20)), ("large", (64, 24, 48, 48))):
    x = (rng.standard_normal(shape) * 3 + 1e4).astype(np.float32)
    w = rng.standard_normal(shape[1]).astype(np.float32)
    go = rng.standard_normal(shape).astype(np.float32)
    nhwc = np.ascontiguousarray(np.moveaxis(x, 1, -1))
    for dt in (np.float32, np.float64):
        xs, gs, ws, last = x.astype(dt), go.astype(dt), w.astype(dt), nhwc.astype(dt)
        key = f"{name}_{np.dtype(dt).name}"
        y, mean, rstd = rn.batch_norm(xs, None, None, ws, ws, training=True, return_stats=True)
        outputs[f"bn_{key}"] = y
        outputs[f"bn_eval_{key}"] = rn.batch_norm(xs, ws * 0, ws * 0 + 2, ws, ws)
        for i, r in enumerate(rn.batch_norm_backward(gs, xs, mean, rstd, ws)):
            outputs[f"bn_back{i}_{key}"] = r
        outputs[f"bn_nhwc_{key}"] = rn.batch_norm(last, None, None, ws, ws, training=True, axis=-1)
        outputs[f"gn_{key}"] = rn.group_norm(xs, 6, ws, ws)
        outputs[f"in_{key}"] = rn.instance_norm(xs, weight=ws, bias=ws)
        rows = xs.reshape(-1, shape[-1])
        g_rows = gs.reshape(-1, shape[-1])
        lw = np.linspace(0.5, 2, shape[-1]).astype(dt)
        _, ln_mean, ln_rstd = rn.layer_norm(rows, shape[-1], lw, lw, return_stats=True)
        for i, r in enumerate(rn.layer_norm_backward(g_rows, rows, ln_mean, ln_rstd, lw, lw)):
            outputs[f"ln_back{i}_{key}"] = r
np.savez(sys.argv[1], **outputs)
from rsnorm._config import config
print(config()["vectors"])
"""


def test_norms_identical_at_either_vector_width(tmp_path):
    """The channel norms' loops and the row norms' backward run with 256-bit vectors in large
    calls, at full width in smaller ones (RSNORM_STREAMING_CAP=0|1 forces either): the width
    changes the speed, never a result."""
    outputs = _identical_either_way(
        tmp_path, STREAMING_CODE, "RSNORM_STREAMING_CAP", ("full width", "256-bit in streaming loops")
    )
    assert len(outputs) == 2 * 2 * 11


def test_channel_norms_identical_across_thread_counts(rng, restore_threads):
    # Few threads take whole channels / groups per task (one sweep over memory), many threads split
    # rows (two sweeps); the (4, 48, 48) channels exceed the one-sweep cache budget at any count.
    x = (rng.standard_normal((16, 24, 20, 20)) * 3 + 1e4).astype(np.float32)
    big = rng.standard_normal((32, 4, 48, 48)).astype(np.float32)
    w = rng.standard_normal(24).astype(np.float32)
    results = []
    for n in (1, 2, 16):
        rn.set_num_threads(n)
        results.append(
            (
                *rn.batch_norm(x, None, None, w, w, training=True, return_stats=True),
                *rn.group_norm(x, 6, w, w, return_stats=True),
                *rn.instance_norm(x, weight=w, bias=w, return_stats=True),
                *rn.batch_norm(big, training=True, return_stats=True),
            )
        )
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    # And right: per-channel batch statistics of the 1e4 + noise data, in float64.
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=(0, 2, 3))
    np.testing.assert_allclose(results[0][1], mean, rtol=1e-7)  # float32 stats
    np.testing.assert_allclose(results[0][2], 1 / np.sqrt(x64.var(axis=(0, 2, 3)) + 1e-5), rtol=1e-6)
    z = (x64 - mean[:, None, None]) * results[0][2][:, None, None] * w[:, None, None] + w[:, None, None]
    np.testing.assert_allclose(results[0][0], z, atol=2e-4 * np.abs(w).max())
