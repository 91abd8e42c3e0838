"""Pick the engine a model path calls for: an artifact folder runs on ONNX Runtime, a checkpoint on torch."""

from __future__ import annotations

from pathlib import Path

from .engine import Engine


def is_artifact(path: str | Path | None) -> bool:
    return path is not None and (Path(path) / "quant.json").is_file()


def make_engine(model: str | None, size: tuple[int, int], facet_layer: int = -1) -> Engine:
    """None: the embedded default (real ViT-S/14 if in models/, else UNTRAINED) on the torch engine."""
    if is_artifact(model):
        from ..errors import SpatialqError
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
