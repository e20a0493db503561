"""PyTorch's constructor switches on the normalization layers, against float64 references of
PyTorch's documented behaviour: ``affine=False`` (no parameters), ``track_running_stats=False``
(batch statistics in eval too, no buffers) and InstanceNorm's ``track_running_stats=True``."""

from __future__ import annotations

import numpy as np

import rsnorm


def _normalized(x, axes, eps=1e-5):
    x = np.asarray(x, np.float64)
    mean = x.mean(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)


def test_batch_norm_without_affine_or_running_statistics(rng):
    x = (rng.standard_normal((8, 3, 5)) * 2 + 4).astype(np.float32)
    layer = rsnorm.nn.BatchNorm(3, affine=False, track_running_stats=False)
    assert layer.state_dict() == {} and list(layer.parameters()) == []
    for mode in (layer.train, layer.eval):  # batch statistics either way
        mode()
        np.testing.assert_allclose(layer(x), _normalized(x, (0, 2)), rtol=2e-5, atol=2e-5)
    tracked = rsnorm.nn.BatchNorm(3, affine=True)
    assert set(tracked.state_dict()) == {
        "weight",
        "bias",
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }


def test_instance_norm_tracking_running_statistics(rng):
    """PyTorch's InstanceNorm(track_running_stats=True): training normalizes each instance alone and
    moves the running statistics towards the batch average of the instances' mean and unbiased
    variance; evaluation normalizes with the running statistics."""
    layer = rsnorm.nn.InstanceNorm(3, momentum=0.1, affine=True, track_running_stats=True, dtype=np.float64)
    assert set(layer.state_dict()) == {"weight", "bias", "running_mean", "running_var", "num_batches_tracked"}
    rm, rv = np.zeros(3), np.ones(3)
    for step in range(3):
        x = rng.standard_normal((4, 3, 6)) * (step + 1) + step
        np.testing.assert_allclose(layer(x), _normalized(x, (2,)), rtol=1e-12, atol=1e-12)
        rm = 0.9 * rm + 0.1 * x.mean(axis=2).mean(axis=0)
        rv = 0.9 * rv + 0.1 * x.var(axis=2, ddof=1).mean(axis=0)
        state = layer.state_dict()
        np.testing.assert_allclose(state["running_mean"], rm, rtol=1e-12)
        np.testing.assert_allclose(state["running_var"], rv, rtol=1e-12)
        assert int(state["num_batches_tracked"]) == step + 1
    layer.eval()
    x = rng.standard_normal((2, 3, 6))
    want = (x - rm[:, None]) / np.sqrt(rv[:, None] + 1e-5)
    np.testing.assert_allclose(layer(x), want, rtol=1e-12, atol=1e-12)
    plain = rsnorm.nn.InstanceNorm(3)
    assert plain.state_dict() == {}
    plain.eval()
    np.testing.assert_allclose(plain(x), _normalized(x, (2,)), rtol=1e-6, atol=1e-6)
