"""Per-layer choice of migration strength and float input channels, from each layer's own output error.

One fixed folding strength and one fixed "massive" threshold suit the model they were tuned on: a checkpoint
whose post-LayerNorm outlier channels are read with small weights wants alpha 0.5 and no float channels; one
that reads them at full weight wants them float. So each quantized Linear tries a few candidates on rows of its
own calibration input and keeps the one whose W4A8 output is closest to its float output (SmoothQuant's
alpha and AWQ's scale search, both chosen on the layer's output error; LLM.int8()'s float decomposition for
the channels that carry the output). The weights are rounded to nearest here (MSE scales): stage 2's error
feedback then does better on the grid the choice fixed. Nothing here knows which model it faces.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .fake_quant import INT4, fake_quant
from .input_window import input_window, window_codes
from .weight_scales import weight_scales

ALPHAS = (0.0, 0.25, 0.5, 0.75, 1.0)
FLOAT_COUNTS = (0, 2, 4, 8)
SEARCH_GRID = torch.linspace(0.5, 1.0, 6)  # weight clipping ratios tried per candidate (stage 2 tries 21)
QUANTILE_VALUES = 1 << 18  # |x| values a candidate's clipping level is taken from
SEARCH_ROWS = 1024  # calibration tokens each candidate is scored on
MORE_CHANNELS_GAIN = 0.75  # a larger float side path is kept only when it cuts the error by 25 % or more
DEFAULT_ALPHA = 0.5  # the fixed folding strength before the search: each choice is reported against it


@dataclass(frozen=True)
class LayerChoice:
    alpha: float | None  # folding strength into the LayerNorm before (None: no LayerNorm to fold into)
    float_channels: tuple[int, ...]
    error: float  # relative squared output error of the choice, W4A8 (weights rounded to nearest)
    baseline_error: float  # the same for DEFAULT_ALPHA and no float channels, the fixed default before

    def as_dict(self) -> dict:
        return {"alpha": self.alpha, "float_channels": list(self.float_channels), "error": round(self.error, 6),
                "baseline_error": round(self.baseline_error, 6)}


def fold_ratio(channel_max: torch.Tensor, alpha: float) -> torch.Tensor:
    """r_c = (s_c / mean s)^alpha: channel c of the LayerNorm output is divided by r_c, the Linear's column
    multiplied by it (the float function is unchanged)."""
    s = channel_max.clamp_min(1e-6)
    return (s / s.mean()).pow(alpha)


def output_error(rows: torch.Tensor, weight: torch.Tensor, float_channels: torch.Tensor, percentile: float,
                 exact: torch.Tensor) -> float:
    """Relative squared error of the W4A8 layer's output on `rows` against `exact`, its float output (which
    folding does not change). The input is rounded in the window a calibration would place (input_window)."""
    keep = torch.ones(weight.shape[1], dtype=torch.bool, device=weight.device)
    keep[float_channels] = False
    quantized_rows = rows[:, keep]
    step, low = input_window(subsample(quantized_rows), percentile)
    x = fake_quant(quantized_rows, step, window_codes(low))
    w = weight[:, keep]
    w = fake_quant(w, weight_scales(w, "mse", SEARCH_GRID)[:, None], INT4)
    approx = x @ w.T + rows[:, ~keep] @ weight[:, ~keep].T
    return float((approx - exact).pow(2).sum() / exact.pow(2).sum().clamp_min(1e-12))


def subsample(rows: torch.Tensor) -> torch.Tensor:
    """At most about QUANTILE_VALUES of these values, evenly strided: what a clipping level is taken from."""
    flat = rows.reshape(-1)
    return flat[:: max(1, flat.numel() // QUANTILE_VALUES)]


def contribution_order(rows: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Input channels by how much of the output they carry: max |x_c| times the norm of weight column c."""
    return torch.argsort(rows.abs().amax(dim=0) * weight.norm(dim=0), descending=True)


@torch.no_grad()
def choose(rows: torch.Tensor, weight: torch.Tensor, channel_max: torch.Tensor | None, percentile: float,
           max_float_channels: int, alphas: tuple[float, ...] = ALPHAS) -> LayerChoice:
    """rows: (N, in) inputs of the layer as the unfolded model sees them; weight: (out, in) unfolded;
    channel_max: per-channel max |x| when a LayerNorm before can absorb a fold (else None); alphas: the
    strengths to try (one, when the user fixed it)."""
    rows, weight = rows[:SEARCH_ROWS].float(), weight.float()
    exact = rows @ weight.T
    alphas = alphas if channel_max is not None else (None,)
    counts = tuple(k for k in FLOAT_COUNTS if k <= max_float_channels)
    default = DEFAULT_ALPHA if channel_max is not None else None
    best: tuple[float, float | None, tuple[int, ...]] | None = None
    baseline = None
    for alpha in alphas:
        x, w = _migrated(rows, weight, channel_max, alpha)
        order = contribution_order(x, w)
        previous = None
        for k in counts:
            channels = order[:k]
            error = output_error(x, w, channels, percentile, exact)
            if alpha == default and k == 0:
                baseline = error
            if previous is not None and error > MORE_CHANNELS_GAIN * previous[0]:
                continue  # not worth the wider float path
            previous = (error, k)
            if best is None or error < best[0] * (1.0 if k <= len(best[2]) else MORE_CHANNELS_GAIN):
                best = (error, alpha, tuple(int(c) for c in channels))
    if baseline is None:  # the user fixed a strength other than the default: score the default too
        baseline = output_error(*_migrated(rows, weight, channel_max, default), order[:0], percentile, exact)
    return LayerChoice(best[1], tuple(sorted(best[2])), best[0], baseline)


def _migrated(rows: torch.Tensor, weight: torch.Tensor, channel_max: torch.Tensor | None, alpha: float | None
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """The layer's input and weight with the channel ranges folded at strength alpha (None: as they are)."""
    if alpha is None:
        return rows, weight
    r = fold_ratio(channel_max.float(), alpha)
    return rows / r, weight * r
