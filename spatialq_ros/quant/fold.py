"""SmoothQuant-style folding of per-channel input ranges into the weights, so one per-tensor INT8 step fits.

Channel c of a Linear's input is divided by r_c where it is made and the Linear's column c multiplied by it: the
float model is unchanged. r_c = (s_c / mean(s))^alpha: alpha 1 is RepQ-ViT's full migration, alpha 0.5 shares the
ranges between the activations and the (4-bit!) weights.

- Post-LayerNorm inputs (qkv, the first FFN layer): r goes into the norm's gamma and beta. alpha may differ per
  Linear (layer_search chooses it from each layer's output error).
- The attention projection's input: r goes into the value rows of qkv (weight and bias), since
  softmax(qk^T)(v / r) = softmax(qk^T) v / r. The value rows' 4-bit steps are per row, so they take the scale
  exactly; only the projection's columns pay. Its strength is fixed (CalibrationConfig.value_alpha), not searched:
  the layer's own W4A8 error prefers alpha 0 on every projection of the ViT-B zoo member (weights rounded to nearest
  dominate it), yet 0.5 took that member's held-out patch NN agreement from 0.784 to 0.814 (README's zoo).
  Rounding noise on the input is drawn afresh for every token, so it pulls near-identical patches apart; a weight
  error moves them together, and stage 2's error feedback shrinks it.
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


@torch.no_grad()
def fold_value_ranges(model: DinoVisionTransformer, stats: dict[str, InputStats], alpha: dict[str, float]) -> None:
    """alpha: strength per attention projection ("blocks.i.attn.proj"); the others are left as they are."""
    c = model.config.embed_dim
    values = slice(2 * c, 3 * c)
    for name, strength in alpha.items():
        r = fold_ratio(stats[name].channel_max, strength)
        attn = model.get_submodule(name.rpartition(".")[0])
        qkv, proj = getattr(attn.qkv, "inner", attn.qkv), getattr(attn.proj, "inner", attn.proj)
        qkv.weight[values] /= r[:, None]
        qkv.bias[values] /= r
        proj.weight.mul_(r[None, :])
