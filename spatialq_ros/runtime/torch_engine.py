"""Reference engine: the torch backbone (FP32 or the fake-quant W4A8 model). Never on the deploy path."""

from __future__ import annotations

import numpy as np
import torch

from ..backbone.checkpoint import CheckpointInfo
from ..backbone.preprocess import check_size, preprocess
from ..backbone.vit import DinoVisionTransformer
from .engine import Features


class TorchEngine:
    def __init__(self, model: DinoVisionTransformer, info: CheckpointInfo, size: tuple[int, int],
                 facet_layer: int = -1, fingerprint: str | None = None) -> None:
        self.model = model.eval()
        self.patch_size = model.patch_size
        self.size = check_size(tuple(size), self.patch_size, info.arch)
        self.facet_layer = facet_layer
        self.trained = info.trained
        self.fingerprint = fingerprint or f"torch-fp32:{info.sha256}"

    @torch.inference_mode()
    def infer(self, rgb: np.ndarray) -> Features:
        """On the device the model lives on (a calibration may have left it on the GPU); numpy out."""
        x = torch.from_numpy(preprocess(rgb, self.size)).to(next(self.model.parameters()).device)
        out = self.model.extract(x, facet_layer=self.facet_layer)
        return Features(out.patch_tokens[0].cpu().numpy(), out.cls_token[0].cpu().numpy(), out.facet[0].cpu().numpy())
