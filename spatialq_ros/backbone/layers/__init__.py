"""Building blocks of the DINOv2 / DINOv3 ViT, named as in the official checkpoints so state dicts load as they are
(DINOv3's few differences are mapped at load time, see DinoVisionTransformer.to_model_layout)."""

from .attention import Attention
from .block import Block
from .layer_scale import LayerScale
from .mlp import Mlp
from .patch_embed import PatchEmbed
from .rope import RopeEmbedding, apply_rope, rope_periods
from .swiglu_ffn import SwiGLUFFN

__all__ = ["Attention", "Block", "LayerScale", "Mlp", "PatchEmbed", "RopeEmbedding", "SwiGLUFFN", "apply_rope",
           "rope_periods"]
