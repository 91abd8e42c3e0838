"""Where the quantizers sit: the input of every Linear in the blocks and of the patch embedding.

LayerNorm, GELU, softmax, attention probabilities and residual adds stay float (REFERENCE.md 2).
"""

from __future__ import annotations

from torch import nn

from ..backbone.vit import DinoVisionTransformer
from .qlinear import QuantLinear


def linear_names(model: DinoVisionTransformer) -> list[str]:
    """Quantized layers in forward order, by their official names."""
    names = ["patch_embed.proj"]
    ffn = ("mlp.w12", "mlp.w3") if model.config.ffn == "swiglu" else ("mlp.fc1", "mlp.fc2")
    for i in range(len(model.blocks)):
        names += [f"blocks.{i}.attn.qkv", f"blocks.{i}.attn.proj", f"blocks.{i}.{ffn[0]}", f"blocks.{i}.{ffn[1]}"]
    return names


def post_layernorm_pairs(model: DinoVisionTransformer) -> list[tuple[str, str]]:
    """(LayerNorm, the Linear it feeds): the inputs with per-channel outliers, folded RepQ-style."""
    pairs = []
    first_ffn = "mlp.w12" if model.config.ffn == "swiglu" else "mlp.fc1"
    for i in range(len(model.blocks)):
        pairs += [(f"blocks.{i}.norm1", f"blocks.{i}.attn.qkv"), (f"blocks.{i}.norm2", f"blocks.{i}.{first_ffn}")]
    return pairs


def value_projections(model: DinoVisionTransformer, facet_layer: int) -> list[str]:
    """The attention projections whose input ranges may fold into the value rows (fold_value_ranges): every
    block's but the one whose value facet the artifact outputs."""
    facet = facet_layer % len(model.blocks)
    return [f"blocks.{i}.attn.proj" for i in range(len(model.blocks)) if i != facet]


def get_module(model: nn.Module, name: str) -> nn.Module:
    return model.get_submodule(name)


def set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent, _, attr = name.rpartition(".")
    setattr(model.get_submodule(parent), attr, module)


def wrap(model: DinoVisionTransformer) -> dict[str, QuantLinear]:
    """Swap every quantized layer for a QuantLinear around it, in place."""
    wrapped = {}
    for name in linear_names(model):
        module = get_module(model, name)
        if not isinstance(module, QuantLinear):
            module = QuantLinear(module)
            set_module(model, name, module)
        wrapped[name] = module
    return wrapped
