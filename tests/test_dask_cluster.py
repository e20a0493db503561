"""rsnorm.dask on a real cluster: a ``distributed.LocalCluster`` of two worker processes with one
thread each, on 127.0.0.1, started and shut down by this module. Every result is fetched with a
timeout, so a hang fails the test instead of the CI job."""

from __future__ import annotations

import numpy as np
import pytest

import rsnorm
from conftest import PYTHON, cluster_fetch

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
distributed = pytest.importorskip("distributed")
rd = pytest.importorskip("rsnorm.dask")


@pytest.fixture
def client(cluster_client):
    with dask.config.set(scheduler=cluster_client):
        yield cluster_client


def fetch(client, *arrays):
    return cluster_fetch(*arrays)


def test_row_ops_chunk_local_and_split(client, rng):
    x = (rng.standard_normal((64, 48)) * 3 + 1e3).astype(np.float32)
    local = da.from_array(x, chunks=(16, 48))
    split = da.from_array(x, chunks=(16, 20))
    y_local, y_split, s_split = fetch(
        client, rsnorm.layer_norm(local), rsnorm.layer_norm(split), rsnorm.softmax(split * 1e-3)
    )
    np.testing.assert_array_equal(y_local, rsnorm.layer_norm(x))
    np.testing.assert_allclose(y_split, rsnorm.layer_norm(x.astype(np.float64)), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(s_split, rsnorm.softmax((x * np.float32(1e-3)).astype(np.float64)), rtol=1e-6)


def test_exact_statistics_batch_norm_and_scaler(client, rng):
    x = (rng.standard_normal((400, 6, 5)) + 1e5).astype(np.float32)
    dx = da.from_array(x, chunks=(50, 3, 5))
    exact = x.astype(np.float64)
    count, mean, m2 = fetch(client, *rd.moments(dx, (0, 2)))
    np.testing.assert_allclose(mean, exact.mean(axis=(0, 2)), rtol=1e-14)
    np.testing.assert_allclose(m2 / count, exact.var(axis=(0, 2)), rtol=1e-10)
    (y,) = fetch(client, rsnorm.batch_norm(dx, training=True))
    np.testing.assert_allclose(y, rsnorm.batch_norm(x, training=True), rtol=1e-4, atol=1e-4)
    table = da.from_array(x.reshape(400, 30), chunks=(37, 30))
    scaler = rd.StandardScaler().fit(table)  # computes on the cluster
    np.testing.assert_allclose(scaler.var_, exact.reshape(400, 30).var(0), rtol=1e-10)
    (z,) = fetch(client, scaler.transform(table))
    np.testing.assert_allclose(z.std(0), 1.0, rtol=1e-4)


def test_workers_share_the_cores_with_rsnorms_threads(client):
    """Two workers of one Dask thread on this host: each computes with cores / 2 rsnorm threads."""
    import os

    counts = rd.limit_threads(client)
    assert len(counts) == 2
    assert set(counts.values()) == {max(1, (os.cpu_count() or 1) // 2)}
    assert set(rd.limit_threads(client, threads=1).values()) == {1}
    with pytest.raises(ValueError, match="ThreadLimit: threads must be 1 to 1024, got 0"):
        rd.ThreadLimit(0)


def test_stats_cli_runs_its_blocks_on_a_cluster(cluster_client, tmp_path, monkeypatch):
    """--scheduler: the workers open the files by path, fit partials and write their rows of the
    output; the same numbers as the local run."""
    from rsnorm import stats_cli

    monkeypatch.setattr(stats_cli, "BLOCK_BYTES", 8192)  # many blocks, shipped to both workers
    x = (np.random.default_rng(4).standard_normal((2000, 6)) + 1e5).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    address = cluster_client.scheduler.address
    for where, extra in (("local", []), ("cluster", ["--scheduler", address])):
        base = ["--quiet", *extra]
        assert (
            stats_cli.main(
                ["fit", str(tmp_path / "x.npy"), "--axis", "0", "-o", str(tmp_path / f"{where}.npz"), *base]
            )
            == 0
        )
        args = [
            "apply",
            str(tmp_path / "x.npy"),
            str(tmp_path / f"{where}.npz"),
            "-o",
            str(tmp_path / f"{where}.npy"),
        ]
        assert stats_cli.main([*args, *base]) == 0
    for name in ("count", "mean", "var"):
        np.testing.assert_array_equal(
            np.load(tmp_path / "local.npz")[name], np.load(tmp_path / "cluster.npz")[name]
        )
    np.testing.assert_array_equal(np.load(tmp_path / "local.npy"), np.load(tmp_path / "cluster.npy"))
    exact = x.astype(np.float64)
    np.testing.assert_allclose(np.load(tmp_path / "cluster.npz")["var"], exact.var(0), rtol=1e-12)
    assert (
        stats_cli.main(
            [
                "fit",
                str(tmp_path / "x.npy"),
                "-o",
                str(tmp_path / "n.npz"),
                "--quiet",
                "--scheduler",
                "127.0.0.1:not-a-port",
            ]
        )
        == 2
    )
    assert not (tmp_path / "n.npz").exists()


FORKED = """
import dask, dask.array as da, distributed, numpy as np
import rsnorm, rsnorm.dask

if __name__ == "__main__":
    x = np.random.default_rng(0).standard_normal((64, 300))
    rsnorm.layer_norm(np.tile(x, (8, 1)))  # the parent's pool has threads now
    dask.config.set({"distributed.worker.multiprocessing-method": "fork"})
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=2, processes=True, host="127.0.0.1", dashboard_address=":0"
    ) as cluster, distributed.Client(cluster) as client:
        y = client.compute(rsnorm.layer_norm(da.from_array(x, chunks=(8, 300)))).result(timeout=120)
        assert np.array_equal(y, rsnorm.layer_norm(x))
    print("ok")
"""


def test_forked_worker_processes(tmp_path):
    """Worker processes started by fork (not the default spawn) from a process whose rsnorm pool
    has run: rsnorm in them computes, and nothing hangs. In its own process: the start method is
    process-wide state."""
    import subprocess

    script = tmp_path / "forked.py"
    script.write_text(FORKED)
    done = subprocess.run([*PYTHON, str(script)], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_dask_benchmark_runs_every_job(tmp_path):
    """``bench --device dask`` on a small array: every job timed, ratios against rsnorm's."""
    from rsnorm.bench.dask import format_dask, run_dask

    report = run_dask(size_gb=0.02, rounds=1, folder=str(tmp_path), progress=False)
    jobs = {r["job"]: r for r in report["results"]}
    assert {"standardize: rsnorm.dask", "standardize: io floor (read twice)"} <= set(jobs)
    assert all(r["seconds"] > 0 for r in report["results"])
    assert jobs["standardize: rsnorm.dask"]["vs_rsnorm"] == 1.0
    assert "x rsnorm" in format_dask(report)
