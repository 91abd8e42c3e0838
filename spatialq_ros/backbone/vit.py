"""DINOv2 vision transformer: the official forward, plus the facets and layers the heads need in one pass."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import SpatialqError
from .archs import ViTConfig
from .layers import Block, PatchEmbed
from .layers.block import LAYER_NORM_EPS
from .pos_embed import interpolate_pos_embed

FACETS = ("query", "key", "value", "token")


@dataclass
class BackboneOutput:
    patch_tokens: torch.Tensor  # (B, h, w, C), after the final norm
    cls_token: torch.Tensor  # (B, C), after the final norm
    register_tokens: torch.Tensor  # (B, R, C), after the final norm
    intermediate: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> (B, h, w, C), final-normed
    facet: torch.Tensor | None = None  # (B, h, w, C)


class DinoVisionTransformer(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        self.config = config
        self.patch_size = config.patch_size
        dim = config.embed_dim
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + config.pos_grid**2, dim))
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, config.num_register_tokens, dim)) if config.num_register_tokens else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training-only, kept so official keys load
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, config.ffn) for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=LAYER_NORM_EPS)

    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        h, w = x.shape[-2:]
        if x.ndim != 4 or x.shape[1] != 3:
            raise SpatialqError(f"backbone input must be (B, 3, H, W), got {tuple(x.shape)}")
        if h % self.patch_size or w % self.patch_size or h == 0 or w == 0:
            raise SpatialqError(f"input {w}x{h}: sides must be positive multiples of {self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch tokens with CLS and position embedding, then registers (which get no position)."""
        gh, gw = self.grid(x)
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + interpolate_pos_embed(self.pos_embed, gh, gw, self.config)
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([tokens[:, :1], registers, tokens[:, 1:]], dim=1)
        return tokens

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The official `forward_features` dictionary (without masks)."""
        tokens = self.prepare_tokens(x)
        for block in self.blocks:
            tokens, _ = block(tokens)
        normed = self.norm(tokens)
        r = self.config.num_register_tokens
        return {
            "x_norm_clstoken": normed[:, 0],
            "x_norm_regtokens": normed[:, 1 : r + 1],
            "x_norm_patchtokens": normed[:, r + 1 :],
            "x_prenorm": tokens,
        }

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_features(x)["x_norm_clstoken"]

    def extract(
        self,
        x: torch.Tensor,
        layers: tuple[int, ...] | list[int] = (),
        facet_layer: int | None = None,
        facet: str = "value",
    ) -> BackboneOutput:
        """Everything the heads read, from one pass: final tokens, chosen layers, one facet of one block."""
        if facet not in FACETS:
            raise SpatialqError(f"facet must be one of {', '.join(FACETS)}, got {facet!r}")
        depth = len(self.blocks)
        wanted = {self._block_index(i, depth) for i in layers}
        facet_block = None if facet_layer is None else self._block_index(facet_layer, depth)
        gh, gw = self.grid(x)
        first_patch = 1 + self.config.num_register_tokens

        def patch_grid(t: torch.Tensor) -> torch.Tensor:
            return t[:, first_patch:].reshape(t.shape[0], gh, gw, t.shape[-1])

        tokens = self.prepare_tokens(x)
        intermediate: dict[int, torch.Tensor] = {}
        facet_out = None
        for i, block in enumerate(self.blocks):
            tokens, qkv = block(tokens)
            if i in wanted:
                intermediate[i] = patch_grid(self.norm(tokens))
            if i == facet_block:
                facet_out = patch_grid(tokens if facet == "token" else qkv.chunk(3, dim=-1)[FACETS.index(facet)])
        normed = self.norm(tokens)
        return BackboneOutput(
            patch_tokens=patch_grid(normed),
            cls_token=normed[:, 0],
            register_tokens=normed[:, 1:first_patch],
            intermediate=intermediate,
            facet=facet_out,
        )

    @staticmethod
    def _block_index(i: int, depth: int) -> int:
        if not -depth <= i < depth:
            raise SpatialqError(f"block {i} out of range: the model has {depth} blocks")
        return i % depth
