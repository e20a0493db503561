"""The command line: ``python -m rsnorm bench`` and ``python -m rsnorm config``."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np

import rsnorm as rn
from rsnorm import bench


def run_cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "rsnorm", *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_bench_json_has_every_workload_with_positive_medians():
    out = run_cli("bench", "--quick", "--json", "--rounds", "2")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["copy_gbps"] > 0
    assert report["config"]["rsnorm"] == rn.__version__
    seen = {(r["op"], tuple(r["shape"])) for r in report["results"]}
    rows = {(op, s) for s in bench.QUICK_SHAPES for op in ("layer_norm", "rms_norm")}
    channel_ops = ("batch_norm train", "batch_norm eval", "group_norm", "instance_norm", "lrn")
    backward = {
        ("layer_norm fwd+bwd", bench.QUICK_BACKWARD_LN_SHAPE),
        ("batch_norm fwd+bwd", bench.QUICK_BACKWARD_BN_SHAPE),
    }
    optimizers = {
        (f"{op} {label}", (sum(shapes),))
        for label, shapes in bench.QUICK_OPTIM_SIZES.items()
        for op in ("adam", "sgd momentum")
    }
    divergences = {(op, bench.QUICK_DIVERGENCE_SHAPE) for op in ("softmax", "kl_div", "js_distance")}
    divergences.add(("wasserstein_1d", (bench.QUICK_W1_SAMPLES,)))
    all_rows = (
        rows | {(op, bench.QUICK_CHANNEL_SHAPE) for op in channel_ops} | backward | optimizers | divergences
    )
    assert seen == all_rows
    for r in report["results"]:
        assert "rsnorm" in r["median_s"] and len(r["median_s"]) >= 2  # at least one peer
        assert all(t > 0 for t in r["median_s"].values())
        itemsize = 8 if r["dtype"] == "float64" else 4
        arrays = 5 if r["op"].endswith("fwd+bwd") else 2
        per_element = {"adam": 28, "sgd": 20}.get(r["op"].split()[0], itemsize * arrays)
        assert r["bytes_moved"] == per_element * int(np.prod(r["shape"]))


def test_table_lists_rows_ratios_and_ceiling():
    report = {
        "config": {"rsnorm": "0", "simd": "scalar", "threads": "2", "numpy": "2"},
        "copy_gbps": 40.0,
        "results": [
            {
                "op": "layer_norm",
                "shape": [8, 1000],
                "dtype": "float32",
                "bytes_moved": 64_000,
                "median_s": {"rsnorm": 2e-6, "rsnorm alloc": 3e-6, "numpy": 1e-5},
            }
        ],
    }
    table = bench.format_table(report)
    assert "copy ceiling (2 threads, read + write): 40.0 GB/s" in table
    row = next(line for line in table.splitlines() if line.startswith("layer_norm"))
    # 64 kB in 2 µs is 32 GB/s, 80% of the ceiling; NumPy is 5× slower.
    assert "32.0" in row and "80%" in row and "5.0×" in row, row


def test_config_and_usage():
    out = run_cli("config")
    assert out.returncode == 0 and "simd" in out.stdout and "threads" in out.stdout
    assert run_cli("help").returncode == 0
    assert run_cli("nonsense").returncode == 2


def test_bench_writes_json_and_chart(tmp_path):
    out = run_cli("bench", "--quick", "--rounds", "1", "--out", str(tmp_path))
    assert out.returncode == 0, out.stderr
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["copy_gbps"] > 0 and report["results"]
    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
