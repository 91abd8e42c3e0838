"""A Linear (or the patch-embedding conv) with an INT8 input quantizer and optional INT4 (or 7-bit) weights.

Stage 1 of GPLQ trains the input scale with float weights; stage 2 freezes it and quantizes the
weights per output channel. Biases stay float, as in the deployed QDQ graph.

A few input channels may stay float (LLM.int8()-style decomposition): the "massive activations" of
trained ViTs reach thousands in one or two hidden units of a late MLP, only at the high-norm tokens.
One per-tensor INT8 scale cannot hold them and the rest (clipping them erases those tokens; covering
them leaves the other channels a handful of codes), so their weight columns move to a float side path
and are zero in the quantized weight: their clipped codes then contribute nothing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .fake_quant import fake_quant, signed_range
from .input_window import SYMMETRIC_LOW, window_codes


class QuantLinear(nn.Module):
    def __init__(self, linear: nn.Linear | nn.Conv2d) -> None:
        super().__init__()
        self.inner = linear
        device = linear.weight.device  # wrapping a layer leaves it where it is
        self.act_scale = nn.Parameter(torch.tensor(1.0, device=device))
        self.register_buffer("weight_scale", torch.empty(0, device=device))
        self.register_buffer("float_channels", torch.empty(0, dtype=torch.long, device=device))
        self.register_buffer("quantized_columns", torch.empty(0, device=device))
        # the conv's x * input_scale + input_shift per input channel before everything (pixel_input); empty: none
        self.register_buffer("input_scale", torch.empty(0, device=device))
        self.register_buffer("input_shift", torch.empty(0, device=device))
        self.act_low = SYMMETRIC_LOW  # the input's lowest code (input_window): the codes are [act_low, act_low + 255]
        self.float_weight: nn.Parameter | None = None
        self.quantize_input = True
        self.weight_bits = 4  # 7 where calibration measured that 4 bits cost this layer too much

    @property
    def act_codes(self) -> tuple[int, int]:
        return window_codes(self.act_low)

    @property
    def weight(self) -> torch.Tensor:
        return self.inner.weight

    def keep_float(self, channels: torch.Tensor) -> None:
        """Route these input channels around the quantizers (float weight columns, float input)."""
        if isinstance(self.inner, nn.Conv2d):
            raise ValueError("float input channels are for Linear layers")
        weight = self.inner.weight
        self.float_channels = channels.to(weight.device, torch.long).clone()
        self.float_weight = nn.Parameter(weight[:, self.float_channels].detach().clone())
        mask = torch.ones(weight.shape[1], device=weight.device)
        mask[self.float_channels] = 0.0
        self.quantized_columns = mask
        with torch.no_grad():
            weight[:, self.float_channels] = 0.0

    def set_input_affine(self, scale: torch.Tensor, shift: torch.Tensor) -> None:
        """The conv reads x * scale + shift (per input channel) instead of x; the caller folds the inverse into the
        weights (pixel_input, the patch embedding only)."""
        self.input_scale = scale.detach().to(self.inner.weight.device).clone()
        self.input_shift = shift.detach().to(self.inner.weight.device).clone()

    def affine_input(self, x: torch.Tensor) -> torch.Tensor:
        """The input as the quantizer and the weights see it."""
        if not self.input_scale.numel():
            return x
        return x * self.input_scale[None, :, None, None] + self.input_shift[None, :, None, None]

    def quantizable_weight(self) -> torch.Tensor:
        """The float weight the 4-bit grid applies to: float-channel columns held at zero."""
        w = self.inner.weight
        return w * self.quantized_columns if self.quantized_columns.numel() else w

    def set_weight_scale(self, scale: torch.Tensor | None) -> None:
        self.weight_scale = (torch.empty(0, device=self.inner.weight.device) if scale is None
                             else scale.detach().to(self.inner.weight.device).clone())

    def quantized_weight(self) -> torch.Tensor:
        w = self.quantizable_weight()
        if self.weight_scale.numel() == 0:
            return w
        shape = (-1,) + (1,) * (w.ndim - 1)
        return fake_quant(w, self.weight_scale.reshape(shape), signed_range(self.weight_bits))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = raw = self.affine_input(x)
        if self.quantize_input:
            x = fake_quant(x, self.act_scale.abs().clamp_min(1e-8), self.act_codes, lsq=self.training)
        w = self.quantized_weight()
        if isinstance(self.inner, nn.Conv2d):
            return F.conv2d(x, w, self.inner.bias, stride=self.inner.stride)
        y = F.linear(x, w, self.inner.bias)
        if self.float_weight is not None:
            y = y + F.linear(raw.index_select(-1, self.float_channels), self.float_weight)
        return y
