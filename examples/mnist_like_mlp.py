"""Train a NumPy MLP with LayerNorm and BatchNorm layers using only NumPy and rsnorm.

    python examples/mnist_like_mlp.py [--epochs 5]

Synthetic MNIST-like data (10 classes of 784-pixel "images" around random prototypes), a
Linear → LayerNorm → ReLU → Linear → BatchNorm → ReLU → Linear network, softmax cross-entropy,
and AdamW: forward and backward through rsnorm.nn layers, updates by rsnorm.optim.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import numpy.typing as npt

import rsnorm as rn

Array = npt.NDArray[Any]


class Linear(rn.nn.Module):
    """y = x Wᵀ + b, written as an rsnorm.nn.Module so the optimizer sees its parameters."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator) -> None:
        super().__init__()
        bound = 1 / np.sqrt(n_in)
        self._parameters["weight"] = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        self._parameters["bias"] = np.zeros(n_out, np.float32)

    def forward(self, x: npt.ArrayLike) -> Array:
        x = np.asarray(x)
        self._saved = (x,)
        return x @ self._array("weight").T + self._array("bias")

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        (x,) = self._saved_for_backward()
        go = np.asarray(grad_out)
        self._set_grads(weight=go.T @ x, bias=go.sum(axis=0))
        return go @ self._array("weight")


class ReLU(rn.nn.Module):
    def forward(self, x: npt.ArrayLike) -> Array:
        x = np.asarray(x)
        self._saved = (x > 0,)
        return np.maximum(x, 0)

    def backward(self, grad_out: npt.ArrayLike) -> Array:
        (mask,) = self._saved_for_backward()
        return np.asarray(grad_out) * mask


def synthetic_digits(n: int, prototypes: Array, rng: np.random.Generator) -> tuple[Array, Array]:
    """n samples of 10 classes: each class's 784-pixel prototype plus noise."""
    labels = rng.integers(0, 10, n)
    images = prototypes[labels] + 8.0 * rng.standard_normal((n, 784)).astype(np.float32)
    return images, labels


def softmax_cross_entropy(logits: Array, labels: Array) -> tuple[float, Array]:
    """Mean cross-entropy and its gradient with respect to the logits."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(shifted)
    probs /= probs.sum(axis=1, keepdims=True)
    n = len(labels)
    loss = float(-np.log(probs[np.arange(n), labels] + 1e-12).mean())
    grad = probs
    grad[np.arange(n), labels] -= 1
    return loss, grad / n


def train(epochs: int = 5, batch: int = 128, seed: int = 0, verbose: bool = True) -> dict[str, list[float]]:
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((10, 784)).astype(np.float32)
    x_train, y_train = synthetic_digits(4096, prototypes, rng)
    x_test, y_test = synthetic_digits(1024, prototypes, rng)
    layers: list[rn.nn.Module] = [
        Linear(784, 256, rng),
        rn.nn.LayerNorm(256),
        ReLU(),
        Linear(256, 128, rng),
        rn.nn.BatchNorm(128),
        ReLU(),
        Linear(128, 10, rng),
    ]
    params = [(layer, name, p) for layer in layers for name, p in layer.parameters().items()]
    opt = rn.optim.AdamW([p for _, _, p in params], lr=2e-3, weight_decay=1e-2)
    history: dict[str, list[float]] = {"loss": [], "test_accuracy": []}
    for epoch in range(epochs):
        for layer in layers:
            layer.train()
        order = rng.permutation(len(x_train))
        losses = []
        for start in range(0, len(order), batch):
            idx = order[start : start + batch]
            h = x_train[idx]
            for layer in layers:
                h = layer(h)
            loss, grad = softmax_cross_entropy(h, y_train[idx])
            for layer in reversed(layers):
                grad = layer.backward(grad)
            opt.step([layer.grad[name] for layer, name, _ in params], clip_grad_norm=5.0)
            losses.append(loss)
        for layer in layers:
            layer.eval()
        h = x_test
        for layer in layers:
            h = layer(h)
        accuracy = float((h.argmax(axis=1) == y_test).mean())
        history["loss"].append(float(np.mean(losses)))
        history["test_accuracy"].append(accuracy)
        if verbose:
            print(f"epoch {epoch + 1}: train loss {history['loss'][-1]:.4f}, test accuracy {accuracy:.3f}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    train(parser.parse_args().epochs)
