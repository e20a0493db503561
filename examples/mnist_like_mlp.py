"""Train a NumPy MLP with LayerNorm and BatchNorm layers using only NumPy and rsnorm.

    python examples/mnist_like_mlp.py [--epochs 5] [--device cpu|gpu] [--samples 4096]

Synthetic MNIST-like data (10 classes of 784-pixel "images" around random prototypes), a
Linear → LayerNorm → ReLU → Linear → BatchNorm → ReLU → Linear network, softmax cross-entropy,
and AdamW: forward and backward through rsnorm.nn layers, updates by rsnorm.optim.

With ``--device gpu`` the parameters, gradients, activations and optimizer state stay on the GPU
(rsnorm.gpu arrays): each step uploads its batch, and the loss is read back once per epoch (a device
array until then). The labels stay a host integer array, as cross-entropy takes class indices.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np
import numpy.typing as npt

import rsnorm as rn
from rsnorm import gpu

Array = npt.NDArray[Any]


class Linear(rn.nn.Module):
    """y = x Wᵀ + b, written as an rsnorm.nn.Module so the optimizer sees its parameters."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator) -> None:
        super().__init__()
        bound = 1 / np.sqrt(n_in)
        self._parameters["weight"] = rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32)
        self._parameters["bias"] = np.zeros(n_out, np.float32)

    # A row of ones on the device for the bias gradient, made once per batch size.
    _ones: Any = None

    def forward(self, x: Any) -> Any:
        self._saved = (x,)
        w: Any = self._array("weight")
        b: Any = self._array("bias")
        if isinstance(x, gpu.Array):
            return gpu.matmul(x, w, bias=b, transpose_b=True)
        return np.asarray(x) @ w.T + b

    def backward(self, grad_out: Any) -> Any:
        (x,) = self._saved_for_backward()
        w: Any = self._array("weight")
        if isinstance(grad_out, gpu.Array):
            # The bias gradient as a row of ones times grad_out: a column sum in a fixed order.
            n = grad_out.shape[0]
            if self._ones is None or self._ones.shape[1] != n:
                self._ones = gpu.asarray(np.ones((1, n), grad_out.dtype))
            ones = self._ones
            dbias: Any = gpu.matmul(ones, grad_out).reshape(grad_out.shape[1])
            dweight: Any = gpu.matmul(grad_out, x, transpose_a=True)
            self._set_grads(weight=dweight, bias=dbias)
            return gpu.matmul(grad_out, w)
        go = np.asarray(grad_out)
        self._set_grads(weight=go.T @ x, bias=go.sum(axis=0))
        return go @ w


class ReLU(rn.nn.Module):
    def forward(self, x: Any) -> Any:
        self._saved = (x,)
        return gpu.relu(x) if isinstance(x, gpu.Array) else np.maximum(np.asarray(x), 0)

    def backward(self, grad_out: Any) -> Any:
        (x,) = self._saved_for_backward()
        if isinstance(grad_out, gpu.Array):
            return gpu.relu_backward(grad_out, x)
        return np.asarray(grad_out) * (x > 0)


def synthetic_digits(n: int, prototypes: Array, rng: np.random.Generator) -> tuple[Array, Array]:
    """n samples of 10 classes: each class's 784-pixel prototype plus noise."""
    labels = rng.integers(0, 10, n)
    images = prototypes[labels] + 8.0 * rng.standard_normal((n, 784)).astype(np.float32)
    return images, labels


def host(value: Any) -> Array:
    """A NumPy copy of a device array (the one way back from the GPU), or the host array itself."""
    return value.numpy() if isinstance(value, gpu.Array) else np.asarray(value)


def softmax_cross_entropy(logits: Any, labels: Array) -> tuple[Any, Any]:
    """Mean cross-entropy (a device array for device logits, read when the caller chooses) and its
    gradient with respect to the logits."""
    loss = rn.cross_entropy_with_logits(logits, labels)
    return loss, rn.cross_entropy_with_logits_backward(1.0, logits, labels)


def train(
    epochs: int = 5,
    batch: int = 128,
    seed: int = 0,
    verbose: bool = True,
    device: str = "cpu",
    samples: int = 4096,
) -> dict[str, list[float]]:
    """Train for ``epochs`` over ``samples`` training images (and a quarter as many test images)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.standard_normal((10, 784)).astype(np.float32)
    x_train, y_train = synthetic_digits(samples, prototypes, rng)
    x_test, y_test = synthetic_digits(samples // 4, prototypes, rng)
    layers: list[rn.nn.Module] = [
        Linear(784, 256, rng),
        rn.nn.LayerNorm(256),
        ReLU(),
        Linear(256, 128, rng),
        rn.nn.BatchNorm(128),
        ReLU(),
        Linear(128, 10, rng),
    ]
    on_gpu = device == "gpu"
    if on_gpu:
        layers = [layer.to_device() for layer in layers]
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
            h = gpu.asarray(x_train[idx]) if on_gpu else x_train[idx]
            for layer in layers:
                h = layer(h)
            loss, grad = softmax_cross_entropy(h, y_train[idx])
            for layer in reversed(layers):
                grad = layer.backward(grad)
            opt.step([layer.grad[name] for layer, name, _ in params], clip_grad_norm=5.0)
            losses.append(loss)
        for layer in layers:
            layer.eval()
        h = gpu.asarray(x_test) if on_gpu else x_test
        for layer in layers:
            h = layer(h)
        accuracy = float((host(h).argmax(axis=1) == y_test).mean())
        # The epoch's losses read back at once (device arrays until now on the GPU).
        history["loss"].append(float(np.mean([float(host(loss)) for loss in losses])))
        history["test_accuracy"].append(accuracy)
        if verbose:
            print(f"epoch {epoch + 1}: train loss {history['loss'][-1]:.4f}, test accuracy {accuracy:.3f}")
    return history


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    parser.add_argument("--samples", type=int, default=4096, help="training images (test: a quarter)")
    args = parser.parse_args()
    train(args.epochs, device=args.device, samples=args.samples)
