"""What this CPU can do at best: FP32 and INT8 GEMM with ONNX Runtime's MLAS kernels."""

from __future__ import annotations

import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper

from ..quant.onnx_graph import IR_VERSION

N = 1024


class GemmPeak:
    """A 1024^3 GEMM with ONNX Runtime's own kernels (the ones the engines use), FP32 (`MatMul`) or INT8
    (`MatMulInteger`, u8 x s8: the kernel `MatMulIntegerToFloat` uses). `run` times one; `gops` is the best
    rate seen, so a peak timed in turn with the engines, through the same noise, ends as the quiet one."""

    def __init__(self, kind: str, threads: int = 0) -> None:
        rng = np.random.default_rng(0)
        if kind == "fp32":
            op, a_type, b_type, y_type = "MatMul", TensorProto.FLOAT, TensorProto.FLOAT, TensorProto.FLOAT
            self.feeds = {"a": rng.standard_normal((N, N)).astype(np.float32),
                          "b": rng.standard_normal((N, N)).astype(np.float32)}
        elif kind == "int8":
            op, a_type, b_type, y_type = "MatMulInteger", TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32
            self.feeds = {"a": rng.integers(0, 255, (N, N), dtype=np.uint8),
                          "b": rng.integers(-127, 127, (N, N), dtype=np.int8)}
        else:
            raise ValueError(f"GEMM kind {kind!r}: fp32 or int8")
        graph = helper.make_graph(
            [helper.make_node(op, ["a", "b"], ["y"])], "gemm",
            [helper.make_tensor_value_info("a", a_type, [N, N]), helper.make_tensor_value_info("b", b_type, [N, N])],
            [helper.make_tensor_value_info("y", y_type, [N, N])])
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=IR_VERSION)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # as the engines' sessions
        self.session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        self.session.run(None, self.feeds)  # warm-up, not timed
        self.best_s = float("inf")
        self.run()

    def run(self) -> None:
        t = time.perf_counter()
        self.session.run(None, self.feeds)
        self.best_s = min(self.best_s, time.perf_counter() - t)

    @property
    def gops(self) -> float:
        """Best rate so far, in G operations (2 per multiply-accumulate) per second."""
        return 2 * N**3 / self.best_s / 1e9


def vit_gmacs(depth: int, dim: int, tokens: int, mlp_ratio: float = 4.0) -> float:
    """Multiply-accumulates of one ViT forward (Linear layers + attention matmuls), in G."""
    linear = depth * tokens * dim * dim * (3 + 1 + 2 * mlp_ratio)
    attention = depth * 2 * tokens * tokens * dim
    return (linear + attention) / 1e9
