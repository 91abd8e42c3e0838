"""Our DINOv2 reproduces the official forward_features (fixtures computed once from the official code)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spatialq_ros.backbone.archs import ARCHS, ViTConfig
from spatialq_ros.backbone.checkpoint import to_torch_state
from spatialq_ros.backbone.synthetic import synthetic_state_dict
from spatialq_ros.backbone.vit import DinoVisionTransformer

FIXTURES = Path(__file__).parent / "fixtures" / "backbone"
ARCH_NAMES = ["vits14", "vits14_reg4", "vitb14", "vitb14_reg4", "vitl14", "vitl14_reg4", "vitg14", "vitg14_reg4"]
TOLERANCE = 1e-4  # max abs error relative to the output scale


def model_for(arch: str, seed: int, depth: int | None) -> DinoVisionTransformer:
    config = ARCHS[arch] if depth is None else ViTConfig(**{**ARCHS[arch].__dict__, "depth": depth})
    model = DinoVisionTransformer(config)
    model.load_state_dict(to_torch_state(synthetic_state_dict(arch, seed=seed, depth=depth)))
    return model.eval()


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_forward_features_matches_official(arch):
    torch.set_num_threads(1)
    fixture = np.load(FIXTURES / f"{arch}.npz")
    depth = int(fixture["depth"])
    model = model_for(arch, int(fixture["seed"]), None if depth < 0 else depth)
    sizes = sorted({k.split("/")[0] for k in fixture.files if "/" in k})
    for tag in sizes:
        h, w = (int(v) for v in tag.split("x"))
        stored = fixture[f"{tag}/input"]
        x = stored if stored.ndim else np.random.default_rng(int(stored)).standard_normal((1, 3, h, w))
        with torch.no_grad():
            out = model.forward_features(torch.from_numpy(x.astype(np.float32)))
        kept = fixture[f"{tag}/x_norm_patchtokens"].shape[1]
        for key in ("x_norm_clstoken", "x_norm_regtokens", "x_norm_patchtokens"):
            ours = out[key].numpy()[:, :kept] if key == "x_norm_patchtokens" else out[key].numpy()
            ref = fixture[f"{tag}/{key}"]
            assert ours.shape == ref.shape, (tag, key)
            if ref.size:
                assert relative_error(ours, ref) <= TOLERANCE, (arch, tag, key, relative_error(ours, ref))


def test_parity_check_would_catch_a_wrong_interpolation():
    """The fixtures are sensitive: using the register models' interpolation on ViT-S breaks parity."""
    fixture = np.load(FIXTURES / "vits14.npz")
    model = model_for("vits14", int(fixture["seed"]), None)
    model.config = ARCHS["vits14_reg4"]  # antialiased, no offset
    with torch.no_grad():
        out = model.forward_features(torch.from_numpy(fixture["70x56/input"]))
    ours = out["x_norm_patchtokens"].numpy()[:, :16]
    assert relative_error(ours, fixture["70x56/x_norm_patchtokens"]) > 10 * TOLERANCE
