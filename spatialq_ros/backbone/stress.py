"""A zoo of seeded stress models: the ways trained ViTs are known to be hard to quantize, one regime each.

Our own seeded model (`synthetic.py`) reads its outlier channels with small weights, which makes it easy;
users calibrate checkpoints that were not built to be easy. Each regime below is a small, deterministic edit
of a plain seeded state dict (official layout, every DINOv2 and DINOv3 size), shaped after a published observation
of trained transformers; its docstring names the source. DINOv3 has no position table to mark tokens with: there
the marked tokens are its storage tokens (where trained register models hold their high norms). A zoo member is an architecture, a seed and a list of
regimes with their strengths. HELD_OUT holds members made apart from the zoo (other seeds, other strengths,
other combinations), for checking that a calibration did not learn the zoo.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from .archs import ARCHS, ViTConfig
from .synthetic import synthetic_state_dict

StateDict = dict[str, np.ndarray]


def _ffn_linears(config: ViTConfig) -> tuple[str, ...]:
    """The FFN's Linear names in the official layout (DINOv3 keeps SwiGLU's gate w1 and w2 apart)."""
    if config.ffn != "swiglu":
        return ("mlp.fc1", "mlp.fc2")
    return ("mlp.w1", "mlp.w2", "mlp.w3") if config.family == "dinov3" else ("mlp.w12", "mlp.w3")


def _block_linears(config: ViTConfig) -> tuple[str, ...]:
    return ("attn.qkv", "attn.proj") + _ffn_linears(config)


def _registers(config: ViTConfig) -> str:
    return "storage_tokens" if config.family == "dinov3" else "register_tokens"


def ln_outliers(sd: StateDict, config: ViTConfig, rng: np.random.Generator, channels: int = 4,
                gain: float = 25.0) -> None:
    """A few residual channels that every LayerNorm (the final norm too) scales up by `gain`, and that the next
    Linear reads at full weight, so they carry much of its output.

    Source: SmoothQuant (Xiao et al. 2023): activation outliers sit in a few fixed channels, the weights are flat
    against them; RepQ-ViT (Li et al. 2023): post-LayerNorm activations of ViTs vary by channel far beyond a
    per-tensor scale; LLM.int8() (Dettmers et al. 2022): removing those features ruins the model."""
    picked = rng.choice(config.embed_dim, channels, replace=False)
    for name in [f"blocks.{i}.{n}" for i in range(config.depth) for n in ("norm1", "norm2")] + ["norm"]:
        sd[name + ".weight"][picked] *= gain
        sd[name + ".bias"][picked] *= gain


def heavy_tailed_weights(sd: StateDict, config: ViTConfig, rng: np.random.Generator, nu: float = 3.5,
                         outlier_rows: float = 0.01, row_gain: float = 6.0) -> None:
    """Every block Linear's weight drawn from a Student-t (same std as before), and a few output rows
    `row_gain` times the rest.

    Source: trained weight matrices are heavy-tailed (Martin and Mahoney 2021, "heavy-tailed
    self-regularization"); a few outlier weights decide a layer's 4-bit error (SqueezeLLM, Kim et al. 2024,
    dense-and-sparse); single "super weights" and outlier rows matter most (Yu et al. 2024)."""
    for i in range(config.depth):
        for linear in _block_linears(config):
            w = sd[f"blocks.{i}.{linear}.weight"]
            t = rng.standard_t(nu, w.shape) * np.sqrt((nu - 2) / nu)
            rows = rng.choice(w.shape[0], max(1, int(round(outlier_rows * w.shape[0]))), replace=False)
            t[rows] *= row_gain
            sd[f"blocks.{i}.{linear}.weight"] = (t * w.std()).astype(np.float32)


def sharp_attention(sd: StateDict, config: ViTConfig, rng: np.random.Generator, heads: int = 2,
                    gain: float = 3.5) -> None:
    """In each block, `heads` heads whose queries and keys are `gain` times larger: logits gain^2 wider, so
    these heads put most of a row's mass on one or two keys (low entropy), and small q/k errors move it.

    Source: attention entropy collapse in trained ViTs (Zhai et al. 2023); PTQ4ViT (Yuan et al. 2022) and
    APQ-ViT (Ding et al. 2022): post-softmax and near-one-hot attention is where ViT PTQ loses most."""
    c, hd = config.embed_dim, config.embed_dim // config.num_heads
    for i in range(config.depth):
        for head in rng.choice(config.num_heads, heads, replace=False):
            for part in (0, 1):  # q and k thirds of qkv
                rows = slice(part * c + head * hd, part * c + (head + 1) * hd)
                sd[f"blocks.{i}.attn.qkv.weight"][rows] *= gain
                sd[f"blocks.{i}.attn.qkv.bias"][rows] *= gain


def massive_activations(sd: StateDict, config: ViTConfig, rng: np.random.Generator,
                        blocks: tuple[int, ...] = (1, -2), magnitude: float = 300.0, fraction: float = 0.01,
                        channels: int = 2) -> None:
    """At each of `blocks` (an early and a late one), one MLP unit that fires at ~`fraction` of the patch
    positions (DINOv3: at one storage token each, ~0.5 % of the tokens at 224 px) and writes `magnitude` x the
    median |activation| into `channels` fixed residual channels, which keep it to the end (the residual stream
    carries it on).

    Source: "Massive activations" (Sun et al. 2024): a few fixed feature dimensions at a few tokens,
    100-10,000x the median, appear in an early layer and stay; shown in LLMs and in ViTs (CLIP, DINOv2-reg)."""
    c = config.embed_dim
    median = _median_residual(sd, config)
    for n, block in enumerate(blocks):
        block %= config.depth
        target = rng.choice(c, channels, replace=False)
        write = np.zeros(c, np.float32)
        write[target] = rng.choice([-1.0, 1.0], channels) * magnitude * median
        _mark_and_write(sd, config, rng, block, fraction, write, marks_offset=n)


def high_norm_registers(sd: StateDict, config: ViTConfig, rng: np.random.Generator, block: int = -6,
                        lift: float = 8.0) -> None:
    """From `block` on, the register tokens carry norms `lift` x the median patch token's: a mid-network MLP
    unit, gated on a direction only the registers hold, writes a large vector into them.

    Source: Darcet et al. 2024, "Vision Transformers Need Registers": trained ViTs grow high-norm tokens
    (~10x the norm of the others) that hold global information; with registers, the registers hold them."""
    if not config.num_register_tokens:
        raise ValueError("high_norm_registers needs an architecture with register tokens")
    c = config.embed_dim
    d = rng.standard_normal(c).astype(np.float32)
    d /= np.linalg.norm(d)
    sd[_registers(config)][0] += 16.0 * d
    write = rng.standard_normal(c).astype(np.float32)
    write *= lift * _median_token_norm(sd, config) / np.linalg.norm(write)
    _write_unit(sd, config, block % config.depth, d, write)


def _median_token_norm(sd: StateDict, config: ViTConfig) -> float:
    """A patch token's typical norm: position embedding (if any) plus patch embedding of a unit-variance image."""
    proj = sd["patch_embed.proj.weight"].reshape(config.embed_dim, -1)
    position = (sd["pos_embed"][0, 1:] ** 2).sum(axis=1).mean() if "pos_embed" in sd else 0.0
    return float(np.sqrt((proj**2).sum() + position))


