"""A Hadamard rotation of each attention head's output, folded into the value rows and the projection's columns.

The attention projection reads the heads' outputs with no LayerNorm before it. Its channel ranges fold into the
value rows instead (fold.fold_value_ranges), but only in part (alpha 0.5 leaves the square root of their spread), so
a few large channels still set its per-tensor INT8 step for all the others. An orthogonal R per head, applied to the
head's values (W_v <- R^T W_v, b_v <- b_v R) and undone in the projection (W_o <- W_o R), leaves the float model as
it was (softmax(qk^T) v R R^T = softmax(qk^T) v) and spreads a large channel over the head's dimensions before the
quantizer. It spreads the projection's large weights over a head's columns too, so a
heavy-tailed row's 4-bit step is no longer set by a few of them. Nothing is added to the deployed graphs: only the
weights change.

Source: QuaRot (Ashkboos et al. 2024) and SpinQuant's R2 (Liu et al. 2024) fold the same head-wise Hadamard into
the value and output projections of LLMs; QuIP (Chee et al. 2023) names the weight side "incoherence processing".

The value facet (AnyLoc) is the value part of qkv's output, so a rotated block's facet is rotated too; the block
whose facet the artifact outputs is never rotated.
"""

from __future__ import annotations

import torch

from ..backbone.vit import DinoVisionTransformer
from .layer_search import choose
from .stats import InputStats

ROTATION_GAIN = 0.5  # a block is rotated only when that halves its projection's error (see choose_rotations)


def hadamard(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """The orthonormal Sylvester Hadamard matrix of order n (a power of two)."""
    if n < 1 or n & (n - 1):
        raise ValueError(f"a Sylvester Hadamard matrix needs a power of two, not {n}")
    h = torch.ones(1, 1, device=device)
    while h.shape[0] < n:
        h = torch.cat([torch.cat([h, h], dim=1), torch.cat([h, -h], dim=1)], dim=0)
    return h / n**0.5


def head_rotation(model: DinoVisionTransformer) -> torch.Tensor:
    """(C, C): one Hadamard block per head, in the channel order of the projection's input."""
    c = model.config
    block = hadamard(c.embed_dim // c.num_heads, model.blocks[0].attn.proj.weight.device)
    return torch.block_diag(*[block] * c.num_heads)


@torch.no_grad()
def rotate_head_outputs(model: DinoVisionTransformer, blocks: list[int]) -> None:
    """Fold the head-wise rotation into these blocks' value rows and projection columns, in place."""
    c = model.config.embed_dim
    values = slice(2 * c, 3 * c)
    rotation = head_rotation(model)
    for i in blocks:
        attn = model.blocks[i].attn
        attn.qkv.weight[values] = rotation.T @ attn.qkv.weight[values]
        attn.qkv.bias[values] = attn.qkv.bias[values] @ rotation
        attn.proj.weight.copy_(attn.proj.weight @ rotation)


@torch.no_grad()
def choose_rotations(model: DinoVisionTransformer, stats: dict[str, InputStats], percentile: float,
                     max_float_channels: int, facet_layer: int) -> list[int]:
    """The blocks whose projection, searched as layer_search searches every layer, comes out with at most
    ROTATION_GAIN x the W4A8 output error on rotated inputs and weights. The facet block is left out, and every
    block of a model whose head size is no power of two (every DINOv2 and DINOv3 size here has 64).

    The bar is high because this error is a proxy: it leaves out the rotated value rows of qkv, and it rounds
    weights to nearest on a sample of rows. Heavy-tailed projection weights clear it by 3-6x; where rotation
    cut it by 2-17 % (held-out-b), the calibrated model came out 0.003-0.01 patch cosine lower."""
    head_dim = model.config.embed_dim // model.config.num_heads
    if head_dim & (head_dim - 1):
        return []
    rotation = head_rotation(model)
    facet = facet_layer % len(model.blocks)
    chosen = []
    for i in (i for i in range(len(model.blocks)) if i != facet):
        name = f"blocks.{i}.attn.proj"
        rows, weight = stats[name].row_sample(), model.get_submodule(name).weight.detach()
        r = rotation.to(rows.device)
        plain = choose(rows, weight, None, percentile, max_float_channels)
        rotated = choose(rows @ r, weight @ r, None, percentile, max_float_channels)
        if rotated.error <= ROTATION_GAIN * plain.error:
            chosen.append(i)
    return chosen
