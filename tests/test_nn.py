"""rsnorm.nn layers: their forward against the functions, their backward against finite differences."""

from __future__ import annotations

import numpy as np
import pytest
from gradients import check, numeric_grad

import rsnorm as rn
from conftest import lrn_ref


@pytest.mark.parametrize(
    "make",
    [
        lambda: rn.nn.LayerNorm(6, dtype=np.float64),
        lambda: rn.nn.RMSNorm(6, eps=1e-6, dtype=np.float64),
        lambda: rn.nn.BatchNorm(6, dtype=np.float64),
        lambda: rn.nn.BatchNorm(6, mean_only=True, dtype=np.float64),
        lambda: rn.nn.GroupNorm(3, 6, dtype=np.float64),
        lambda: rn.nn.InstanceNorm(6, affine=True, dtype=np.float64),
        lambda: rn.nn.WeightNormLinear(6, 4, dtype=np.float64, seed=0),
        lambda: rn.nn.CosineLinear(6, 4, bias=True, dtype=np.float64, seed=0),
    ],
)
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_layer_backward_matches_finite_differences(rng, make, mode):
    layer = make()
    # Non-trivial parameters and running statistics.
    for arr in layer.parameters().values():
        arr[...] = rng.standard_normal(arr.shape) + 1
    if isinstance(layer, (rn.nn.CosineLinear, rn.nn.WeightNormLinear)):
        x = rng.standard_normal((5, 6))
    else:
        x = rng.standard_normal(
            (5, 6, 3) if not isinstance(layer, (rn.nn.LayerNorm, rn.nn.RMSNorm)) else (5, 3, 6)
        )
    layer(x)  # one training step moves the running statistics
    if mode == "eval":
        layer.eval()
    # A training forward moves the running statistics: loss() restores them (buffers only).
    state = {k: v.copy() for k, v in layer.state_dict().items() if k not in layer.parameters()}
    go = rng.standard_normal(layer(x).shape)
    dx = layer.backward(go)

    def loss():
        layer.load_state_dict(state, strict=False)
        return float((go * layer(x)).sum())

    check(dx, numeric_grad(loss, x), f"{type(layer).__name__} dx")
    assert set(layer.grad) == set(layer.parameters())
    for name, param in layer.parameters().items():
        grads_now = dict(layer.grad)
        check(grads_now[name], numeric_grad(loss, param), f"{type(layer).__name__} d{name}")


def test_layers(rng):
    x = rng.standard_normal((128, 10)).astype(np.float32)
    layer = rn.nn.WeightNormLinear(10, 6, seed=1)
    assert set(layer.state_dict()) == {"weight_g", "weight_v", "bias"}
    assert layer.state_dict()["weight_g"].shape == (6, 1)
    y = layer.init_from_batch(x)
    np.testing.assert_allclose(y.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(y.std(0), 1, rtol=1e-4)
    np.testing.assert_allclose(layer(x), y, rtol=1e-6)
    lrn = rn.nn.LocalResponseNorm(3, alpha=1e-2)
    xs = rng.standard_normal((2, 5, 4))
    np.testing.assert_allclose(lrn(xs), lrn_ref(xs, 3, 1e-2), rtol=1e-12)
    cos = rn.nn.CosineLinear(10, 4, bias=True, seed=0)
    np.testing.assert_allclose(
        cos(x), rn.cosine_linear(x, cos.parameters()["weight"], np.zeros(4)), rtol=1e-6
    )


def test_sequence_batch_norm_steps_beyond_max(rng):
    seq = rn.nn.SequenceBatchNorm(3, max_steps=2, momentum=0.5, dtype=np.float64)
    x = rng.standard_normal((4, 16, 3)) + np.arange(4)[:, None, None]
    seq(x)
    rm = seq.state_dict()["running_mean"]
    np.testing.assert_allclose(rm[0], 0.5 * x[0].mean(0), rtol=1e-12)
    # Steps 1, 2, 3 all update step 1's statistics, in order.
    want = np.zeros(3)
    for t in (1, 2, 3):
        want = 0.5 * want + 0.5 * x[t].mean(0)
    np.testing.assert_allclose(rm[1], want, rtol=1e-12)
    seq.eval()
    y = seq(x)
    rv = seq.state_dict()["running_var"]
    np.testing.assert_allclose(y[3], (x[3] - rm[1]) / np.sqrt(rv[1] + 1e-5), rtol=1e-12)
    with pytest.raises(ValueError, match=r"must be \(T, N, 3, \.\.\.\)"):
        seq(np.zeros((2, 3)))
