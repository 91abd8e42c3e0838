"""ONNX Runtime engine for the artifact's graphs. Deploy path: numpy, cv2 and onnxruntime only, no torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from ..backbone.preprocess import preprocess
from ..errors import SpatialqError
from .engine import Features
from .factory import artifact_meta

GRAPHS = {"qdq": "model.onnx", "int4": "model_int4.onnx", "cpu": "model_cpu.onnx", "fp32": "fp32.onnx"}
W4A8_GRAPHS = ("qdq", "int4", "cpu")  # one model in three forms: they share the artifact's fingerprint


def preferred_providers() -> list[str]:
    available = ort.get_available_providers()
    order = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    return [p for p in order if p in available]


def auto_graph(folder: Path) -> str:
    """The artifact graph that runs fastest here: the QDQ graph where a GPU provider fuses it, else the CPU
    graph (the same W4A8 numbers as MatMulIntegerToFloat, which ORT's CPU kernels run as INT8)."""
    gpu = {"TensorrtExecutionProvider", "CUDAExecutionProvider"} & set(ort.get_available_providers())
    return "qdq" if gpu or not (folder / GRAPHS["cpu"]).is_file() else "cpu"


class OnnxEngine:
    """path: a graph with the artifact's inputs and outputs made outside it (a baseline quantized from its
    fp32.onnx, e.g. ORT's quantize_dynamic), which `graph` then names."""

    def __init__(self, artifact: str | Path, graph: str = "auto", threads: int = 0,
                 providers: list[str] | None = None, path: Path | None = None) -> None:
        folder = Path(artifact)
        self.meta = artifact_meta(folder)
        graph = auto_graph(folder) if graph == "auto" and path is None else graph
        if path is None and graph not in GRAPHS:
            raise SpatialqError(f"graph must be auto or one of {', '.join(GRAPHS)}, not {graph!r}")
        self.graph = graph
        path = Path(path) if path is not None else folder / GRAPHS[graph]
        if not path.is_file():
            raise SpatialqError(f"{path}: missing from the artifact")
        options = ort.SessionOptions()
        # the memory pattern pre-plans one block for every intermediate tensor: at 448x448 it costs 75 MB
        # of peak RSS and no speed here (243 -> 169 MB, 206 -> 207 ms for the W4A8 CPU graph)
        options.enable_mem_pattern = False
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or preferred_providers())
        except Exception as exc:  # onnxruntime raises its own exception types for bad graphs
            raise SpatialqError(f"{path}: ONNX Runtime cannot load it ({exc})") from None
        self.size = tuple(self.meta["size"])
        self.fingerprint = self.meta["fingerprint"] + ("" if graph in W4A8_GRAPHS else f":{graph}")
        self.trained = bool(self.meta.get("trained", False))
        self.facet_layer = int(self.meta.get("facet_layer", -1))
        self.patch_size = int(self.meta["patch_size"])
        self.grid = (self.size[1] // self.patch_size, self.size[0] // self.patch_size)

    def infer_normalized(self, image: np.ndarray) -> Features:
        patch, cls, facet = self.session.run(["patch_tokens", "cls_token", "value_facet"], {"image": image})
        h, w = self.grid
        return Features(patch[0].reshape(h, w, -1), cls[0], facet[0].reshape(h, w, -1))

    def infer(self, rgb: np.ndarray) -> Features:
        return self.infer_normalized(preprocess(rgb, self.size))
