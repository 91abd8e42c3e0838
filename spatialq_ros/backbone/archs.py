"""The DINOv2 and DINOv3 families: sizes, position encodings and the options each hub model is built with."""

from __future__ import annotations

from dataclasses import dataclass, replace

PATCH_SIZE = 14
POS_GRID = 37  # pretrained at 518 px = 37 x 14
HEADS_BY_DIM = {384: 6, 768: 12, 1024: 16, 1536: 24}


@dataclass(frozen=True)
class ViTConfig:
    embed_dim: int
    depth: int
    num_heads: int
    mlp_ratio: float = 4.0
    ffn: str = "mlp"  # "mlp" (GELU) or "swiglu" (DINOv2 ViT-G, DINOv3 ViT-S+)
    num_register_tokens: int = 0  # DINOv2 "registers", DINOv3 "storage tokens": between CLS and the patches
    patch_size: int = PATCH_SIZE
    pos_grid: int = POS_GRID  # side of the learned position table; 0 without one (RoPE)
    # The official hub builds the register models with antialiased, offset-free interpolation and the
    # original ones with offset 0.1 and no antialiasing; outputs differ, so each arch remembers its own.
    interpolate_antialias: bool = False
    interpolate_offset: float = 0.1
    # "learned": DINOv2's table added to the tokens, resampled to the grid; "rope": DINOv3's axial rotary
    # embedding of the patch tokens' queries and keys (coordinates normalised per side, period base rope_base).
    pos_encoding: str = "learned"
    rope_base: float = 100.0
    mask_k_bias: bool = False  # DINOv3: the key third of the qkv bias is masked to zero
    layer_norm_eps: float = 1e-6

    @property
    def family(self) -> str:
        return "dinov3" if self.pos_encoding == "rope" else "dinov2"


def _with_registers(config: ViTConfig) -> ViTConfig:
    return replace(config, num_register_tokens=4, interpolate_antialias=True, interpolate_offset=0.0)


def _dinov3(embed_dim: int, depth: int, num_heads: int, **kwargs) -> ViTConfig:
    """As dinov3/hub/backbones.py builds them: patch 16, 4 storage tokens, RoPE base 100, masked k bias,
    LayerNorm eps 1e-5 ("layernormbf16"); no position table."""
    return ViTConfig(embed_dim, depth, num_heads, num_register_tokens=4, patch_size=16, pos_grid=0,
                     pos_encoding="rope", rope_base=100.0, mask_k_bias=True, layer_norm_eps=1e-5, **kwargs)


_BASE = {
    "vits14": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "vitb14": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    "vitl14": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "vitg14": ViTConfig(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}
DINOV3_ARCHS = {
    "vits16": _dinov3(384, 12, 6),
    "vits16plus": _dinov3(384, 12, 6, mlp_ratio=6.0, ffn="swiglu"),
    "vitb16": _dinov3(768, 12, 12),
    "vitl16": _dinov3(1024, 24, 16),
}
ARCHS: dict[str, ViTConfig] = {**_BASE, **{f"{k}_reg4": _with_registers(v) for k, v in _BASE.items()},
                               **DINOV3_ARCHS}


def arch_name(config: ViTConfig) -> str:
    """The family name of a config, with `-dN` when its depth is not the published one (test models)."""
    if config.family == "dinov3":
        for name, known in DINOV3_ARCHS.items():
            if (known.embed_dim, known.ffn, known.mlp_ratio) == (config.embed_dim, config.ffn, config.mlp_ratio):
                depth = "" if config.depth == known.depth else f"-d{config.depth}"
                return f"{name}{depth}"
        return f"vit{config.embed_dim}-{config.patch_size}"
    for name, known in _BASE.items():
        if known.embed_dim == config.embed_dim and known.ffn == config.ffn:
            suffix = "_reg4" if config.num_register_tokens else ""
            depth = "" if config.depth == known.depth else f"-d{config.depth}"
            return f"{name}{suffix}{depth}"
    return f"vit{config.embed_dim}"
