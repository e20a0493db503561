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
    out = run_cli("bench", "--suite", "quick", "--json", "--rounds", "2")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["copy_gbps"] > 0
    assert report["config"]["rsnorm"] == rn.__version__
    suite = bench.SUITES["quick"]
    seen = {(r["op"], tuple(r["shape"])) for r in report["results"]}
    rows = {(op, s) for s in suite.row_shapes for op in ("layer_norm", "rms_norm")}
    channel_ops = ("batch_norm train", "batch_norm eval", "group_norm", "instance_norm", "lrn")
    channels = {(op, s) for s in suite.channel_shapes for op in channel_ops}
    channels |= {
        (f"batch_norm {mode} nhwc", (n, h, w, c))
        for (n, c, h, w) in suite.channel_shapes
        for mode in ("train", "eval")
    }
    backward = {("layer_norm fwd+bwd", s) for s in suite.backward_ln_shapes}
    backward |= {("batch_norm fwd+bwd", s) for s in suite.backward_bn_shapes}
    optimizers = {
        (f"{op} {label}", (sum(shapes),))
        for label, shapes in suite.optim_sizes.items()
        for op in ("adam", "sgd momentum")
    }
    divergences = {
        (op, s)
        for s in suite.divergence_shapes
        for op in ("softmax", "cross_entropy logits", "kl_div", "js_distance")
    }
    divergences.add(("softmax axis=1", suite.segmentation_shape))
    divergences.add(("wasserstein_1d", (suite.w1_samples,)))
    assert seen == rows | channels | backward | optimizers | divergences
    for r in report["results"]:
        # rsnorm, the same-bytes copy and at least one peer
        assert {"rsnorm", "copy"} <= set(r["median_s"]) and len(r["median_s"]) >= 3
        assert all(t > 0 for t in r["median_s"].values())
        itemsize = 8 if r["dtype"] == "float64" else 4
        arrays = 5 if r["op"].endswith("fwd+bwd") else 1 if r["op"] == "cross_entropy logits" else 2
        per_element = {"adam": 28, "sgd": 20}.get(r["op"].split()[0], itemsize * arrays)
        assert r["bytes_moved"] == per_element * int(np.prod(r["shape"]))


def test_bench_only_filters_workloads():
    out = run_cli("bench", "--quick", "--json", "--rounds", "1", "--only", "rms_norm")
    assert out.returncode == 0, out.stderr
    ops = {r["op"] for r in json.loads(out.stdout)["results"]}
    assert ops == {"rms_norm"}


REPORT = {
    "config": {"rsnorm": "0", "simd": "scalar", "threads": "2", "numpy": "2"},
    "copy_gbps": 40.0,
    "results": [
        {
            "op": "layer_norm",
            "shape": [8, 1000],
            "dtype": "float32",
            "bytes_moved": 64_000,
            "median_s": {
                "rsnorm": 2e-6,
                "rsnorm alloc": 3e-6,
                "copy": 1.6e-6,
                "numpy": 1e-5,
                "onnxruntime": 4e-6,
            },
        },
        {
            "op": "wasserstein_1d",
            "shape": [10],
            "dtype": "float64",
            "bytes_moved": 160,
            "median_s": {"rsnorm": 1e-6},
        },
    ],
}


def test_table_lists_rows_ratios_and_ceiling():
    table = bench.format_table(REPORT)
    assert "copy ceiling (2 threads, 256 MB, read + write): 40.0 GB/s" in table
    row = next(line for line in table.splitlines() if line.startswith("layer_norm"))
    # 64 kB in 2 µs is 32 GB/s; the same-bytes copy took 1.6 µs (80%); NumPy is 5× slower, ORT 2×,
    # so the fastest peer is 2× slower.
    assert "32.0" in row and "80%" in row and "5.0×" in row and row.endswith("2.0×"), row
    lone = next(line for line in table.splitlines() if line.startswith("wasserstein_1d"))
    assert lone.rstrip().endswith("—"), lone


def test_markdown_table_has_only_present_peers():
    md = bench.format_markdown(REPORT)
    header = next(line for line in md.splitlines() if line.startswith("| op"))
    assert "numpy ms" in header and "onnxruntime ms" in header and "torch ms" not in header
    row = next(line for line in md.splitlines() if line.startswith("| layer_norm"))
    assert row == "| layer_norm | (8, 1000) | 0.002 | 32.0 | 80% | 0.010 | 0.004 | 2.0× |", row


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
    assert (tmp_path / "bench.md").read_text().count("\n| ") == len(report["results"]) + 1
    png = (tmp_path / "bench.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
