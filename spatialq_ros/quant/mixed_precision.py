"""Which layers get wider weights (7-bit codes, int8 storage): those whose 4-bit rounding costs the model's output
the most per weight.

A layer's own output error says little about what its error does downstream: the q and k of a sharp attention
head turn a small weight error into a different attention pattern, while the error of a wide MLP averages out. So,
one layer at a time, the 4-bit weights are swapped for the float ones and the change of the final patch tokens on
a few calibration frames is measured (a measured HAWQ-style sensitivity). The layers that remove the most error
per weight get 7 bits, up to a share of all quantized weights. This goes in rounds: the 4-bit errors of all layers
compound, so while the worst layers are at 4 bits every other one seems to matter little; once they are widened,
the probe is run again and the next ones stand out. Nothing here knows which model it faces.
Wider codes cost nothing in the cpu and QDQ graphs, whose weights are int8 already; only the int4 storage grows.

7 bits, not 8: without VNNI (AVX2, AVX-512 before VNNI, SSE4.1) ONNX Runtime multiplies uint8 activations by int8
weights with vpmaddubsw, which saturates a pair of products at 32767; codes within [-64, 63] keep every pair
(255 x 64 x 2 = 32640) exact. The 4-bit codes are far inside that.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from tqdm import tqdm

from ..backbone.vit import DinoVisionTransformer
from .qlinear import QuantLinear

WIDE_BITS = 7
MIN_GAIN = 0.02  # a layer is widened only if float weights there remove 2 % of the probe error or more
PROBE_FRAMES = 8
PROBE_TOKENS = 2048  # patches per probe at most: 8 frames at 224 px, 2 at 448 (a round's cost grows with them)
MAX_ROUNDS = 6  # of probing and widening; a round that widens nothing ends them


@dataclass(frozen=True)
class Sensitivity:
    error: float  # the probe error with every layer at 4 bits: squared error of the final patch tokens / their
    #               spread around their mean (not their norm, which a large shared offset would inflate)
    gains: dict[str, float]  # layer -> share of that error removed by its float weights


@dataclass(frozen=True)
class Widening:
    gains: dict[str, float]  # widened layer -> share of the probe error it removed in the round that chose it
    error: float  # the probe error with every layer at 4 bits
    error_after: float  # ... once the widened layers are at 7 bits


class Probe:
    """The student's final patch tokens on the probe frames against the teacher's. The block inputs of the student as
    it is now are cached: after changing a layer in block i, only blocks i.. are rerun."""

    def __init__(self, student: DinoVisionTransformer, teacher: DinoVisionTransformer, images: torch.Tensor) -> None:
        self.student = student
        self.run = student.block_call(*student.grid(images))
        self.first_patch = 1 + student.config.num_register_tokens
        self.images = images
        self.target = self._from(teacher, teacher.prepare_tokens(images), 0,
                                 teacher.block_call(*teacher.grid(images)))
        centred = self.target - self.target.reshape(-1, self.target.shape[-1]).mean(dim=0)
        self.spread = float(centred.pow(2).sum().clamp_min(1e-12))
        self.inputs = []
        x = student.prepare_tokens(images)
        for block in student.blocks:
            self.inputs.append(x)
            x, _ = self.run(block, x)

    def _from(self, model, x: torch.Tensor, start: int, run) -> torch.Tensor:
        for block in model.blocks[start:]:
            x, _ = run(block, x)
        return model.norm(x)[:, self.first_patch:]

    def error(self, layer_name: str | None = None) -> float:
        """The probe error now; layer_name: only blocks from that layer's on are rerun (the rest are cached)."""
        if layer_name is None or not layer_name.startswith("blocks."):
            out = self._from(self.student, self.student.prepare_tokens(self.images), 0, self.run)
        else:
            start = int(layer_name.split(".")[1])
            out = self._from(self.student, self.inputs[start], start, self.run)
        return float((out - self.target).pow(2).sum()) / self.spread


def probe_frames(model: DinoVisionTransformer, images: torch.Tensor) -> torch.Tensor:
    """The frames the probe runs on: PROBE_FRAMES, fewer where they would hold more than PROBE_TOKENS patches
    (at least 2)."""
    grid_h, grid_w = model.grid(images)
    return images[: max(2, min(PROBE_FRAMES, PROBE_TOKENS // (grid_h * grid_w)))]


@torch.no_grad()
def sensitivity(student: DinoVisionTransformer, teacher: DinoVisionTransformer, layers: dict[str, QuantLinear],
                floats: dict[str, torch.Tensor], images: torch.Tensor, progress: bool = True,
                step: Callable[[str, int, int], None] | None = None,
                label: str = "stage 2: 7-bit sensitivity") -> Sensitivity:
    """Each layer's gain from float weights, on the first of `images` (probe_frames); floats: every layer's
    weight before rounding. The layers are left as they were."""
    probe = Probe(student, teacher, probe_frames(student, images))
    base = probe.error()
    gains = {}
    for i, (name, layer) in enumerate(tqdm(layers.items(), desc=label, unit="layer", disable=not progress)):
        rounded, scale = layer.inner.weight.detach().clone(), layer.weight_scale
        layer.inner.weight.copy_(floats[name])
        layer.set_weight_scale(None)
        gains[name] = (base - probe.error(name)) / max(base, 1e-12)
        layer.inner.weight.copy_(rounded)
        layer.set_weight_scale(scale)
        if step:
            step(label, i + 1, len(layers))
    return Sensitivity(base, gains)


@torch.no_grad()
def widen_where_it_pays(student: DinoVisionTransformer, teacher: DinoVisionTransformer,
                        layers: dict[str, QuantLinear], floats: dict[str, torch.Tensor], images: torch.Tensor,
                        share: float, widen: Callable[[dict[str, QuantLinear]], None], progress: bool = True,
                        step: Callable[[str, int, int], None] | None = None) -> Widening:
    """Rounds of sensitivity and choice over the layers still at 4 bits, `widen` putting each round's choice on 7
    bits, until a round finds no layer worth it or the share of the weights is spent."""
    sizes = {n: layer.inner.weight.numel() for n, layer in layers.items()}
    budget = share * sum(sizes.values())
    gains: dict[str, float] = {}
    first = 0.0
    for round_ in range(1, MAX_ROUNDS + 1):
        narrow = {n: layer for n, layer in layers.items() if n not in gains}
        left = budget - sum(sizes[n] for n in gains)
        if round_ > 1 and all(sizes[n] > left for n in narrow):
            break  # the share is spent: no layer left would fit, so no probe is needed to know
        found = sensitivity(student, teacher, narrow, floats, images, progress, step,
                            f"stage 2: 7-bit sensitivity, round {round_}")
        if round_ == 1:
            first = found.error
        chosen = choose(found.gains, {n: sizes[n] for n in narrow}, left)
        if not chosen:  # this round's probe already measured the model as it stays
            return Widening(gains, first, found.error)
        widen({n: layers[n] for n in chosen})
        gains.update({n: found.gains[n] for n in chosen})
    return Widening(gains, first, Probe(student, teacher, probe_frames(student, images)).error())


def choose(gains: dict[str, float], sizes: dict[str, int], budget: float, min_gain: float = MIN_GAIN) -> list[str]:
    """The layers that get 7 bits: by gain per weight, each removing at least min_gain of the error, while their
    weights stay within `budget` (sizes: weights per layer)."""
    chosen, used = [], 0
    for name in sorted(gains, key=lambda n: gains[n] / sizes[n], reverse=True):
        if gains[name] >= min_gain and used + sizes[name] <= budget:
            chosen.append(name)
            used += sizes[name]
    return chosen
