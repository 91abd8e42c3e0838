"""DINOv2 / DINOv3 vision transformer: the official forward, plus the facets and layers the heads need in one pass.

One model with options (ViTConfig): a learned, resampled position table (DINOv2) or axial RoPE on the patch
tokens' queries and keys (DINOv3), the patch size, the register/storage tokens, LayerNorm eps. DINOv3's masked
key bias is applied when the weights are loaded (the key third of the qkv bias is zero), so the attention's
`qkv` stays a plain Linear for the quantizer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from ..errors import SpatialqError
from .archs import ViTConfig
from .layers import Block, PatchEmbed, RopeEmbedding
from .pos_embed import interpolate_pos_embed

FACETS = ("query", "key", "value", "token")


@dataclass
class BackboneOutput:
    patch_tokens: torch.Tensor  # (B, h, w, C), after the final norm
    cls_token: torch.Tensor  # (B, C), after the final norm
    register_tokens: torch.Tensor  # (B, R, C), after the final norm (DINOv3: storage tokens)
    intermediate: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> (B, h, w, C), final-normed
    facet: torch.Tensor | None = None  # (B, h, w, C); query and key before RoPE (the qkv Linear's output)


class DinoVisionTransformer(nn.Module):
    def __init__(self, config: ViTConfig) -> None:
        super().__init__()
        if config.pos_encoding not in ("learned", "rope"):
            raise ValueError(f"pos_encoding must be 'learned' or 'rope', got {config.pos_encoding!r}")
        self.config = config
        self.patch_size = config.patch_size
        dim = config.embed_dim
        rope = config.pos_encoding == "rope"
        self.patch_embed = PatchEmbed(config.patch_size, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = None if rope else nn.Parameter(torch.zeros(1, 1 + config.pos_grid**2, dim))
        self.rope_embed = RopeEmbedding(dim // config.num_heads, config.rope_base) if rope else None
        self.register_tokens = (
            nn.Parameter(torch.zeros(1, config.num_register_tokens, dim)) if config.num_register_tokens else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, dim))  # training-only, kept so official keys load
        self.blocks = nn.ModuleList(
            Block(dim, config.num_heads, config.mlp_ratio, config.ffn, config.layer_norm_eps, rope)
            for _ in range(config.depth)
        )
        self.norm = nn.LayerNorm(dim, eps=config.layer_norm_eps)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Takes our layout and the official DINOv2 and DINOv3 layouts (see to_model_layout)."""
        return super().load_state_dict(self.to_model_layout(state_dict), strict=strict, assign=assign)

    def to_model_layout(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official DINOv3 names -> ours, numerically the official forward: `storage_tokens` are the register
        tokens; the SwiGLU `w1` (gate) and `w2` become one `w12`; the qkv bias is multiplied by its `bias_mask`
        (and, for mask_k_bias, its key third set to zero); `local_cls_norm` (ViT-L SAT-493M: a training-only
        norm of local crops) is dropped. Our own and DINOv2 layouts pass through unchanged."""
        out: dict[str, torch.Tensor] = {}
        for key, value in state.items():
            if key.startswith("local_cls_norm."):
                continue
            if key.endswith(".mlp.w2.weight") or key.endswith(".mlp.w2.bias"):
                continue  # joined with w1 below
            if key.endswith(".mlp.w1.weight") or key.endswith(".mlp.w1.bias"):
                up = key.replace(".mlp.w1.", ".mlp.w2.")
                if up in state:
                    out[key.replace(".mlp.w1.", ".mlp.w12.")] = torch.cat([value, state[up]])
                    continue
            if key.endswith(".attn.qkv.bias_mask"):
                continue
            out["register_tokens" if key == "storage_tokens" else key] = value
        for key in [k for k in out if k.endswith(".attn.qkv.bias")]:
            mask = state.get(key + "_mask")
            bias = out[key] if mask is None else out[key] * mask.to(out[key].dtype)
            if self.config.mask_k_bias:
                c = bias.shape[0] // 3
                bias = torch.cat([bias[:c], torch.zeros_like(bias[c : 2 * c]), bias[2 * c :]])
            out[key] = bias
        return out

    def grid(self, x: torch.Tensor) -> tuple[int, int]:
        h, w = x.shape[-2:]
        if x.ndim != 4 or x.shape[1] != 3:
            raise SpatialqError(f"backbone input must be (B, 3, H, W), got {tuple(x.shape)}")
        if h % self.patch_size or w % self.patch_size or h == 0 or w == 0:
            raise SpatialqError(f"input {w}x{h}: sides must be positive multiples of {self.patch_size}")
        return h // self.patch_size, w // self.patch_size

    def prepare_tokens(self, x: torch.Tensor) -> torch.Tensor:
        """CLS, then the registers (no position), then the patch tokens; with a learned table, CLS and patches
        get their position added (RoPE acts inside attention instead)."""
        gh, gw = self.grid(x)
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        if self.pos_embed is not None:
            tokens = tokens + interpolate_pos_embed(self.pos_embed, gh, gw, self.config)
        if self.register_tokens is not None:
            registers = self.register_tokens.expand(tokens.shape[0], -1, -1)
            tokens = torch.cat([tokens[:, :1], registers, tokens[:, 1:]], dim=1)
        return tokens

    def rope_tables(self, grid_h: int, grid_w: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """RoPE (sin, cos) for a patch grid, each (grid_h * grid_w, head_dim) float32, fixed for that grid (an
        exported graph embeds them as constants); None for a learned position table."""
        return None if self.rope_embed is None else self.rope_embed(grid_h, grid_w)

    def block_call(self, grid_h: int, grid_w: int) -> Callable[[nn.Module, torch.Tensor],
                                                              tuple[torch.Tensor, torch.Tensor]]:
        """`call(block, tokens)`: one block of this model on tokens of this grid, with the grid's RoPE tables
        for a RoPE model; for code that steps through the blocks itself (QwT)."""
        rope = self.rope_tables(grid_h, grid_w)
        return lambda block, tokens: _run_block(block, tokens, rope)

    def forward_features(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The official `forward_features` dictionary (without masks); DINOv3 names its registers
        `x_storage_tokens`."""
        rope = self.rope_tables(*self.grid(x))
        tokens = self.prepare_tokens(x)
        for block in self.blocks:
            tokens, _ = _run_block(block, tokens, rope)
        normed = self.norm(tokens)
        r = self.config.num_register_tokens
        registers = "x_storage_tokens" if self.config.family == "dinov3" else "x_norm_regtokens"
        return {
            "x_norm_clstoken": normed[:, 0],
            registers: normed[:, 1 : r + 1],
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
        """Everything the heads read, from one pass: final tokens, chosen layers, one facet of one block.

        The query and key facets are the qkv Linear's output: with RoPE, before the rotation, so that they
        describe content, not position (the value is never rotated)."""
        if facet not in FACETS:
            raise SpatialqError(f"facet must be one of {', '.join(FACETS)}, got {facet!r}")
        depth = len(self.blocks)
        wanted = {self._block_index(i, depth) for i in layers}
        facet_block = None if facet_layer is None else self._block_index(facet_layer, depth)
        gh, gw = self.grid(x)
        first_patch = 1 + self.config.num_register_tokens

        def patch_grid(t: torch.Tensor) -> torch.Tensor:
            return t[:, first_patch:].reshape(t.shape[0], gh, gw, t.shape[-1])

        rope = self.rope_tables(gh, gw)
        tokens = self.prepare_tokens(x)
        intermediate: dict[int, torch.Tensor] = {}
        facet_out = None
        for i, block in enumerate(self.blocks):
            tokens, qkv = _run_block(block, tokens, rope)
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


def _run_block(block: nn.Module, tokens: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """A block without RoPE is called with the tokens alone, so that wrappers made for DINOv2 blocks (the
    quantizer's) keep working; a RoPE block also gets the grid's (sin, cos)."""
    return block(tokens) if rope is None else block(tokens, rope)
