"""Activation statistics of the quantized layers' inputs over calibration frames."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

SAMPLE_PER_BATCH = 20000
ROWS_PER_BATCH = 512  # whole input rows (tokens) per batch, for the per-layer search


@dataclass
class InputStats:
    channel_max: torch.Tensor | None = None  # per input channel max |x|
    samples: list[torch.Tensor] = field(default_factory=list)  # signed values at random positions, for percentiles
    tensor_max: float = 0.0
    rows: list[torch.Tensor] = field(default_factory=list)  # random whole input rows of a Linear (tokens)

    def add(self, x: torch.Tensor, generator: torch.Generator) -> None:
        x = x.detach().float()
        channels = x.transpose(0, 1).reshape(x.shape[1], -1) if x.ndim == 4 else x.reshape(-1, x.shape[-1]).T
        cmax = channels.abs().amax(dim=1)
        self.channel_max = cmax if self.channel_max is None else torch.maximum(self.channel_max, cmax)
        flat = x.reshape(-1)
        self.tensor_max = max(self.tensor_max, float(flat.abs().max()))
        idx = torch.randint(0, flat.numel(), (min(SAMPLE_PER_BATCH, flat.numel()),), generator=generator,
                            device=generator.device)
        self.samples.append(flat[idx.to(flat.device)])
        if x.ndim == 3:
            tokens = x.reshape(-1, x.shape[-1])
            pick = torch.randperm(len(tokens), generator=generator, device=generator.device)[:ROWS_PER_BATCH]
            self.rows.append(tokens[pick.to(tokens.device)])

    def row_sample(self) -> torch.Tensor:
        return torch.cat(self.rows)

    def values(self) -> torch.Tensor:
        return torch.cat(self.samples)

    def massive_channels(self, top: float, factor: float, limit: int) -> torch.Tensor:
        """Input channels whose max |x| exceeds `factor` x the tensor's clipping level `top`, largest
        first, at most `limit` of them (massive activations: one or two units, thousands of times
        the rest, so a factor of 16 separates them cleanly)."""
        order = torch.argsort(self.channel_max, descending=True)[:limit]
        return order[self.channel_max[order] > factor * top]


@torch.no_grad()
def collect_input_stats(model: nn.Module, names: list[str], batches: list[torch.Tensor]) -> dict[str, InputStats]:
    """Run the model over `batches`, recording the input of each named module. The positions sampled for
    the percentiles are drawn on the CPU from one seed, whatever device the model runs on: deterministic,
    and the same positions on every device, so a CUDA calibration samples what a CPU one does."""
    stats = {name: InputStats() for name in names}
    generator = torch.Generator(device="cpu").manual_seed(0)
    hooks = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda _m, args, name=name: stats[name].add(args[0], generator))
        for name in names
    ]
    try:
        for batch in batches:
            model.forward_features(batch)
    finally:
        for hook in hooks:
            hook.remove()
    return stats
