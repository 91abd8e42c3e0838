"""Resampling the 37x37 pretrained position embedding to any patch grid, as the official model does."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .archs import ViTConfig


def interpolate_pos_embed(pos_embed: torch.Tensor, grid_h: int, grid_w: int, config: ViTConfig) -> torch.Tensor:
    """(1, 1 + M*M, C) -> (1, 1 + grid_h*grid_w, C); the CLS position is kept as it is.

    Bicubic, with the hub's scale-factor offset (0.1, a historical float work-around) or antialiasing,
    depending on the arch; a square grid of the pretrained size is returned untouched.
    """
    m = int(round((pos_embed.shape[1] - 1) ** 0.5))
    if grid_h == grid_w == m:
        return pos_embed
    dim = pos_embed.shape[-1]
    cls_pos, patch_pos = pos_embed[:, :1], pos_embed[:, 1:].float()
    grid = patch_pos.reshape(1, m, m, dim).permute(0, 3, 1, 2)
    if config.interpolate_offset:
        scale = ((grid_h + config.interpolate_offset) / m, (grid_w + config.interpolate_offset) / m)
        grid = F.interpolate(grid, scale_factor=scale, mode="bicubic", antialias=config.interpolate_antialias)
    else:
        grid = F.interpolate(grid, size=(grid_h, grid_w), mode="bicubic", antialias=config.interpolate_antialias)
    patch_pos = grid.permute(0, 2, 3, 1).reshape(1, grid_h * grid_w, dim).to(pos_embed.dtype)
    return torch.cat([cls_pos, patch_pos], dim=1)
