"""The end-to-end example trains: loss goes down and test accuracy is far above chance."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def test_numpy_mlp_trains_with_rsnorm_layers_and_optimizer():
    path = Path(__file__).parent.parent / "examples" / "mnist_like_mlp.py"
    spec = importlib.util.spec_from_file_location("mnist_like_mlp", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    history = module.train(epochs=3, verbose=False)
    assert history["loss"][-1] < 0.5 * history["loss"][0]
    assert history["test_accuracy"][-1] > 0.8  # chance is 0.1
