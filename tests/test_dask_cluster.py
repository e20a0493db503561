"""rsnorm.dask on a real cluster: a ``distributed.LocalCluster`` of two worker processes with one
thread each, on 127.0.0.1, started and shut down by this module. Every result is fetched with a
timeout, so a hang fails the test instead of the CI job."""

from __future__ import annotations

import numpy as np
import pytest

import rsnorm

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")
rd = pytest.importorskip("rsnorm.dask")

TIMEOUT = 120


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        silence_logs=40,
    )
    with distributed.Client(cluster) as c:
        yield c
    cluster.close()


def fetch(client, *arrays):
    futures = client.compute(list(arrays))
    return [f.result(timeout=TIMEOUT) for f in futures]


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
