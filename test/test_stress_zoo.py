"""The stress-model zoo: each regime has the property its docstring claims, on every DINOv2 and DINOv3 size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialq_ros.backbone.archs import ARCHS
from spatialq_ros.backbone.checkpoint import to_torch_state
from spatialq_ros.backbone.preprocess import preprocess
from spatialq_ros.backbone.stress import HELD_OUT, REGIMES, ZOO, StressModel, stress_model
from spatialq_ros.backbone.vit import DinoVisionTransformer
from spatialq_ros.errors import SpatialqError
from spatialq_ros.sim.render import render_flight


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.set_num_threads(1)
    _, frames = render_flight(2, (224, 224))
    return torch.from_numpy(np.concatenate([preprocess(rgb) for rgb, _ in frames]))


def model_of(member: StressModel) -> DinoVisionTransformer:
    model = DinoVisionTransformer(member.config())
    model.load_state_dict(to_torch_state(member.state_dict()))
    return model.eval()


@torch.no_grad()
def residuals(model: DinoVisionTransformer, x: torch.Tensor) -> list[torch.Tensor]:
    """The residual stream after every block."""
    tokens, out, rope = model.prepare_tokens(x), [], model.rope_tables(*model.grid(x))
    for block in model.blocks:
        tokens, _ = block(tokens, rope)
        out.append(tokens)
    return out


@torch.no_grad()
def head_entropies(model: DinoVisionTransformer, x: torch.Tensor) -> list[torch.Tensor]:
    """Per block, each head's mean attention entropy as a fraction of log(tokens)."""
    config, tokens, out = model.config, model.prepare_tokens(x), []
    for block in model.blocks:
        qkv = block.attn.qkv(block.norm1(tokens)).reshape(*tokens.shape[:2], 3, config.num_heads, -1)
        q, k = qkv.permute(2, 0, 3, 1, 4)[:2]
        p = (q @ k.transpose(-1, -2) * q.shape[-1] ** -0.5).softmax(-1)
        out.append(-(p * p.clamp_min(1e-12).log()).sum(-1).mean(dim=(0, 2)) / np.log(tokens.shape[1]))
        tokens, _ = block(tokens)
    return out


def test_members_are_deterministic_and_seeded():
    member = ZOO["massive"]
    a, b = member.state_dict(), member.state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    other = StressModel(member.arch, member.seed + 1, member.regimes).state_dict()
    assert not np.array_equal(a["blocks.0.attn.qkv.weight"], other["blocks.0.attn.qkv.weight"])
    assert set(ZOO).isdisjoint(HELD_OUT) and all(m not in ZOO.values() for m in HELD_OUT.values())
    with pytest.raises(SpatialqError, match="unknown stress model 'nope'"):
        stress_model("nope")


@pytest.mark.parametrize("arch", ["vits14", "vitb14", "vitl14", "vitg14_reg4", "vits16", "vits16plus", "vitl16"])
def test_every_regime_builds_on_every_size(arch, images):
    """Every regime on every DINOv2 and DINOv3 size (ViT-g and ViT-S+ have SwiGLU FFNs), at a reduced depth."""
    regimes = tuple((name, {"blocks": (1, -1)} if name == "massive_activations" else
                     {"block": -1} if name == "high_norm_registers" else {})
                    for name in REGIMES if name != "high_norm_registers" or ARCHS[arch].num_register_tokens)
    member = StressModel(arch, 0, regimes, depth=3)
    model = model_of(member)
    with torch.no_grad():
        out = model.forward_features(images[:1, :, :112, :112])
    assert torch.isfinite(out["x_norm_patchtokens"]).all()