def _median_residual(sd: StateDict, config: ViTConfig) -> float:
    return _median_token_norm(sd, config) / np.sqrt(config.embed_dim) * 0.6745  # |N(0, s)| median = 0.6745 s


def _mark_and_write(sd: StateDict, config: ViTConfig, rng: np.random.Generator, block: int, fraction: float,
                    write: np.ndarray, marks_offset: int = 0) -> None:
    """Mark ~fraction of the position grid (3x3 blobs, which survive resampling to other grids) along a new
    direction in the position embedding, and make `block` write `write` into the marked tokens. Without a position
    table (DINOv3) the mark goes on storage token `marks_offset` instead, and `fraction` is not used."""
    c, m = config.embed_dim, config.pos_grid
    d = rng.standard_normal(c).astype(np.float32)
    d /= np.linalg.norm(d)
    if config.pos_encoding == "rope":
        sd[_registers(config)][0, marks_offset % config.num_register_tokens] += 16.0 * d
        _write_unit(sd, config, block, d, write, unit=1 + marks_offset)
        return
    marks = np.zeros((m, m), bool)
    for cy, cx in rng.integers(1, m - 1, (max(1, int(round(fraction * m * m / 9))), 2)):
        marks[cy - 1 : cy + 2, cx - 1 : cx + 2] = True
    sd["pos_embed"][0, 1:][marks.ravel()] += 16.0 * d
    _write_unit(sd, config, block, d, write, unit=1 + marks_offset)


def _write_unit(sd: StateDict, config: ViTConfig, block: int, d: np.ndarray, write: np.ndarray,
                unit: int = 0) -> None:
    """Turn MLP hidden unit `unit` of `block` into a detector of direction d (after norm2) that adds
    write / LayerScale to the residual; the size lives in the hidden activation, not in the weights."""
    pre = f"blocks.{block}."
    gate = d / sd[pre + "norm2.weight"]
    gate /= np.linalg.norm(gate)
    gamma = sd[pre + "ls2.gamma"]
    column = write / gamma
    size = float(np.linalg.norm(column))
    if config.ffn == "swiglu":
        gate_w, gate_b, linear_w, linear_b = _swiglu_inputs(sd, config, pre)
        gate_w[unit] = 8.0 * gate
        gate_b[unit] = -14.0
        linear_w[unit] = 0.0
        linear_b[unit] = size / 16.0
        sd[pre + "mlp.w3.weight"][:, unit] = column / size
    else:
        sd[pre + "mlp.fc1.weight"][unit] = size / 16.0 * 8.0 * gate
        sd[pre + "mlp.fc1.bias"][unit] = -size / 16.0 * 14.0
        sd[pre + "mlp.fc2.weight"][:, unit] = column / size


