"""DINOv3's axial rotary position embedding: fixed sin/cos tables for a patch grid, applied to q and k.

Each head's channels are split in halves that are rotated against each other; the rotation angle of a
channel pair comes from the patch centre's row coordinate (first quarter of the periods) or column
coordinate (second quarter). Coordinates are normalised per side to [-1, 1] ("separate"), so a grid of any
shape spans the same range. The training-time shift, jitter and rescale of the coordinates are not here:
inference uses none of them. Nothing is learned; the periods are a buffer because official checkpoints
carry them.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def rope_periods(head_dim: int, base: float) -> torch.Tensor:
    """base ** (4 i / head_dim) for i < head_dim / 4: one period per rotated channel pair and axis."""
    if head_dim % 4:
        raise ValueError(f"RoPE needs a head width divisible by 4, got {head_dim}")
    return base ** (2 * torch.arange(head_dim // 4, dtype=torch.float32) / (head_dim // 2))


class RopeEmbedding(nn.Module):
    def __init__(self, head_dim: int, base: float) -> None:
        super().__init__()
        self.register_buffer("periods", rope_periods(head_dim, base))

    def forward(self, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(sin, cos), each (grid_h * grid_w, head_dim), row-major over the grid like the patch tokens."""
        dd = {"dtype": torch.float32, "device": self.periods.device}
        rows = torch.arange(0.5, grid_h, **dd) / grid_h
        cols = torch.arange(0.5, grid_w, **dd) / grid_w
        coords = torch.stack(torch.meshgrid(rows, cols, indexing="ij"), dim=-1).flatten(0, 1)  # (hw, 2)
        coords = 2.0 * coords - 1.0
        angles = 2 * math.pi * coords[:, :, None] / self.periods[None, None, :]  # (hw, 2, head_dim / 4)
        angles = angles.flatten(1, 2).tile(2)  # (hw, head_dim): the same angle for both halves of a pair
        return torch.sin(angles), torch.cos(angles)


def apply_rope(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """Rotate (..., n, head_dim) by the tables: x cos + [-x2, x1] sin, x1 and x2 the two halves."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-x2, x1], dim=-1) * sin
