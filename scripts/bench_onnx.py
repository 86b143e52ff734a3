#!/usr/bin/env python3
"""Per-patient inference time of a study-supplied network: builds a ResNet-18-shaped ONNX
network (random weights; 224x224x3 input, 1000 outputs: the shape of the ImageNet networks
radiomics papers take deep features from), times onnxruntime on one thread, and leaves the
file for FedRad's benchmark:

    pip install onnx onnxruntime numpy
    python3 scripts/bench_onnx.py /tmp/bench-onnx
    cargo run --release -p site-agent --example onnx_bench -- /tmp/bench-onnx/resnet18.onnx
"""
import pathlib
import sys
import time

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

rng = np.random.default_rng(7)
nodes, inits = [], []
count = [0]


def name(prefix):
    count[0] += 1
    return f"{prefix}{count[0]}"


def conv(x, cin, cout, k, stride, relu=True):
    w, b, y = name("w"), name("b"), name("c")
    inits.append(numpy_helper.from_array(rng.normal(0, (2.0 / (cin * k * k)) ** 0.5, (cout, cin, k, k)).astype(np.float32), w))
    inits.append(numpy_helper.from_array(np.zeros(cout, np.float32), b))
    nodes.append(helper.make_node("Conv", [x, w, b], [y], kernel_shape=[k, k], strides=[stride, stride], pads=[k // 2] * 4))
    if not relu:
        return y
    r = name("r")
    nodes.append(helper.make_node("Relu", [y], [r]))
    return r


def block(x, cin, cout, stride):
    y = conv(x, cin, cout, 3, stride)
    y = conv(y, cout, cout, 3, 1, relu=False)
    skip = x if (cin == cout and stride == 1) else conv(x, cin, cout, 1, stride, relu=False)
    s, r = name("s"), name("r")
    nodes.append(helper.make_node("Add", [y, skip], [s]))
    nodes.append(helper.make_node("Relu", [s], [r]))
    return r


x = conv("input", 3, 64, 7, 2)
p = name("p")
nodes.append(helper.make_node("MaxPool", [x], [p], kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]))
x, c = p, 64
for cout, stride in [(64, 1), (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1)]:
    x, c = block(x, c, cout, stride), cout
nodes.append(helper.make_node("GlobalAveragePool", [x], ["g"]))
nodes.append(helper.make_node("Flatten", ["g"], ["f"], axis=1))
inits.append(numpy_helper.from_array(rng.normal(0, 0.05, (1000, 512)).astype(np.float32), "fc_w"))
inits.append(numpy_helper.from_array(np.zeros(1000, np.float32), "fc_b"))
nodes.append(helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["features"], transB=1))
graph = helper.make_graph(
    nodes, "resnet18ish", [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, 224, 224])],
    [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, 1000])], inits)
model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
model.ir_version = 8
onnx.checker.check_model(model)
out = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/bench-onnx")
out.mkdir(parents=True, exist_ok=True)
path = out / "resnet18.onnx"
path.write_bytes(model.SerializeToString())
opts = ort.SessionOptions()
opts.intra_op_num_threads = 1
opts.inter_op_num_threads = 1
session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
xin = rng.normal(0, 1, (1, 3, 224, 224)).astype(np.float32)
session.run(None, {"input": xin})
runs = 10
t = time.perf_counter()
for _ in range(runs):
    session.run(None, {"input": xin})
print(f"{path}: {path.stat().st_size / 1e6:.1f} MB; onnxruntime {ort.__version__}, 1 thread: {(time.perf_counter() - t) / runs * 1000:.0f} ms per patient")
