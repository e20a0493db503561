"""Records the ONNX backend node tests of NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss
(inputs, attributes, expected outputs) into tests/data/onnx_losses.npz, so the test suite checks
rsnorm's nll_loss and cross_entropy_with_logits against them without the onnx package.

    pip install onnx && python tools/record_onnx_losses.py
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np


def main() -> None:
    import onnx
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    arrays: dict[str, np.ndarray] = {}
    index = []
    for case in cases:
        if case.name.endswith("_expanded") or not case.name.startswith(("test_nllloss", "test_sce")):
            continue
        (node,) = case.model.graph.node
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
        for k, (inputs, outputs) in enumerate(case.data_sets):
            key = f"{case.name}/{k}"
            for i, a in enumerate(inputs):
                arrays[f"{key}/in{i}"] = np.asarray(a)
            arrays[f"{key}/out0"] = np.asarray(outputs[0])
            index.append({"key": key, "op": node.op_type, "inputs": len(inputs), "attrs": attrs})
    out = Path(__file__).resolve().parents[1] / "tests" / "data" / "onnx_losses.npz"
    np.savez_compressed(out, index=np.array(json.dumps(index)), **arrays)
    print(f"{len(index)} cases -> {out} (onnx {onnx.__version__})")


if __name__ == "__main__":
    main()
