"""Pre-norm transformer block: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x)))."""

from __future__ import annotations

import torch
from torch import nn

from .attention import Attention
from .layer_scale import LayerScale
from .mlp import Mlp
from .swiglu_ffn import SwiGLUFFN, swiglu_hidden

LAYER_NORM_EPS = 1e-6  # DINOv2; DINOv3 uses 1e-5 (ViTConfig.layer_norm_eps)


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, ffn: str, layer_norm_eps: float = LAYER_NORM_EPS,
                 rope: bool = False) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=layer_norm_eps)
        self.attn = Attention(dim, num_heads, rope=rope)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=layer_norm_eps)
        if ffn == "swiglu":
            self.mlp: nn.Module = SwiGLUFFN(dim, swiglu_hidden(dim, mlp_ratio))
        else:
            self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (block output, qkv of its attention); `rope`: the grid's (sin, cos) for RoPE models."""
        attn_out, qkv = self.attn(self.norm1(x), rope)
        x = x + self.ls1(attn_out)
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x, qkv
