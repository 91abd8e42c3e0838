"""The most a grid of activation codes leaves of a model's output, however its weights are rounded.

Every quantized layer's input is rounded with one step per input channel, its 2^bits codes spread over that
channel's own range (0 on the grid) on the very frames it runs on, and the weights stay float. That is finer than
anything a calibration can deploy: per channel is what a perfect fold of the channel ranges into the weights
gives, and a window from the frames themselves never clips or wastes a code (input_window places one per-tensor
window; this places one per channel). So when a model's ceiling at 8 bits is below a target, no W4A8 calibration
reaches that target on it; the bit-width at which the ceiling clears the target says what would.

The patch embedding is left unrounded: GPLQ's reads the frame's own 8-bit pixels (pixel_input), which lose nothing,
where 2^bits codes over each normalised channel's range would round every pixel again.
"""

from __future__ import annotations

import copy
from functools import partial

import torch
from torch import nn

from ..backbone.vit import DinoVisionTransformer
from .placement import get_module, linear_names


def ceiling_model(model: DinoVisionTransformer, bits: int) -> DinoVisionTransformer:
    """A copy of `model` whose quantized layers see their inputs rounded to `bits`-bit codes per channel."""
    if not 2 <= bits <= 16:
        raise ValueError(f"activation bits {bits}: use 2 to 16")
    rounded = copy.deepcopy(model)
    for name in (n for n in linear_names(rounded) if n != "patch_embed.proj"):
        get_module(rounded, name).register_forward_pre_hook(partial(_round_per_channel, bits=bits))
    return rounded


def _round_per_channel(module: nn.Module, args: tuple, bits: int) -> tuple:
    x = args[0]
    over = tuple(range(x.ndim - 1))  # every token: one step per input channel
    lower, upper = x.amin(dim=over, keepdim=True).clamp_max(0), x.amax(dim=over, keepdim=True).clamp_min(0)
    steps = (1 << bits) - 1
    step = (upper - lower).clamp_min(1e-12) / steps
    low = torch.round(lower / step)
    return (torch.clamp(torch.round(x / step), low, low + steps) * step, *args[1:])
