"""What the heads read from one pass: facets, intermediate layers, any grid; and the test weights' outliers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spatialq_ros.backbone.archs import ARCHS, ViTConfig
from spatialq_ros.backbone.checkpoint import to_torch_state
from spatialq_ros.backbone.preprocess import check_size, parse_size, preprocess
from spatialq_ros.backbone.synthetic import synthetic_state_dict
from spatialq_ros.backbone.vit import DinoVisionTransformer
from spatialq_ros.errors import SpatialqError


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    config = ViTConfig(**{**ARCHS["vits14_reg4"].__dict__, "depth": 4})
    m = DinoVisionTransformer(config)
    m.load_state_dict(to_torch_state(synthetic_state_dict(config, seed=5)))
    return m.eval()


def image(h, w, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).standard_normal((1, 3, h, w)).astype(np.float32))


def test_extract_agrees_with_forward_features_on_non_square_grid(model):
    x = image(42, 70)
    with torch.no_grad():
        out = model.extract(x, layers=(1, -1), facet_layer=-2, facet="value")
        ref = model.forward_features(x)
    assert out.patch_tokens.shape == (1, 3, 5, 384)
    assert torch.equal(out.patch_tokens.reshape(1, 15, 384), ref["x_norm_patchtokens"])
    assert torch.equal(out.cls_token, ref["x_norm_clstoken"])
    assert torch.equal(out.register_tokens, ref["x_norm_regtokens"])
    assert sorted(out.intermediate) == [1, 3]
    assert torch.equal(out.intermediate[3], out.patch_tokens)  # last block, final norm = final tokens


def test_facets_are_the_thirds_of_the_qkv_output(model):
    x = image(28, 42)
    with torch.no_grad():
        tokens = model.prepare_tokens(x)
        for block in model.blocks[:3]:
            tokens, qkv = block(tokens)
        block_input = tokens
        _, qkv = model.blocks[3](block_input)
        facets = {f: model.extract(x, facet_layer=3, facet=f).facet for f in ("query", "key", "value", "token")}
    patches = qkv[:, 5:]  # CLS + 4 registers come first
    assert torch.equal(facets["query"].reshape(1, 6, -1), patches[..., :384])
    assert torch.equal(facets["key"].reshape(1, 6, -1), patches[..., 384:768])
    assert torch.equal(facets["value"].reshape(1, 6, -1), patches[..., 768:])
    assert facets["token"].shape == (1, 2, 3, 384)
    assert not torch.equal(facets["value"], facets["key"])


@pytest.mark.parametrize("bad", [(1, 3, 30, 42), (1, 3, 28, 43), (1, 1, 28, 28)])
def test_bad_input_sizes_are_clear_errors(model, bad):
    with pytest.raises(SpatialqError):
        model.extract(torch.zeros(bad))


def test_bad_layer_and_facet(model):
    with pytest.raises(SpatialqError, match="out of range"):
        model.extract(image(28, 28), facet_layer=4)
    with pytest.raises(SpatialqError, match="facet must be"):
        model.extract(image(28, 28), facet_layer=0, facet="values")


def test_synthetic_weights_look_trained_and_have_outliers():
    sd = synthetic_state_dict("vits14", seed=0)
    gammas = np.concatenate([v for k, v in sd.items() if k.endswith("gamma")])
    assert 0.1 <= gammas.min() and gammas.max() <= 1.0
    gain = sd["blocks.3.norm1.weight"]
    assert np.sort(np.abs(gain))[-1] > 10 * np.median(np.abs(gain))
    assert np.array_equal(sd["blocks.0.attn.qkv.weight"], synthetic_state_dict("vits14", seed=0)["blocks.0.attn.qkv.weight"])


def test_synthetic_weights_make_about_two_percent_high_norm_tokens():
    torch.set_num_threads(1)
    m = DinoVisionTransformer(ARCHS["vits14"])
    m.load_state_dict(to_torch_state(synthetic_state_dict("vits14", seed=0)))
    rgb = np.random.default_rng(1).integers(0, 255, (224, 308, 3), dtype=np.uint8)
    with torch.no_grad():
        x = m.extract(torch.from_numpy(preprocess(rgb)), facet_layer=-1, facet="token").facet
    norms = x.reshape(-1, 384).norm(dim=-1)
    fraction = float((norms > 4 * norms.median()).float().mean())
    assert 0.005 <= fraction <= 0.05, fraction
    m_plain = DinoVisionTransformer(ARCHS["vits14"])
    m_plain.load_state_dict(to_torch_state(synthetic_state_dict("vits14", seed=0, outliers=False)))
    with torch.no_grad():
        y = m_plain.extract(torch.from_numpy(preprocess(rgb)), facet_layer=-1, facet="token").facet
    plain = y.reshape(-1, 384).norm(dim=-1)
    assert float((plain > 4 * plain.median()).float().mean()) == 0.0


def test_preprocess_normalises_and_only_resizes_when_asked():
    rgb = np.full((28, 42, 3), 255, np.uint8)
    x = preprocess(rgb)
    assert x.shape == (1, 3, 28, 42) and x.dtype == np.float32
    assert np.allclose(x[0, :, 0, 0], (1 - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225]))
    assert preprocess(rgb, (56, 28)).shape == (1, 3, 28, 56)


@pytest.mark.parametrize("text", ["448", "448x", "0x14", "-14x14", "axb"])
def test_parse_size_rejects(text):
    with pytest.raises(SpatialqError):
        parse_size(text)


def test_parse_size_accepts():
    assert parse_size("448x336") == (448, 336) and parse_size(" 14X28 ") == (14, 28)
    assert parse_size("450x448") == (450, 448)  # the patch is not the parser's business: check_size's


def test_check_size_names_the_patch_and_the_backbone():
    assert check_size((448, 336), 14, "vits14") == (448, 336) and check_size((448, 224), 16, "vits16") == (448, 224)
    with pytest.raises(SpatialqError, match="size 450x448: sides must be multiples of 14, the patch of vits14"):
        check_size((450, 448), 14, "vits14")
    with pytest.raises(SpatialqError, match="size 230x224: sides must be multiples of 16, the patch of vits16"):
        check_size((230, 224), 16, "vits16")
