"""The DINOv2 ViT-G and DINOv3 ViT-S+ feed-forward: SwiGLU, official 2/3-width, multiple-of-8 hidden size.

The two input projections are one Linear (`w12`, gate rows first), as DINOv2 stores them; DINOv3 checkpoints
store them apart (`w1` gate, `w2`), and loading concatenates them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def swiglu_hidden(dim: int, mlp_ratio: float) -> int:
    return (int(int(dim * mlp_ratio) * 2 / 3) + 7) // 8 * 8


class SwiGLUFFN(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)
