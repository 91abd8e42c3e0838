"""Seeded DINOv2 and DINOv3 weights with trained-like statistics, for tests and for the UNTRAINED default.

Init-style weights (LayerScale 1e-5) turn every block into the identity and hide errors; random weights
also lack what makes trained ViTs hard to quantize. These have LayerScale 0.1-1, a few post-LayerNorm
outlier channels (LayerNorm gain 10-60x) and ~2 % high-norm tokens: a late-block MLP unit fires only at
a fixed set of tokens, and writes a large vector into them. DINOv2: positions that the position embedding
marks; DINOv3 (no position table): its 4 storage tokens, where trained register models keep such norms.
Generated with numpy's PCG64 so the same seed gives the same tensors on every machine. The layout is the
official one of each family (DINOv3: `storage_tokens`, `rope_embed.periods`, `attn.qkv.bias_mask`, SwiGLU
`w1`/`w2`/`w3`).
"""

from __future__ import annotations

import numpy as np

from .archs import ARCHS, ViTConfig
from .layers.rope import rope_periods
from .layers.swiglu_ffn import swiglu_hidden

OUTLIER_CHANNELS = 3
HIGH_NORM_FRACTION = 0.02


def synthetic_state_dict(
    arch: str | ViTConfig = "vits14", seed: int = 0, outliers: bool = True, depth: int | None = None
) -> dict[str, np.ndarray]:
    """Official-layout state dict (float32 numpy arrays)."""
    config = ARCHS[arch] if isinstance(arch, str) else arch
    if depth is not None:
        config = ViTConfig(**{**config.__dict__, "depth": depth})
    rng = np.random.default_rng(seed)
    c, p = config.embed_dim, config.patch_size
    m = config.pos_grid

    def normal(*shape: int, std: float) -> np.ndarray:
        return (rng.standard_normal(shape) * std).astype(np.float32)

    sd: dict[str, np.ndarray] = {"cls_token": normal(1, 1, c, std=0.5)}
    if config.pos_encoding == "learned":
        sd["pos_embed"] = _smooth_pos_embed(rng, m, c)
    sd["mask_token"] = np.zeros((1, c), np.float32)
    sd["patch_embed.proj.weight"] = normal(c, 3, p, p, std=2.0 / np.sqrt(3 * p * p))
    sd["patch_embed.proj.bias"] = normal(c, std=0.1)
    if config.num_register_tokens:
        sd["register_tokens"] = normal(1, config.num_register_tokens, c, std=0.5)
    outlier_channels = rng.choice(c, OUTLIER_CHANNELS, replace=False) if outliers else np.array([], int)
    for i in range(config.depth):
        pre = f"blocks.{i}."
        boosts = {}
        for norm in ("norm1", "norm2"):
            gain = 1.0 + normal(c, std=0.2)
            boosts[norm] = rng.uniform(10, 60, len(outlier_channels)).astype(np.float32)
            gain[outlier_channels] *= boosts[norm]
            sd[pre + norm + ".weight"] = gain
            sd[pre + norm + ".bias"] = normal(c, std=0.05)
        sd[pre + "attn.qkv.weight"] = normal(3 * c, c, std=1.0 / np.sqrt(c))
        sd[pre + "attn.qkv.bias"] = normal(3 * c, std=0.05)
        sd[pre + "attn.proj.weight"] = normal(c, c, std=1.0 / np.sqrt(c))
        sd[pre + "attn.proj.bias"] = normal(c, std=0.05)
        if config.ffn == "swiglu":
            hidden = swiglu_hidden(c, config.mlp_ratio)
            sd[pre + "mlp.w12.weight"] = normal(2 * hidden, c, std=1.0 / np.sqrt(c))
            sd[pre + "mlp.w12.bias"] = normal(2 * hidden, std=0.05)
            sd[pre + "mlp.w3.weight"] = normal(c, hidden, std=1.0 / np.sqrt(hidden))
            sd[pre + "mlp.w3.bias"] = normal(c, std=0.05)
        else:
            hidden = int(c * config.mlp_ratio)
            sd[pre + "mlp.fc1.weight"] = normal(hidden, c, std=1.0 / np.sqrt(c))
            sd[pre + "mlp.fc1.bias"] = normal(hidden, std=0.05)
            sd[pre + "mlp.fc2.weight"] = normal(c, hidden, std=1.0 / np.sqrt(hidden))
            sd[pre + "mlp.fc2.bias"] = normal(c, std=0.05)
        # Trained networks read their outlier channels with small weights: the function stays tame,
        # only the activations are hard to quantize.
        first_ffn = pre + ("mlp.w12.weight" if config.ffn == "swiglu" else "mlp.fc1.weight")
        sd[pre + "attn.qkv.weight"][:, outlier_channels] /= boosts["norm1"]
        sd[first_ffn][:, outlier_channels] /= boosts["norm2"]
        sd[pre + "ls1.gamma"] = rng.uniform(0.1, 1.0, c).astype(np.float32)
        sd[pre + "ls2.gamma"] = rng.uniform(0.1, 1.0, c).astype(np.float32)
    sd["norm.weight"] = 1.0 + normal(c, std=0.1)
    sd["norm.bias"] = normal(c, std=0.05)
    if outliers:
        _add_high_norm_tokens(sd, rng, config)
    return _dinov3_layout(sd, config) if config.family == "dinov3" else sd


