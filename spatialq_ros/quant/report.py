"""Held-out comparison of quantized backbones against FP32: what the calibration report tabulates."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..backbone.vit import BackboneOutput
from ..metrics.corners import corner_preservation
from ..metrics.erqa import erqa
from ..viz.feature_pca import PcaProjection, pca_rgb
from ..viz.pictures import upscale_nearest


def patch_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]), dim=-1).mean())


def nn_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of patches whose nearest other patch (cosine, same frame) is the same in both models."""
    agree = []
    for x, y in zip(a.reshape(a.shape[0], -1, a.shape[-1]), b.reshape(b.shape[0], -1, b.shape[-1])):
        sx = F.normalize(x, dim=-1) @ F.normalize(x, dim=-1).T
        sy = F.normalize(y, dim=-1) @ F.normalize(y, dim=-1).T
        sx.fill_diagonal_(-2)
        sy.fill_diagonal_(-2)
        agree.append(float((sx.argmax(dim=1) == sy.argmax(dim=1)).float().mean()))
    return float(np.mean(agree))


def pca_pictures(tokens: torch.Tensor, projection: PcaProjection, size: tuple[int, int]) -> list[np.ndarray]:
    return [upscale_nearest(pca_rgb(t.cpu().numpy(), projection), size) for t in tokens]


class GraphBackbone:
    """An ONNX engine seen as a backbone with final outputs only (no per-block tokens): how a graph quantized
    outside our code, such as ORT's quantize_dynamic of fp32.onnx, enters the comparisons the torch models do."""

    def __init__(self, engine) -> None:
        self.engine = engine

    def extract(self, images: torch.Tensor, layers=(), facet_layer=None, facet: str = "value") -> BackboneOutput:
        outs = [self.engine.infer_normalized(x[None].cpu().numpy()) for x in images]

        def stacked(name: str) -> torch.Tensor:
            return torch.from_numpy(np.stack([getattr(o, name) for o in outs])).to(images.device)

        patch = stacked("patch_tokens")
        return BackboneOutput(patch, stacked("cls_token"), patch.new_zeros(len(outs), 0, patch.shape[-1]),
                              facet=stacked("value_facet"))


@torch.no_grad()
def fidelity(reference, model, images: torch.Tensor) -> dict:
    """Final patch/CLS cosine, NN agreement, per-block cosine, and ERQA 1.1 + corner preservation on the
    feature-PCA pictures. Both pictures of a frame use one projection, fitted on the FP32 tokens of all frames:
    with a mapping of its own, a quantized picture's edges would come from its colour stretch. The models run
    on the device the images are on; the pictures are made on the CPU."""
    depth = len(reference.blocks)
    blocks = tuple(range(depth))
    ref = reference.extract(images, layers=blocks)
    out = model.extract(images, layers=blocks)
    size = (images.shape[-1], images.shape[-2])
    projection = PcaProjection.fit(ref.patch_tokens.cpu().numpy())
    ref_pics = pca_pictures(ref.patch_tokens, projection, size)
    out_pics = pca_pictures(out.patch_tokens, projection, size)
    return {
        "patch_cosine": patch_cosine(out.patch_tokens, ref.patch_tokens),
        "cls_cosine": patch_cosine(out.cls_token, ref.cls_token),
        "nn_agreement": nn_agreement(out.patch_tokens, ref.patch_tokens),
        "block_cosine": [patch_cosine(out.intermediate[b], ref.intermediate[b]) for b in blocks if b in out.intermediate],
        "erqa_pca": float(np.mean([erqa(o, r) for o, r in zip(out_pics, ref_pics)])),
        "corner_preservation": float(np.mean([corner_preservation(o, r) for o, r in zip(out_pics, ref_pics)])),
    }


def plot_block_cosine(results: dict[str, dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=120)
    for name, result in results.items():
        if not result["block_cosine"]:  # a graph seen from outside: final outputs only
            continue
        ax.plot(range(len(result["block_cosine"])), result["block_cosine"], marker="o", label=name)
    ax.set_xlabel("block")
    ax.set_ylabel("patch cosine vs FP32")
    ax.set_title("Where the W4A8 error builds up (held-out frames)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


# What a user compares: higher is better for each; keypoint repeatability is left out (the same for every model,
# its locations come from image gradients).
FIDELITY_METRICS = {"patch_cosine": "patch cosine", "cls_cosine": "CLS cosine", "nn_agreement": "patch NN agreement",
                    "erqa_pca": "ERQA", "corner_preservation": "corners kept"}
HEAD_METRICS = {("keypoints", "matching_accuracy"): "descriptor matching", ("field", "boundary_f"): "field boundary F",
                ("field", "iou"): "field IoU", ("place", "recall@1"): "VPR R@1", ("place", "recall@5"): "VPR R@5",
                ("place", "top1_as_fp32"): "top-1 place as FP32"}


def not_ahead(fidelities: dict[str, dict], heads: dict[str, dict], ours: str) -> dict[str, list[tuple]]:
    """fidelities and heads by model name (heads may lack a model or a head); ours: the method's name. Returns
    each other model's name -> [(metric, ours, theirs)] for every metric where ours scores no higher (a tie is
    not ahead either), so the report can say it in words."""
    found = {}
    for name in fidelities:
        if name == ours:
            continue
        rows = [(label, fidelities[ours][m], fidelities[name][m]) for m, label in FIDELITY_METRICS.items()
                if fidelities[ours][m] <= fidelities[name][m]]
        for (head, m), label in HEAD_METRICS.items():
            a, b = (heads.get(n, {}).get(head, {}).get(m) for n in (ours, name))
            if a is not None and b is not None and np.isfinite(a) and np.isfinite(b) and a <= b:
                rows.append((label, a, b))
        found[name] = rows
    return found