def _swiglu_inputs(sd: StateDict, config: ViTConfig, pre: str) -> tuple[np.ndarray, ...]:
    """Views of the SwiGLU gate (silu) and linear branches' weight and bias, in either official layout."""
    if config.family == "dinov3":
        return sd[pre + "mlp.w1.weight"], sd[pre + "mlp.w1.bias"], sd[pre + "mlp.w2.weight"], sd[pre + "mlp.w2.bias"]
    hidden = sd[pre + "mlp.w3.weight"].shape[1]
    w, b = sd[pre + "mlp.w12.weight"], sd[pre + "mlp.w12.bias"]
    return w[:hidden], b[:hidden], w[hidden:], b[hidden:]


Regime = Callable[..., None]
REGIMES: dict[str, Regime] = {f.__name__: f for f in (heavy_tailed_weights, sharp_attention, ln_outliers,
                                                      massive_activations, high_norm_registers)}


@dataclass(frozen=True)
class StressModel:
    """arch + seed + regimes (name, strengths), applied in order to the plain seeded weights; `ours` is the
    project's own seeded model instead (synthetic.py with its outliers)."""
    arch: str
    seed: int = 0
    regimes: tuple[tuple[str, dict], ...] = ()
    ours: bool = False
    depth: int | None = None
    notes: str = field(default="", compare=False)

    def config(self) -> ViTConfig:
        config = ARCHS[self.arch]
        return config if self.depth is None else ViTConfig(**{**config.__dict__, "depth": self.depth})

    def state_dict(self) -> StateDict:
        config = self.config()
        if self.ours:
            return synthetic_state_dict(config, seed=self.seed, outliers=True)
        sd = synthetic_state_dict(config, seed=self.seed, outliers=False)
        rng = np.random.default_rng([self.seed, 1])  # apart from the base weights' stream
        for name, strengths in self.regimes:
            REGIMES[name](sd, config, rng, **strengths)
        return sd

    def describe(self) -> str:
        if self.ours:
            return f"{self.arch}: the project's own seeded model"
        parts = [name + (f"({', '.join(f'{k}={v}' for k, v in s.items())})" if s else "") for name, s in self.regimes]
        return f"{self.arch}: " + " + ".join(parts)


ZOO: dict[str, StressModel] = {
    "ours": StressModel("vits14", ours=True, notes="today's model"),
    "ln-outliers": StressModel("vits14", 1, (("ln_outliers", {}),)),
    "ln-outliers-reg4": StressModel("vits14_reg4", 2, (("ln_outliers", {}),)),
    "registers": StressModel("vits14_reg4", 3, (("high_norm_registers", {}),)),
    "massive": StressModel("vits14", 4, (("massive_activations", {}),)),
    "heavy-tailed": StressModel("vits14", 5, (("heavy_tailed_weights", {}),)),
    "sharp-attention": StressModel("vits14", 6, (("sharp_attention", {}),)),
    "vitb-outliers-massive": StressModel("vitb14", 7, (("ln_outliers", {}), ("massive_activations", {}))),
    "dinov3-s16-outliers-massive": StressModel("vits16", 8, (("ln_outliers", {}), ("massive_activations", {})),
                                               notes="DINOv3 ViT-S/16 (RoPE, storage tokens)"),
}

HELD_OUT: dict[str, StressModel] = {
    "held-out-a": StressModel("vits14_reg4", 101, (("heavy_tailed_weights", {"nu": 3.0, "row_gain": 4.0}),
                                                   ("ln_outliers", {"channels": 6, "gain": 15.0}),
                                                   ("high_norm_registers", {"lift": 15.0}))),
    "held-out-b": StressModel("vits14", 102, (("sharp_attention", {"heads": 3, "gain": 2.5}),
                                              ("massive_activations", {"blocks": (2, -3), "magnitude": 150.0}),
                                              ("ln_outliers", {"channels": 2, "gain": 35.0}))),
}


def stress_model(name: str) -> StressModel:
    from ..errors import SpatialqError

    known = {**ZOO, **HELD_OUT}
    if name not in known:
        raise SpatialqError(f"unknown stress model {name!r}: choose from {', '.join(known)}")
    return known[name]
