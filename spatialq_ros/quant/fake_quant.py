"""Uniform symmetric fake quantization with straight-through rounding and LSQ scale gradients."""

from __future__ import annotations

import torch

INT8 = (-128, 127)
INT4 = (-8, 7)


def signed_range(bits: int) -> tuple[int, int]:
    """The codes of a symmetric signed grid of `bits` bits: INT4 for 4, INT8 for 8."""
    return -(1 << (bits - 1)), (1 << (bits - 1)) - 1


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round forward, identity backward. torch.round is half-to-even, as ONNX QuantizeLinear."""
    return (torch.round(x) - x).detach() + x


def grad_scale(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Same value, gradient times `factor` (LSQ: keeps scale updates the size of weight updates)."""
    return (x - x * factor).detach() + x * factor


def fake_quant(x: torch.Tensor, scale: torch.Tensor, qrange: tuple[int, int], lsq: bool = False) -> torch.Tensor:
    """x -> clamp(round(x / scale)) * scale; `scale` broadcasts (per tensor or per channel)."""
    if lsq:
        scale = grad_scale(scale, 1.0 / (x.numel() * qrange[1]) ** 0.5)
    return torch.clamp(round_ste(x / scale), *qrange) * scale


def codes(x: torch.Tensor, scale: torch.Tensor, qrange: tuple[int, int]) -> torch.Tensor:
    """Integer codes (as int8) of `x` for a given scale."""
    return torch.clamp(torch.round(x / scale), *qrange).to(torch.int8)
