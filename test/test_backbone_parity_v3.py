"""Our DINOv3 (the one ViT, configured with RoPE, storage tokens, masked k bias, patch 16) reproduces the
official forward_features (fixtures computed once from facebookresearch/dinov3, see fixtures/backbone_v3)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from spatialq_ros.backbone.archs import ARCHS, ViTConfig
from spatialq_ros.backbone.checkpoint import to_torch_state
from spatialq_ros.backbone.layers.rope import rope_periods
from spatialq_ros.backbone.synthetic import synthetic_state_dict
from spatialq_ros.backbone.vit import DinoVisionTransformer

FIXTURES = Path(__file__).parent / "fixtures" / "backbone_v3"
ARCH_NAMES = ["vits16", "vits16plus", "vitb16", "vitl16"]
TOLERANCE = 1e-4  # max abs error relative to the output scale
KEYS = ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens")


def config_for(arch: str, depth: int | None) -> ViTConfig:
    return ARCHS[arch] if depth is None else replace(ARCHS[arch], depth=depth)


def load_fixture(arch: str):
    fixture = np.load(FIXTURES / f"{arch}.npz")
    depth = int(fixture["depth"])
    return fixture, int(fixture["seed"]), None if depth < 0 else depth


def model_for(config: ViTConfig, state: dict[str, np.ndarray]) -> DinoVisionTransformer:
    model = DinoVisionTransformer(config)
    model.load_state_dict(to_torch_state(state))
    return model.eval()


def relative_error(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def worst_error(model: DinoVisionTransformer, fixture, tags: list[str] | None = None) -> float:
    worst = 0.0
    for tag in tags or sorted({k.split("/")[0] for k in fixture.files if "/" in k}):
        h, w = (int(v) for v in tag.split("x"))
        x = np.random.default_rng(int(fixture[f"{tag}/input_seed"])).standard_normal((1, 3, h, w))
        with torch.no_grad():
            out = model.forward_features(torch.from_numpy(x.astype(np.float32)))
        kept = fixture[f"{tag}/x_norm_patchtokens"].shape[1]
        for key in KEYS:
            ours = out[key].numpy()[:, :kept] if key == "x_norm_patchtokens" else out[key].numpy()
            ref = fixture[f"{tag}/{key}"]
            assert ours.shape == ref.shape, (tag, key)
            worst = max(worst, relative_error(ours, ref))
    return worst


@pytest.mark.parametrize("arch", ARCH_NAMES)
def test_forward_features_matches_official(arch):
    torch.set_num_threads(1)
    fixture, seed, depth = load_fixture(arch)
    model = model_for(config_for(arch, depth), synthetic_state_dict(arch, seed=seed, depth=depth))
    assert worst_error(model, fixture) <= TOLERANCE


def test_parity_check_would_catch_a_wrong_rope_base():
    """Periods of base 1000 instead of 100 (what the official checkpoints carry) break parity."""
    fixture, seed, depth = load_fixture("vits16")
    state = synthetic_state_dict("vits16", seed=seed)
    state["rope_embed.periods"] = rope_periods(64, 1000.0).numpy()
    assert worst_error(model_for(ARCHS["vits16"], state), fixture, ["80x64"]) > 10 * TOLERANCE


def test_parity_check_would_catch_an_unmasked_key_bias():
    fixture, seed, depth = load_fixture("vits16")
    state = synthetic_state_dict("vits16", seed=seed)
    state = {k: v for k, v in state.items() if not k.endswith("bias_mask")}
    model = model_for(replace(ARCHS["vits16"], mask_k_bias=False), state)
    assert worst_error(model, fixture, ["80x64"]) > 10 * TOLERANCE


def test_parity_check_would_catch_rotated_prefix_tokens(monkeypatch):
    """Rotating CLS and storage tokens too (treating them as patches at the grid's first positions) breaks it."""
    import spatialq_ros.backbone.layers.attention as attention

    fixture, seed, _ = load_fixture("vits16")
    model = model_for(ARCHS["vits16"], synthetic_state_dict("vits16", seed=seed))

    def rotate_all(x, sin, cos):
        n = x.shape[-2]
        reps = -(-n // sin.shape[0])
        return attention.apply_rope(x, sin.repeat(reps, 1)[:n], cos.repeat(reps, 1)[:n])

    monkeypatch.setattr(attention, "_rotate_patches", rotate_all)
    assert worst_error(model, fixture, ["80x64"]) > 10 * TOLERANCE


def test_rope_model_refuses_a_block_call_without_tables():
    model = DinoVisionTransformer(replace(ARCHS["vits16"], depth=1))
    with pytest.raises(ValueError, match="RoPE"):
        model.blocks[0](torch.zeros(1, 5 + 4, 384))


def test_extract_gives_the_forward_features_and_pre_rope_facets():
    """extract() is the same forward; its query/key facets are the qkv Linear's output (before RoPE, with the
    masked, zero key bias) and the value facet is the value as AnyLoc reads it."""
    model = model_for(replace(ARCHS["vits16"], depth=3), synthetic_state_dict("vits16", seed=4, depth=3))
    x = torch.from_numpy(np.random.default_rng(5).standard_normal((1, 3, 48, 64)).astype(np.float32))
    with torch.no_grad():
        ref = model.forward_features(x)
        tokens = model.prepare_tokens(x)
        rope = model.rope_tables(3, 4)
        tokens, _ = model.blocks[0](tokens, rope)
        linear = model.blocks[1].attn.qkv(model.blocks[1].norm1(tokens))[:, 5:].reshape(1, 3, 4, 3, 384)
        for i, facet in enumerate(("query", "key", "value")):
            out = model.extract(x, layers=(1,), facet_layer=1, facet=facet)
            assert torch.equal(out.facet, linear[..., i, :]), facet
        assert torch.equal(out.patch_tokens.reshape(1, 12, 384), ref["x_norm_patchtokens"])
        assert torch.equal(out.register_tokens, ref["x_storage_tokens"]) and 1 in out.intermediate
        weight_k = model.blocks[1].attn.qkv.weight[384:768]
        assert torch.allclose(linear[..., 1, :], model.blocks[1].norm1(tokens)[:, 5:].reshape(1, 3, 4, 384) @ weight_k.T,
                              atol=1e-4)


def test_rope_tables_for_an_exported_grid():
    """The fixed tables an ONNX graph embeds: (h*w, head_dim), row-major, both halves of a pair alike; the
    first quarter of the angles follows the row, the second the column."""
    model = DinoVisionTransformer(replace(ARCHS["vits16"], depth=1))
    sin, cos = model.rope_tables(2, 3)
    assert sin.shape == cos.shape == (6, 64) and sin.dtype == torch.float32
    assert torch.allclose(sin**2 + cos**2, torch.ones(6, 64))
    assert torch.equal(sin[:, :32], sin[:, 32:])
    assert torch.equal(sin[0, :16], sin[2, :16]) and not torch.equal(sin[0, :16], sin[3, :16])  # same row
    assert torch.equal(sin[0, 16:32], sin[3, 16:32]) and not torch.equal(sin[0, 16:32], sin[1, 16:32])  # same column
    assert DinoVisionTransformer(replace(ARCHS["vits14"], depth=1)).rope_tables(2, 3) is None
