"""How much would INT8 attention save on ONNX Runtime's CPU provider? One ViT-S/14 attention block
(6 heads of 64, from the qkv Linear's output to the heads merged back), timed three ways in one process:

* `mha-float`: what `model_cpu.onnx` ships, ORT's fused `MultiHeadAttention`;
* `int8-qk`: q and k quantized (q as uint8 with zero point 128, the u8s8 kernel MLAS is fast at), q·kᵀ
  through `MatMulIntegerToFloat`, softmax and P·V float: the one step the issue's placement would allow;
* `int8-qk-pv`: also P (uint8, scale 1/255) and V in INT8: outside the placement, which keeps the
  attention probabilities float.

Scales are fixed, not calibrated: this measures speed, and prints the error against `mha-float` on random
inputs only to show the three compute the same thing. Run: `python scripts/attention_int8_probe.py`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HEADS, HEAD_DIM = 6, 64
SCALE = 0.05  # q, k and v step on the N(0, 2) inputs below


def _session(nodes: list, tokens: int, consts: dict[str, np.ndarray], threads: int) -> ort.InferenceSession:
    c = HEADS * HEAD_DIM
    used = {name for node in nodes for name in node.input}
    graph = helper.make_graph(
        nodes, "attention", [helper.make_tensor_value_info("qkv", TensorProto.FLOAT, [1, tokens, 3 * c])],
        [helper.make_tensor_value_info("o", TensorProto.FLOAT, [1, tokens, c])],
        [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items() if k in used])
    model = helper.make_model(graph, ir_version=10, opset_imports=[helper.make_opsetid("", 21),
                                                                   helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def build(tokens: int, threads: int) -> dict[str, ort.InferenceSession]:
    n, c = helper.make_node, HEADS * HEAD_DIM
    consts = {"split": np.array([c, c, c], np.int64), "heads": np.array([1, tokens, HEADS, HEAD_DIM], np.int64),
              "merged": np.array([1, tokens, c], np.int64), "s": np.float32(SCALE), "zu": np.uint8(128),
              "zs": np.int8(0), "logit_scale": np.float32(SCALE * HEAD_DIM**-0.5), "ps": np.float32(1 / 255),
              "pz": np.uint8(0)}
    split = n("Split", ["qkv", "split"], ["q", "k", "v"], axis=-1)
    quantized_qk = [
        n("QuantizeLinear", ["q", "s", "zu"], ["q8"]), n("Reshape", ["q8", "heads"], ["q8r"]),
        n("Transpose", ["q8r"], ["q8t"], perm=[0, 2, 1, 3]),
        n("QuantizeLinear", ["k", "s", "zs"], ["k8"]), n("Reshape", ["k8", "heads"], ["k8r"]),
        n("Transpose", ["k8r"], ["k8t"], perm=[0, 2, 3, 1]),
        n("MatMulIntegerToFloat", ["q8t", "k8t", "s", "logit_scale", "zu"], ["logits"], domain="com.microsoft"),
        n("Softmax", ["logits"], ["p"], axis=-1)]
    merge = [n("Transpose", ["pv"], ["pvt"], perm=[0, 2, 1, 3]), n("Reshape", ["pvt", "merged"], ["o"])]
    float_pv = [n("Reshape", ["v", "heads"], ["vr"]), n("Transpose", ["vr"], ["vt"], perm=[0, 2, 1, 3]),
                n("MatMul", ["p", "vt"], ["pv"])]
    int8_pv = [n("QuantizeLinear", ["v", "s", "zs"], ["v8"]), n("Reshape", ["v8", "heads"], ["v8r"]),
               n("Transpose", ["v8r"], ["v8t"], perm=[0, 2, 1, 3]), n("QuantizeLinear", ["p", "ps", "pz"], ["p8"]),
               n("MatMulIntegerToFloat", ["p8", "v8t", "ps", "s", "pz"], ["pv"], domain="com.microsoft")]
    return {
        "mha-float": _session([split, n("MultiHeadAttention", ["q", "k", "v"], ["o"], domain="com.microsoft",
                                        num_heads=HEADS)], tokens, consts, threads),
        "int8-qk": _session([split, *quantized_qk, *float_pv, *merge], tokens, consts, threads),
        "int8-qk-pv": _session([split, *quantized_qk, *int8_pv, *merge], tokens, consts, threads),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="224,448", help="square input sides, multiples of 14")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=30)
    args = parser.parse_args()
    print("| size | tokens | engine | p50 ms per block | rel. error vs mha-float |")
    print("| --- | --- | --- | --- | --- |")
    for side in (int(s) for s in args.sizes.split(",")):
        tokens = (side // 14) ** 2 + 1
        x = np.random.default_rng(0).normal(0, 2, (1, tokens, 3 * HEADS * HEAD_DIM)).astype(np.float32)
        sessions = build(tokens, args.threads)
        reference = sessions["mha-float"].run(None, {"qkv": x})[0]
        times: dict[str, list[float]] = {name: [] for name in sessions}
        for _ in range(args.repeats):  # interleaved, so load on the machine hits every engine alike
            for name, session in sessions.items():
                start = time.perf_counter()
                session.run(None, {"qkv": x})
                times[name].append((time.perf_counter() - start) * 1e3)
        for name, session in sessions.items():
            out = session.run(None, {"qkv": x})[0]
            error = np.linalg.norm(out - reference) / np.linalg.norm(reference)
            print(f"| {side}x{side} | {tokens} | {name} | {np.median(times[name][3:]):.2f} | {error:.3f} |")


if __name__ == "__main__":
    main()
