"""RepQ-ViT / SmoothQuant-style folding of post-LayerNorm channel ranges into per-tensor scales.

Channel c of a LayerNorm output is divided by r_c (gamma and beta / r_c) and the next Linear's input
column c is multiplied by r_c: the float model is unchanged, the activation ranges are equalised so a
single per-tensor INT8 scale fits. r_c = (s_c / mean(s))^alpha: alpha 1 is RepQ's full migration,
alpha 0.5 shares the outliers between activations and the (4-bit!) weights. alpha may differ per Linear
(layer_search chooses it from each layer's output error).
"""

from __future__ import annotations

import torch

from ..backbone.vit import DinoVisionTransformer
from .layer_search import fold_ratio
from .placement import post_layernorm_pairs
from .stats import InputStats


@torch.no_grad()
def fold_post_layernorm(model: DinoVisionTransformer, stats: dict[str, InputStats],
                        alpha: float | dict[str, float]) -> None:
    """alpha: one strength for every pair, or one per Linear name."""
    for norm_name, linear_name in post_layernorm_pairs(model):
        r = fold_ratio(stats[linear_name].channel_max, alpha[linear_name] if isinstance(alpha, dict) else alpha)
        norm = model.get_submodule(norm_name)
        linear = model.get_submodule(linear_name)
        linear = getattr(linear, "inner", linear)
        norm.weight.div_(r)
        norm.bias.div_(r)
        linear.weight.mul_(r[None, :])
