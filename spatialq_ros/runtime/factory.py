"""Pick the engine a model path calls for: an artifact folder runs on ONNX Runtime, a checkpoint on torch."""

from __future__ import annotations

from pathlib import Path

from .engine import Engine


def is_artifact(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / "quant.json").is_file()


# Artifacts written before quant.json recorded the patch size all come from DINOv2, whose patch is 14 px.
UNRECORDED_PATCH = 14


def artifact_meta(folder: str | Path) -> dict:
    """An artifact's quant.json (size, patch_size, fingerprint, trained, scales, ...), or one line on why it
    is not one."""
    import json

    from ..errors import SpatialqError

    meta_file = Path(folder) / "quant.json"
    if not meta_file.is_file():
        raise SpatialqError(f"{folder}: not a spatialq artifact (no quant.json)")
    try:
        meta = json.loads(meta_file.read_text())
    except ValueError as exc:
        raise SpatialqError(f"{meta_file}: unreadable ({exc})") from None
    if not isinstance(meta, dict) or "size" not in meta:
        raise SpatialqError(f"{meta_file}: not a spatialq quant.json (no size)")
    meta.setdefault("patch_size", UNRECORDED_PATCH)
    return meta


BACKENDS = ("auto", "onnxruntime", "tensorrt")


def make_engine(model: str | None, size: tuple[int, int], facet_layer: int = -1, backend: str = "auto") -> Engine:
    """None: the embedded default (real ViT-S/14 if in models/, else UNTRAINED) on the torch engine.

    An artifact runs on ONNX Runtime ("auto", "onnxruntime") or as a cached TensorRT plan ("tensorrt").
    The size must be the artifact's, or for a checkpoint multiples of its patch (the engine checks).
    """
    from ..errors import SpatialqError

    if backend not in BACKENDS:
        raise SpatialqError(f"engine backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if backend == "tensorrt" and not is_artifact(model):
        raise SpatialqError("the TensorRT engine runs a W4A8 artifact: give its folder as the model")
    if is_artifact(model):
        if backend == "tensorrt":
            from .tensorrt_engine import TensorrtEngine

            engine = TensorrtEngine(model)
        else:
            from .onnx_engine import OnnxEngine

            engine = OnnxEngine(model)
        if tuple(engine.size) != tuple(size):
            raise SpatialqError(f"artifact {model} was exported for {engine.size[0]}x{engine.size[1]}, "
                                f"not {size[0]}x{size[1]}")
        return engine
    from ..backbone.checkpoint import default_backbone, load_backbone
    from .torch_engine import TorchEngine

    backbone, info = load_backbone(model) if model else default_backbone()
    return TorchEngine(backbone, info, size, facet_layer)
