"""The check every calibration change that touches the weights ends with: its graphs compute its fake-quant model."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from spatialq_ros.backbone.vit import DinoVisionTransformer
from spatialq_ros.quant.artifact import write_artifact
from spatialq_ros.runtime.onnx_engine import OnnxEngine


def relative(ours: torch.Tensor, ref: torch.Tensor) -> float:
    return float((ours - ref).norm() / ref.norm())


def assert_graphs_follow_the_fake_quant_model(q: DinoVisionTransformer, model: DinoVisionTransformer,
                                              x: torch.Tensor, folder: Path, size: tuple[int, int]) -> None:
    """q: calibrated from the two-block `model`; x: one preprocessed frame at `size`. The qdq and cpu graphs follow
    q's patch tokens, and the facet block (-1), which no weight change may touch, gives the float model's value
    facet up to quantization."""
    write_artifact(folder, q, model, {"method": "gplq", "arch": "vits14-d2", "trained": False}, size, -1)
    with torch.no_grad():
        ref = copy.deepcopy(q).double().extract(x.double(), facet_layer=-1, facet="value")
        exact = model.extract(x, facet_layer=-1, facet="value")
    for graph in ("qdq", "cpu"):
        out = OnnxEngine(folder, graph).infer_normalized(x.numpy())
        assert relative(torch.from_numpy(out.patch_tokens), ref.patch_tokens[0].float()) <= 1e-2, graph
        facet = torch.from_numpy(out.value_facet).flatten()
        assert torch.nn.functional.cosine_similarity(facet, exact.facet[0].flatten(), dim=0) > 0.99, graph
