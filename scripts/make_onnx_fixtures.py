#!/usr/bin/env python3
"""Builds the small ONNX networks the tests run (site-agent/tests/fixtures/onnx/) and the
reference outputs onnxruntime gives on fixed inputs, so the Rust tests can compare FedRad's
inference (tract) with onnxruntime without Python at test time.

    pip install onnx onnxruntime numpy
    python3 scripts/make_onnx_fixtures.py

Writes, per network, NAME.onnx and NAME.expected.json ({"input_shape", "inputs": [...],
"outputs": [...]}, inputs and outputs flattened row-major). Deterministic (fixed seeds).
"""
import json
import pathlib

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

OUT = pathlib.Path(__file__).resolve().parent.parent / "site-agent" / "tests" / "fixtures" / "onnx"


def init(name, array):
    return numpy_helper.from_array(array.astype(np.float32), name)


def tiny_cnn(rng, channels, size, outputs):
    """Conv-ReLU-MaxPool-Conv-ReLU-GlobalAveragePool-Flatten-Gemm: the shape of the CNNs whose
    last layer radiomics papers call deep features, at toy scale."""
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("GlobalAveragePool", ["r2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "w3", "b3"], ["features"], transB=1),
    ]
    inits = [
        init("w1", rng.normal(0, 0.3, (6, channels, 3, 3))),
        init("b1", rng.normal(0, 0.1, (6,))),
        init("w2", rng.normal(0, 0.2, (8, 6, 3, 3))),
        init("b2", rng.normal(0, 0.1, (8,))),
        init("w3", rng.normal(0, 0.5, (outputs, 8))),
        init("b3", rng.normal(0, 0.1, (outputs,))),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, channels, size, size])],
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, outputs])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="fedrad-fixtures")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def write(name, model, rng, shape, count=3):
    path = OUT / f"{name}.onnx"
    path.write_bytes(model.SerializeToString())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    inputs, outputs = [], []
    for _ in range(count):
        x = rng.normal(0, 1, shape).astype(np.float32)
        (y,) = session.run(None, {"input": x})
        inputs.append([float(v) for v in x.ravel()])
        outputs.append([float(v) for v in y.ravel()])
    (OUT / f"{name}.expected.json").write_text(json.dumps({"input_shape": list(shape), "inputs": inputs, "outputs": outputs}) + "\n")
    print(f"{path}: {path.stat().st_size} bytes, onnxruntime {ort.__version__}")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20261130)
    write("tiny_cnn_3ch", tiny_cnn(rng, 3, 32, 10), rng, (1, 3, 32, 32))
    write("tiny_cnn_1ch", tiny_cnn(rng, 1, 16, 5), rng, (1, 1, 16, 16))


if __name__ == "__main__":
    main()
