"""DINOv3 checkpoints: the official .pth and the Hugging Face DINOv3ViTModel layouts, detected from the tensors,
give the same model; bad files are one line naming the file and the problem, as for DINOv2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from checkpoint_helpers import (assert_one_line_errors, to_huggingface_dinov3, write_huggingface_dinov3_folder,
                                write_official_pth)
from safetensors.numpy import save_file

from spatialq_ros.backbone.archs import ARCHS
from spatialq_ros.backbone.checkpoint import load_backbone, synthetic_backbone
from spatialq_ros.backbone.synthetic import synthetic_state_dict

DEPTH = 2
KEYS = ("x_norm_clstoken", "x_storage_tokens", "x_norm_patchtokens")


@pytest.fixture(scope="module")
def state():
    return synthetic_state_dict("vits16", seed=3, depth=DEPTH)


def features(model, h=48, w=64):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32))
    with torch.no_grad():
        return model.forward_features(x)


@pytest.mark.parametrize("arch", ["vits16", "vits16plus"])
def test_official_and_huggingface_layouts_give_the_same_outputs(tmp_path, arch):
    state = synthetic_state_dict(arch, seed=3, depth=DEPTH)
    official, info_o = load_backbone(write_official_pth(tmp_path / "w.pth", state))
    folder, info_f = load_backbone(write_huggingface_dinov3_folder(tmp_path / "hf", state, arch))
    bare, info_b = load_backbone(tmp_path / "hf" / "model.safetensors")
    assert (info_o.layout, info_f.layout, info_b.layout) == ("official", "huggingface", "huggingface")
    assert info_o.arch == info_f.arch == info_b.arch == f"{arch}-d{DEPTH}"
    config = info_o.config
    assert (config.patch_size, config.num_register_tokens, config.pos_encoding, config.mask_k_bias) == (16, 4, "rope", True)
    assert config.rope_base == 100.0 and config.layer_norm_eps == 1e-5 and config.mlp_ratio == ARCHS[arch].mlp_ratio
    assert info_f.config == info_b.config == config
    ref = features(official)
    for model in (folder, bare):
        out = features(model)
        for key in KEYS:
            assert torch.equal(out[key], ref[key]), key


def test_loaded_official_file_is_the_seeded_model_and_masks_the_key_bias(tmp_path, state):
    model, _ = load_backbone(write_official_pth(tmp_path / "w.pth", state))
    c = 384
    bias = model.blocks[0].attn.qkv.bias.detach().numpy()
    assert np.all(bias[c : 2 * c] == 0) and np.array_equal(bias[:c], state["blocks.0.attn.qkv.bias"][:c])
    assert np.abs(state["blocks.0.attn.qkv.bias"][c : 2 * c]).max() > 0  # the file's own k bias is not zero
    assert np.array_equal(model.register_tokens.detach().numpy(), state["storage_tokens"])


def test_size_and_ffn_are_read_from_the_tensors(tmp_path):
    for arch, dim, heads in (("vitb16", 768, 12), ("vits16plus", 384, 6)):
        _, info = load_backbone(write_official_pth(tmp_path / f"{arch}.pth", synthetic_state_dict(arch, depth=1)))
        assert (info.config.embed_dim, info.config.num_heads, info.config.ffn) == (dim, heads, ARCHS[arch].ffn)
        assert info.arch == f"{arch}-d1"


def test_satellite_large_local_cls_norm_is_accepted_and_unused(tmp_path, state):
    """ViT-L SAT-493M carries a training-only `local_cls_norm`; the official eval never uses it."""
    extra = {**state, "local_cls_norm.weight": np.ones(384, np.float32), "local_cls_norm.bias": np.zeros(384, np.float32)}
    model, _ = load_backbone(write_official_pth(tmp_path / "sat.pth", extra))
    ref, _ = load_backbone(write_official_pth(tmp_path / "w.pth", state))
    assert torch.equal(features(model)["x_norm_clstoken"], features(ref)["x_norm_clstoken"])


def test_synthetic_dinov3_backbone_is_untrained(state):
    model, info = synthetic_backbone("vits16")
    assert not info.trained and info.arch == "vits16" and info.layout == "synthetic"
    assert model.patch_size == model.config.patch_size == 16


def bad_files(tmp_path, state):
    good = write_official_pth(tmp_path / "good.pth", state)
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    wrong = dict(state)
    wrong["blocks.1.attn.qkv.weight"] = np.zeros((10, 384), np.float32)
    write_official_pth(tmp_path / "wrong_shape.pth", wrong)
    write_official_pth(tmp_path / "missing.pth", {k: v for k, v in state.items() if k != "blocks.1.ls2.gamma"})
    write_official_pth(tmp_path / "periods.pth", {**state, "rope_embed.periods": np.ones(7, np.float32)})
    write_official_pth(tmp_path / "extra.pth", {**state, "cls_norm.weight": np.ones(384, np.float32)})
    hf = to_huggingface_dinov3(state)
    save_file(hf, str(tmp_path / "hf.safetensors"))
    raw = (tmp_path / "hf.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(raw[: len(raw) - 1000])
    del hf["layer.0.attention.v_proj.weight"]
    save_file(hf, str(tmp_path / "hf_missing.safetensors"))
    (tmp_path / "badconfig").mkdir()
    save_file(to_huggingface_dinov3(state), str(tmp_path / "badconfig" / "model.safetensors"))
    (tmp_path / "badconfig" / "config.json").write_text("{not json")
    return {
        "truncated.pth": "truncated or corrupt",
        "wrong_shape.pth": "blocks.1.attn.qkv.weight has shape",
        "missing.pth": "missing tensor blocks.1.ls2.gamma",
        "periods.pth": "rope_embed.periods has shape",
        "extra.pth": "unexpected tensor cls_norm.weight",
        "cut.safetensors": "truncated or corrupt",
        "hf_missing.safetensors": "missing tensor blocks.0.attn.qkv.weight",
        "badconfig": "unreadable config.json",
    }


def test_every_bad_dinov3_checkpoint_is_one_line_naming_file_and_problem(tmp_path, state):
    assert_one_line_errors(tmp_path, bad_files(tmp_path, state))


def test_features_cli_loads_an_official_dinov3_file(tmp_path, state, capsys):
    from spatialq_ros.cli import main
    from spatialq_ros.viz.pictures import write_png

    write_png(tmp_path / "img.png", np.random.default_rng(1).integers(0, 255, (112, 112, 3), dtype=np.uint8))
    pth = write_official_pth(tmp_path / "dinov3_vits16_pretrain_lvd1689m-08c60483.pth", state)
    code = main(["features", "--model", str(pth), "--image", str(tmp_path / "img.png"), "--out", str(tmp_path / "f.npz"),
                 "--layer", "-1", "--facet", "value"])
    assert code == 0, capsys.readouterr().err
    saved = np.load(tmp_path / "f.npz")
    meta = json.loads(str(saved["meta"]))
    assert meta["arch"] == "vits16-d2" and meta["trained"]
    assert saved["patch_tokens"].shape == (7, 7, 384) and saved["facet"].shape == (7, 7, 384)
