"""The DINOv2 family: sizes, and the positional-embedding interpolation each hub model uses."""

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
    ffn: str = "mlp"  # "mlp" (GELU) or "swiglu" (ViT-G)
    num_register_tokens: int = 0
    patch_size: int = PATCH_SIZE
    pos_grid: int = POS_GRID
    # The official hub builds the register models with antialiased, offset-free interpolation and the
    # original ones with offset 0.1 and no antialiasing; outputs differ, so each arch remembers its own.
    interpolate_antialias: bool = False
    interpolate_offset: float = 0.1


def _with_registers(config: ViTConfig) -> ViTConfig:
    return replace(config, num_register_tokens=4, interpolate_antialias=True, interpolate_offset=0.0)


_BASE = {
    "vits14": ViTConfig(embed_dim=384, depth=12, num_heads=6),
    "vitb14": ViTConfig(embed_dim=768, depth=12, num_heads=12),
    "vitl14": ViTConfig(embed_dim=1024, depth=24, num_heads=16),
    "vitg14": ViTConfig(embed_dim=1536, depth=40, num_heads=24, ffn="swiglu"),
}
ARCHS: dict[str, ViTConfig] = {**_BASE, **{f"{k}_reg4": _with_registers(v) for k, v in _BASE.items()}}


def arch_name(config: ViTConfig) -> str:
    """The family name of a config, with `-dN` when its depth is not the published one (test models)."""
    for name, known in _BASE.items():
        if known.embed_dim == config.embed_dim and known.ffn == config.ffn:
            suffix = "_reg4" if config.num_register_tokens else ""
            depth = "" if config.depth == known.depth else f"-d{config.depth}"
            return f"{name}{suffix}{depth}"
    return f"vit{config.embed_dim}"
