"""Held-out fidelity of a quantized backbone against FP32: what the calibration report tabulates."""

from __future__ import annotations

import numpy as np
import torch


def patch_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a.reshape(-1, a.shape[-1]), b.reshape(-1, b.shape[-1]),
                                                       dim=-1).mean())


def nn_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """Share of patches whose nearest other patch (cosine, same frame) is the same in both models."""
    agree = []
    for x, y in zip(a.reshape(a.shape[0], -1, a.shape[-1]), b.reshape(b.shape[0], -1, b.shape[-1])):
        sx = torch.nn.functional.normalize(x, dim=-1) @ torch.nn.functional.normalize(x, dim=-1).T
        sy = torch.nn.functional.normalize(y, dim=-1) @ torch.nn.functional.normalize(y, dim=-1).T
        sx.fill_diagonal_(-2)
        sy.fill_diagonal_(-2)
        agree.append(float((sx.argmax(dim=1) == sy.argmax(dim=1)).float().mean()))
    return float(np.mean(agree))


@torch.no_grad()
def fidelity(reference, model, images: torch.Tensor) -> dict[str, float]:
    ref = reference.extract(images)
    out = model.extract(images)
    return {"patch_cosine": patch_cosine(out.patch_tokens, ref.patch_tokens),
            "cls_cosine": patch_cosine(out.cls_token, ref.cls_token),
            "nn_agreement": nn_agreement(out.patch_tokens, ref.patch_tokens)}
