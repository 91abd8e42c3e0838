"""Where a layer's 256 INT8 input codes sit: one step, and a window of codes placed where the values are.

A symmetric window [-top, top] spends half its codes on a side the input may barely reach. GELU's output, the
second FFN layer's input, never goes below -0.17, so a symmetric grid leaves it the 128 positive codes. Here the
window is the symmetric one cut back to the values' own range on each side (at the same tail share), and the 256
codes are spread over what is left: about twice as fine for a one-sided input, the same grid for a symmetric one.

Any integer lowest code deploys exactly: ONNX Runtime's integer kernels take it as the uint8 zero point, and the
QDQ graphs (TensorRT takes zero point 0 only) shift the input by a whole number of steps and fold the shift into
the bias.
"""

from __future__ import annotations

import torch

CODES = 256  # an 8-bit window
SYMMETRIC_LOW = -128  # the lowest code of the symmetric window [-128, 127]


def clipping_level(values: torch.Tensor, percentile: float) -> float:
    """The symmetric window's half width: a percentile of |x|."""
    return max(float(torch.quantile(values.abs().reshape(-1).float(), percentile / 100.0)), 1e-6)


def input_window(values: torch.Tensor, percentile: float) -> tuple[float, int]:
    """A sample of a layer's signed input values -> (step, lowest code); the codes are [low, low + 255]."""
    flat = values.reshape(-1).float()
    top = clipping_level(flat, percentile)
    tail = (1.0 - percentile / 100.0) / 2  # the share clipped on each side of a symmetric input
    lower = min(max(float(torch.quantile(flat, tail)), -top), 0.0)
    upper = max(min(float(torch.quantile(flat, 1.0 - tail)), top), 0.0)
    step = max(upper - lower, 1e-6) / (CODES - 1)
    return step, int(min(0, max(-(CODES - 1), round(lower / step))))


def window_codes(low: int) -> tuple[int, int]:
    """The code range of a window that starts at `low`."""
    return low, low + CODES - 1
