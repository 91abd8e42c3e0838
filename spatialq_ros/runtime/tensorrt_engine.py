"""TensorRT engine (Jetson Orin, NVIDIA GPUs): the artifact's QDQ `model.onnx` built into an INT8 plan.

The plan is built once per (ONNX bytes, TensorRT version, GPU) and kept in the engine cache; later starts
deserialize it in seconds. Device memory goes through cuda-python's runtime API (no torch, no pycuda).
Needs `tensorrt` and `cuda-python` (JetPack ships both); where they are missing this is one clear error.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..backbone.preprocess import preprocess
from ..errors import SpatialqError
from .engine import Features
from .engine_cache import EngineCache, cache_key
from .factory import artifact_meta

OUTPUTS = ("patch_tokens", "cls_token", "value_facet")


def _imports():
    try:
        import tensorrt as trt
    except ImportError:
        raise SpatialqError("TensorRT is not installed (on a Jetson: JetPack's python3-libnvinfer); "
                            "use the ONNX Runtime engine instead") from None
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        try:
            from cuda import cudart
        except ImportError:
            raise SpatialqError("cuda-python is not installed (pip install cuda-python)") from None
    return trt, cudart


def _check(result):
    """cuda-python calls return (error, *values); raise on error, return the values."""
    err, *values = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise SpatialqError(f"CUDA error {err}")
    return values[0] if len(values) == 1 else values


class TensorrtEngine:
    def __init__(self, artifact: str | Path, cache: EngineCache | None = None, workspace_mb: int = 1024,
                 fp16: bool = True) -> None:
        trt, self._cudart = _imports()
        folder = Path(artifact)
        self.meta, onnx = artifact_meta(folder), folder / "model.onnx"
        if not onnx.is_file():
            raise SpatialqError(f"{onnx}: missing from the artifact")
        self.size = tuple(self.meta["size"])
        self.fingerprint = self.meta["fingerprint"]
        self.trained = bool(self.meta.get("trained", False))
        self.patch_size = int(self.meta["patch_size"])
        self.grid = (self.size[1] // self.patch_size, self.size[0] // self.patch_size)
        props = _check(self._cudart.cudaGetDeviceProperties(0))
        device = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
        self.cache = cache or EngineCache()
        key = cache_key(onnx, trt.__version__, device, f"int8 fp16={fp16} workspace={workspace_mb}")
        logger = trt.Logger(trt.Logger.WARNING)
        plan = self.cache.get_or_build(key, lambda: _build_plan(trt, logger, onnx, workspace_mb, fp16))
        self._engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
        if self._engine is None:
            raise SpatialqError(f"{self.cache.path(key)}: TensorRT cannot load this plan (delete it to rebuild)")
        self._context = self._engine.create_execution_context()
        self._stream = _check(self._cudart.cudaStreamCreate())
        self._buffers: dict[str, tuple[int, np.ndarray]] = {}
        for i in range(self._engine.num_io_tensors):
            name = self._engine.get_tensor_name(i)
            host = np.empty(tuple(self._engine.get_tensor_shape(name)), trt.nptype(self._engine.get_tensor_dtype(name)))
            device_ptr = _check(self._cudart.cudaMalloc(host.nbytes))
            self._context.set_tensor_address(name, device_ptr)
            self._buffers[name] = (device_ptr, host)

    def infer_normalized(self, image: np.ndarray) -> Features:
        cudart = self._cudart
        to_device, to_host = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        ptr, host = self._buffers["image"]
        np.copyto(host, image.reshape(host.shape))
        _check(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes, to_device, self._stream))
        if not self._context.execute_async_v3(self._stream):
            raise SpatialqError("TensorRT inference failed")
        for name in OUTPUTS:
            ptr, host = self._buffers[name]
            _check(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, to_host, self._stream))
        _check(cudart.cudaStreamSynchronize(self._stream))
        h, w = self.grid
        patch, cls, facet = (self._buffers[n][1] for n in OUTPUTS)
        return Features(patch[0].reshape(h, w, -1).copy(), cls[0].copy(), facet[0].reshape(h, w, -1).copy())

    def infer(self, rgb: np.ndarray) -> Features:
        return self.infer_normalized(preprocess(rgb, self.size))

    def __del__(self) -> None:
        for ptr, _ in getattr(self, "_buffers", {}).values():
            self._cudart.cudaFree(ptr)


def _build_plan(trt, logger, onnx: Path, workspace_mb: int, fp16: bool) -> bytes:
    """QDQ ONNX -> serialized INT8 plan (explicit quantization: the scales come from the graph, no calibrator)."""
    from tqdm import tqdm

    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "EXPLICIT_BATCH") and int(trt.__version__.split(".")[0]) < 10:
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise SpatialqError(f"{onnx}: TensorRT cannot parse it ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_mb << 20)
    config.set_flag(trt.BuilderFlag.INT8)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)  # the float parts (LayerNorm, softmax) in half precision
    with tqdm(total=1, desc=f"TensorRT build of {onnx.name} (once per GPU and version)", unit="plan") as bar:
        plan = builder.build_serialized_network(network, config)
        bar.update(1)
    if plan is None:
        raise SpatialqError(f"{onnx}: TensorRT could not build an engine (see its log above)")
    return bytes(plan)