def test_ln_outliers_are_read_at_full_weight():
    member, plain = ZOO["ln-outliers"], StressModel("vits14", ZOO["ln-outliers"].seed)
    sd, base = member.state_dict(), plain.state_dict()
    for norm in ("blocks.0.norm1", "blocks.5.norm2", "norm"):
        ratio = sd[norm + ".weight"] / base[norm + ".weight"]
        assert np.sum(np.isclose(ratio, 25.0)) == 4 and np.sum(np.isclose(ratio, 1.0)) == 384 - 4
    channels = np.flatnonzero(np.isclose(sd["norm.weight"] / base["norm.weight"], 25.0))
    columns = np.linalg.norm(sd["blocks.3.attn.qkv.weight"], axis=0)
    assert np.all(columns[channels] > 0.8 * np.median(columns))  # not shrunk to make them easy


def test_massive_activations_early_and_late(images):
    member = ZOO["massive"]
    stream = residuals(model_of(member), images)

    def massive_fraction(x: torch.Tensor) -> tuple[float, float]:
        a = x.abs()
        median = float(a.median())
        return float(a.amax() / median), float((a.amax(-1) > 100 * median).float().mean())

    before, _ = massive_fraction(stream[0])
    early, early_fraction = massive_fraction(stream[1])
    _, late_fraction = massive_fraction(stream[-2])
    assert before < 50 and 100 <= early <= 3000
    assert 0.005 <= early_fraction <= 0.05 and late_fraction > early_fraction  # the late block adds its own


def test_registers_carry_high_norms_from_their_block(images):
    member = ZOO["registers"]
    model = model_of(member)
    r = model.config.num_register_tokens
    ratios = [float(x[:, 1 : 1 + r].norm(dim=-1).median() / x[:, 1 + r :].norm(dim=-1).median())
              for x in residuals(model, images)]
    block = 12 - 6
    assert max(ratios[:block]) < 2 and min(ratios[block:]) >= 10


def test_heavy_tailed_weights_have_tails_and_outlier_rows():
    sd = ZOO["heavy-tailed"].state_dict()
    w = sd["blocks.4.mlp.fc1.weight"]
    standard = (w - w.mean()) / w.std()
    assert np.mean(standard**4) > 6  # Gaussian: 3
    rows = np.linalg.norm(w, axis=1)
    assert np.sum(rows > 4 * np.median(rows)) >= 1


def test_sharp_heads_have_low_entropy(images):
    entropies = head_entropies(model_of(ZOO["sharp-attention"]), images)
    plain = head_entropies(model_of(StressModel("vits14", ZOO["sharp-attention"].seed)), images)
    assert all(float(e.min()) < 0.4 for e in entropies)
    assert all(float(e.min()) > 0.6 for e in plain)
    assert all(float(e.median()) > 0.8 for e in entropies)  # only some heads are sharp


def test_vitb_member_has_both_regimes(images):
    member = ZOO["vitb-outliers-massive"]
    assert member.config().embed_dim == 768
    stream = residuals(model_of(member), images)
    a = stream[1].abs()
    assert float(a.amax() / a.median()) >= 100
    sd = member.state_dict()
    gains = sd["norm.weight"] / np.median(np.abs(sd["norm.weight"]))
    assert np.sum(np.abs(gains) > 10) == 4


def test_dinov3_member_has_both_regimes_in_its_storage_tokens(images):
    """No position table: the massive activations sit in storage tokens, from their blocks on."""
    member = ZOO["dinov3-s16-outliers-massive"]
    assert member.config().pos_encoding == "rope" and member.config().patch_size == 16
    stream = residuals(model_of(member), images)
    r = member.config().num_register_tokens
    # blocks (1, -2) of 12 mark storage tokens 0 and 1; the late write is smaller against a grown stream
    for block, token, least in ((1, 0, 100), (10, 1, 20)):
        before, after = stream[block - 1].abs(), stream[block].abs()
        assert float(before[:, 1 + token].amax() / before.median()) < 15
        assert float(after[:, 1 + token].amax() / after.median()) >= least
        assert float(after[:, 1 + r :].amax() / after.median()) < 15  # the patch tokens stay ordinary
    sd = member.state_dict()
    gains = sd["norm.weight"] / np.median(np.abs(sd["norm.weight"]))
    assert np.sum(np.abs(gains) > 10) == 4