def _dinov3_layout(sd: dict[str, np.ndarray], config: ViTConfig) -> dict[str, np.ndarray]:
    """Our names -> the official DINOv3 names, plus its buffers: the RoPE periods and the k-bias mask."""
    out: dict[str, np.ndarray] = {}
    for key, value in sd.items():
        if key == "register_tokens":
            out["storage_tokens"] = value
        elif ".mlp.w12." in key:
            gate, up = np.split(value, 2)
            out[key.replace(".w12.", ".w1.")] = np.ascontiguousarray(gate)
            out[key.replace(".w12.", ".w2.")] = np.ascontiguousarray(up)
        else:
            out[key] = value
        if key.endswith(".attn.qkv.bias"):
            mask = np.ones_like(value)
            mask[config.embed_dim : 2 * config.embed_dim] = 0.0
            out[key + "_mask"] = mask
    out["rope_embed.periods"] = rope_periods(config.embed_dim // config.num_heads, config.rope_base).numpy()
    return out


def _smooth_pos_embed(rng: np.random.Generator, m: int, c: int) -> np.ndarray:
    """Low-frequency sinusoids plus a little noise: interpolation errors show up like on trained tables."""
    ys, xs = np.meshgrid(np.arange(m) / m, np.arange(m) / m, indexing="ij")
    freqs = rng.uniform(0.5, 4.0, (2, c))
    phase = rng.uniform(0, 2 * np.pi, c)
    grid = np.sin(2 * np.pi * (ys[..., None] * freqs[0] + xs[..., None] * freqs[1]) + phase) * 0.3
    grid += rng.standard_normal((m, m, c)) * 0.02
    cls = rng.standard_normal((1, c)) * 0.1
    return np.concatenate([cls, grid.reshape(m * m, c)])[None].astype(np.float32)


def _add_high_norm_tokens(sd: dict[str, np.ndarray], rng: np.random.Generator, config: ViTConfig) -> None:
    """Mark ~2 % of grid positions (DINOv3: the storage tokens) along a direction d; one late MLP unit gated on
    d writes a big vector there."""
    c, m = config.embed_dim, config.pos_grid
    d = rng.standard_normal(c).astype(np.float32)
    d /= np.linalg.norm(d)
    if config.pos_encoding == "learned":
        # 3x3 blobs rather than single cells, so the marks survive resampling to other grids.
        marks = np.zeros((m, m), bool)
        for cy, cx in rng.integers(1, m - 1, (max(1, int(round(HIGH_NORM_FRACTION * m * m / 9))), 2)):
            marks[cy - 1 : cy + 2, cx - 1 : cx + 2] = True
        sd["pos_embed"][0, 1:][marks.ravel()] += 16.0 * d
    else:
        sd["register_tokens"][0] += 16.0 * d
    block = max(0, config.depth // 2 - 1)
    pre = f"blocks.{block}."
    # The unit reads norm2's output: undo its gain so the gate sees the raw direction d. Like the
    # "massive activations" of trained ViTs, the size lives in the hidden activation (a few thousand),
    # not in the weights: the write column is only ~3x a typical column.
    gate = d / sd[pre + "norm2.weight"]
    gate /= np.linalg.norm(gate)
    write = rng.standard_normal(c).astype(np.float32)
    write *= 3.0 * np.sqrt(c / (config.embed_dim * config.mlp_ratio)) / np.linalg.norm(write)
    gain = 2000.0 / np.linalg.norm(write * sd[pre + "ls2.gamma"])  # lifts the token norm by ~2000
    if config.ffn == "swiglu":
        hidden = sd[pre + "mlp.w3.weight"].shape[1]
        sd[pre + "mlp.w12.weight"][0] = 8.0 * gate  # silu branch: the gate
        sd[pre + "mlp.w12.bias"][0] = -14.0
        sd[pre + "mlp.w12.weight"][hidden] = 0.0  # linear branch: a constant
        sd[pre + "mlp.w12.bias"][hidden] = gain / 16.0
        sd[pre + "mlp.w3.weight"][:, 0] = write
    else:
        sd[pre + "mlp.fc1.weight"][0] = gain / 16.0 * 8.0 * gate
        sd[pre + "mlp.fc1.bias"][0] = -gain / 16.0 * 14.0
        sd[pre + "mlp.fc2.weight"][:, 0] = write
