"""Building blocks of the DINOv2 ViT, named as in the official checkpoints so state dicts load as they are."""

from .attention import Attention
from .block import Block
from .layer_scale import LayerScale
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .swiglu_ffn import SwiGLUFFN

__all__ = ["Attention", "Block", "LayerScale", "Mlp", "PatchEmbed", "SwiGLUFFN"]
