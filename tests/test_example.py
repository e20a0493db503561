"""The end-to-end example trains: loss goes down and test accuracy is far above chance; on the GPU
it trains the same network to the same figures."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from rsnorm import gpu


def _example():
    path = Path(__file__).parent.parent / "examples" / "mnist_like_mlp.py"
    spec = importlib.util.spec_from_file_location("mnist_like_mlp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_numpy_mlp_trains_with_rsnorm_layers_and_optimizer():
    history = _example().train(epochs=3, verbose=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["test_accuracy"][-1] > 0.8  # chance is 0.1


def test_the_example_trains_on_the_gpu_as_on_the_cpu():
    """--device gpu: parameters, activations, gradients and AdamW state on the device; one epoch gives
    the CPU's loss and accuracy (float32 rounding apart). A quarter of the data: on lavapipe (CI's
    CPU Vulkan device) the full epoch took 50 s."""
    if not gpu.is_available():
        if os.environ.get("RSNORM_REQUIRE_GPU") == "1":
            pytest.fail("RSNORM_REQUIRE_GPU=1 but rsnorm.gpu has no adapter")
        pytest.skip("no GPU adapter")
    example = _example()
    on_gpu = example.train(epochs=1, verbose=False, device="gpu", samples=1024)
    on_cpu = example.train(epochs=1, verbose=False, samples=1024)
    np.testing.assert_allclose(on_gpu["loss"], on_cpu["loss"], rtol=1e-3)
    np.testing.assert_allclose(on_gpu["test_accuracy"], on_cpu["test_accuracy"], atol=0.01)
