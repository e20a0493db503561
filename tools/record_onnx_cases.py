"""Records ONNX backend node tests (inputs, attributes, expected outputs) into tests/data, so the
test suite checks rsnorm against them without the onnx package: NegativeLogLikelihoodLoss and
SoftmaxCrossEntropyLoss (nll_loss, cross_entropy_with_logits) into onnx_losses.npz, LpNormalization
(normalize) into onnx_lp_normalization.npz. The node tests have one LpNormalization case (p=2, last
axis); ONNX Runtime's outputs for p=1 and p=2 along every axis of a (3, 4, 5) input with negative
values and a zero slice are recorded beside it (the reference evaluator's p=1 sums x, not |x|).

    pip install onnx onnxruntime && python tools/record_onnx_cases.py
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np

# Each file of tests/data and the prefixes of the case names it holds.
FILES = {
    "onnx_losses.npz": ("test_nllloss", "test_sce"),
    "onnx_lp_normalization.npz": ("test_lpnormalization",),
}


def record(cases: list, file: str, prefixes: tuple[str, ...], extra: list) -> None:
    import onnx

    arrays: dict[str, np.ndarray] = {}
    index = []
    for case in cases:
        if case.name.endswith("_expanded") or not case.name.startswith(prefixes):
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
    for name, attrs, x, y in extra:
        key = f"{name}/0"
        arrays[f"{key}/in0"], arrays[f"{key}/out0"] = x, y
        index.append({"key": key, "op": "LpNormalization", "inputs": 1, "attrs": attrs})
    out = Path(__file__).resolve().parents[1] / "tests" / "data" / file
    np.savez_compressed(out, index=np.array(json.dumps(index)), **arrays)
    print(f"{len(index)} cases -> {out} (onnx {onnx.__version__})")


def main() -> None:
    from onnx.backend.test.loader import load_model_tests

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = load_model_tests(kind="node")
    extra = {"onnx_lp_normalization.npz": lp_normalization_runs()}
    for file, prefixes in FILES.items():
        record(cases, file, prefixes, extra.get(file, []))


def lp_normalization_runs() -> list[tuple[str, dict, np.ndarray, np.ndarray]]:
    """(name, attributes, input, ONNX Runtime's output) of LpNormalization models built here."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    x = np.random.default_rng(24).standard_normal((3, 4, 5)).astype(np.float32)
    x[1, :, 2] = 0.0  # a zero slice along axis 1 (and zeros in slices along the others)
    runs = []
    for p in (1, 2):
        for axis in (0, 1, 2, -1):
            node = helper.make_node("LpNormalization", ["X"], ["Y"], axis=axis, p=p)
            graph = helper.make_graph(
                [node],
                "lp",
                [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                [helper.make_tensor_value_info("Y", TensorProto.FLOAT, x.shape)],
            )
            model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 22)])
            model.ir_version = 10
            onnx.checker.check_model(model)
            session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
            (y,) = session.run(None, {"X": x})
            runs.append((f"onnxruntime_p{p}_axis{axis}", {"axis": axis, "p": p}, x, y))
    return runs


if __name__ == "__main__":
    main()
