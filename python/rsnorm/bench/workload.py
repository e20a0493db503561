"""What the runner times: a workload (one op on one shape, each implementation as a callable), its
result, the registry of op families that declare workloads, and the optional peers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .suites import Suite

EPS = 1e-5


# The rooflines a row is held to, each timed with rsnorm's threads on the workload's bytes: "copy"
# (half read from one buffer, half written to another), "in-place" (the workload's own arrays, or a
# buffer the size of its footprint, read and written back, its time scaled to the workload's bytes:
# in-place updates such as optimizer steps), "read" (all read and summed: reductions such as losses,
# divergences and moments); or "matmul" (the workload's matrix products alone, by NumPy's BLAS:
# cosine_linear). Each reference touches as many distinct bytes as its workload: this machine's
# cache holds tens of MB, and a smaller reference would run from it.
ROOFLINES = ("copy", "in-place", "read", "matmul")


@dataclass
class Workload:
    op: str
    shape: tuple[int, ...]
    dtype: str
    bytes_moved: int
    impls: dict[str, Callable[[], object]] = field(repr=False)
    roofline: str = "copy"
    # With roofline "matmul": the workload's matrix products, timed as its roofline.
    matmul: Callable[[], object] | None = field(default=None, repr=False)
    # With roofline "in-place": the bytes of the arrays the workload touches, each counted once,
    # and those arrays, which the roofline then streams themselves: in the workload's own
    # allocations and pages (many small tensors sit on 4 KB pages, one buffer of the same bytes
    # on huge pages).
    footprint: int | None = None
    arrays: list[np.ndarray] | None = field(default=None, repr=False)


@dataclass
class Result:
    op: str
    shape: tuple[int, ...]
    dtype: str
    bytes_moved: int
    median_s: dict[str, float]
    # Which entry of median_s is the row's roofline (one of ROOFLINES).
    roofline: str = "copy"

    def gbps(self, impl: str) -> float:
        return self.bytes_moved / self.median_s[impl] / 1e9


# An op family's workloads for a suite, given rsnorm's thread count (the peers get as many).
Family = Callable[["Suite", int], "list[Workload]"]

# The families in the order a run times them; each module of an op family registers itself.
FAMILIES: dict[str, Family] = {}


def family(name: str) -> Callable[[Family], Family]:
    """Registers the decorated function as op family `name`'s workloads."""

    def register(fn: Family) -> Family:
        FAMILIES[name] = fn
        return fn

    return register


# ---------------------------------------------------------------- peers (optional)


def torch_or_none():
    try:
        import torch
    except ImportError:
        return None
    return torch


def onnxruntime_or_none():
    try:
        import onnx
        import onnxruntime
    except ImportError:
        return None
    return onnx, onnxruntime


def ort_call(node_type: str, feeds: dict, attrs: dict, opset: int, threads: int):
    """A callable running a one-node ONNX model `node_type` on `feeds` (name → array, first one the
    data), or None when ONNX Runtime is absent or lacks the node."""
    peers = onnxruntime_or_none()
    if peers is None:
        return None
    _, ort = peers
    from onnx import TensorProto, helper

    first = next(iter(feeds.values()))
    elem = TensorProto.FLOAT if first.dtype == np.float32 else TensorProto.DOUBLE
    inputs = [helper.make_tensor_value_info(k, elem, list(v.shape)) for k, v in feeds.items()]
    node = helper.make_node(node_type, list(feeds), ["Y"], **attrs)
    output = helper.make_tensor_value_info("Y", elem, list(first.shape))
    model = helper.make_model(
        helper.make_graph([node], node_type, inputs, [output]), opset_imports=[helper.make_opsetid("", opset)]
    )
    model.ir_version = min(model.ir_version, 10)
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # Old-opset nodes (LRN, InstanceNorm) otherwise print ORT's opset warnings over the table.
    options.log_severity_level = 3
    # ORT's workers otherwise spin for a while after each run, stealing the cores from whatever
    # is timed next in the interleaved rounds.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        session.run(None, feeds)
    except Exception:  # this runtime does not implement the node (or the opset)
        return None
    return partial(session.run, None, feeds)


def scipy_or_none():
    try:
        import scipy.spatial.distance
        import scipy.stats
    except ImportError:
        return None
    return scipy


def missing_peers() -> list[tuple[str, str]]:
    """The optional peers that are not installed, as (name, what to pip install)."""
    absent = []
    if scipy_or_none() is None:
        absent.append(("scipy", "scipy"))
    if torch_or_none() is None:
        absent.append(("torch", "torch"))
    if onnxruntime_or_none() is None:
        absent.append(("onnxruntime", "onnx onnxruntime"))
    return absent


def torch_train_step(torch, forward, inputs, go):
    """PyTorch autograd over `forward(*inputs)`: gradients of every input."""
    tensors = [torch.from_numpy(a).requires_grad_() for a in inputs]
    y = forward(*tensors)
    return torch.autograd.grad(y, tensors, torch.from_numpy(go))
