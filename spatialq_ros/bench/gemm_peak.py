"""What this CPU can do at best: FP32 and INT8 GEMM with ONNX Runtime's MLAS kernels."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from ..quant.onnx_graph import IR_VERSION

N = 1024


def fp32_gflops(repeats: int = 5, threads: int = 0) -> float:
    feeds = {"a": np.random.default_rng(0).standard_normal((N, N)).astype(np.float32),
             "b": np.random.default_rng(1).standard_normal((N, N)).astype(np.float32)}
    return _peak("MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT, feeds, repeats, threads)


def int8_gops(repeats: int = 5, threads: int = 0) -> float:
    feeds = {"a": np.random.default_rng(0).integers(0, 255, (N, N), dtype=np.uint8),
             "b": np.random.default_rng(1).integers(-127, 127, (N, N), dtype=np.int8)}
    return _peak("MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32, feeds, repeats, threads)


def _peak(op: str, a_type: int, b_type: int, y_type: int, feeds: dict, repeats: int, threads: int) -> float:
    """Best of `repeats` 1024^3 GEMMs with ONNX Runtime's own kernels (the ones the engines use)."""
    graph = helper.make_graph(
        [helper.make_node(op, ["a", "b"], ["y"])], "gemm",
        [helper.make_tensor_value_info("a", a_type, [N, N]), helper.make_tensor_value_info("b", b_type, [N, N])],
        [helper.make_tensor_value_info("y", y_type, [N, N])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=IR_VERSION)
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    session.run(None, feeds)
    best = min(_timed(lambda: session.run(None, feeds)) for _ in range(repeats))
    return 2 * N**3 / best / 1e9


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def vit_gmacs(depth: int, dim: int, tokens: int, mlp_ratio: float = 4.0) -> float:
    """Multiply-accumulates of one ViT forward (Linear layers + attention matmuls), in G."""
    linear = depth * tokens * dim * dim * (3 + 1 + 2 * mlp_ratio)
    attention = depth * 2 * tokens * tokens * dim
    return (linear + attention) / 1e9
