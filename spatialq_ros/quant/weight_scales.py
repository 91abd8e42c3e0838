"""Per-output-channel scales for symmetric 4-bit (or wider) weights."""

from __future__ import annotations

import torch

from .fake_quant import signed_range

MSE_GRID = torch.linspace(0.5, 1.0, 21)


def weight_scales(weight: torch.Tensor, method: str = "mse", grid: torch.Tensor = MSE_GRID, bits: int = 4
                  ) -> torch.Tensor:
    """(out, in) -> (out,). "minmax": max|w| / the largest code (7 at 4 bits); "mse": the clipping of max|w| that
    minimises each row's squared rounding error (outlier columns then cost less of the other weights' precision)."""
    codes = signed_range(bits)
    w = weight.detach().reshape(weight.shape[0], -1).float()
    top = w.abs().amax(dim=1).clamp_min(1e-8) / codes[1]
    if method == "minmax":
        return top
    if method != "mse":
        raise ValueError(f"unknown weight scale method {method!r}")
    best_err = torch.full_like(top, float("inf"))
    best = top.clone()
    for ratio in grid:
        scale = top * ratio
        q = torch.clamp(torch.round(w / scale[:, None]), *codes) * scale[:, None]
        err = (q - w).pow(2).sum(dim=1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, scale, best)
    return best
