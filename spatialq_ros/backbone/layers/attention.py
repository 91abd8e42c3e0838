"""Multi-head self-attention with an explicit float softmax, and DINOv3's rotary position embedding.

Written out (no fused kernel) so that a quantizer can wrap `qkv` and `proj` as plain Linear modules and
so that the qkv output, where AnyLoc reads its value facet, can be handed back to the caller. With RoPE
the patch tokens' queries and keys are rotated after `qkv`; the prefix tokens (CLS, registers) are not,
as in the official model. The returned qkv is the Linear's output, before any rotation.
"""

from __future__ import annotations

import torch
from torch import nn

from .rope import apply_rope


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int, rope: bool = False) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.rope = rope
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (output, qkv) with qkv (B, N, 3C): columns [q | k | v], heads concatenated in each.

        `rope` is the (sin, cos) pair of the patch grid (RopeEmbedding), required when built with rope."""
        b, n, c = x.shape
        qkv = self.qkv(x)
        q, k, v = qkv.reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        if self.rope:
            if rope is None:
                raise ValueError("this attention uses RoPE: pass the (sin, cos) tables of the patch grid")
            q, k = _rotate_patches(q, *rope), _rotate_patches(k, *rope)
        attn = torch.softmax((q * self.scale) @ k.transpose(-2, -1), dim=-1)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out), qkv


def _rotate_patches(x: torch.Tensor, sin: torch.Tensor, cos: torch.Tensor) -> torch.Tensor:
    """(B, heads, N, head_dim): the last len(sin) tokens are patches and get rotated; the prefix does not."""
    prefix = x.shape[-2] - sin.shape[-2]
    return torch.cat([x[..., :prefix, :], apply_rope(x[..., prefix:, :], sin, cos)], dim=-2)
