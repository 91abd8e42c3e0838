"""A Linear (or the patch-embedding conv) with an INT8 input quantizer and optional INT4 weights.

Stage 1 of GPLQ trains the input scale with float weights; stage 2 freezes it and quantizes the
weights per output channel. Biases stay float, as in the deployed QDQ graph.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fake_quant import INT4, INT8, fake_quant


class QuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear | nn.Conv2d) -> None:
        super().__init__()
        self.inner = linear
        self.act_scale = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("weight_scale", torch.empty(0))
        self.quantize_input = True

    @property
    def weight(self) -> torch.Tensor:
        return self.inner.weight

    def set_weight_scale(self, scale: torch.Tensor | None) -> None:
        self.weight_scale = torch.empty(0) if scale is None else scale.detach().clone()

    def quantized_weight(self) -> torch.Tensor:
        w = self.inner.weight
        if self.weight_scale.numel() == 0:
            return w
        shape = (-1,) + (1,) * (w.ndim - 1)
        return fake_quant(w, self.weight_scale.reshape(shape), INT4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.quantize_input:
            x = fake_quant(x, self.act_scale.abs().clamp_min(1e-8), INT8, lsq=self.training)
        w = self.quantized_weight()
        if isinstance(self.inner, nn.Conv2d):
            return F.conv2d(x, w, self.inner.bias, stride=self.inner.stride)
        return F.linear(x, w, self.inner.bias)
