"""Checkpoint loading: both real key layouts, and one clear error for every kind of bad file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from checkpoint_helpers import assert_one_line_errors, to_huggingface, write_huggingface_folder, write_official_pth
from safetensors.numpy import save_file

from spatialq_ros.backbone.checkpoint import default_backbone, load_backbone
from spatialq_ros.backbone.synthetic import synthetic_state_dict

DEPTH = 2  # enough to catch a block mix-up, fast to load


@pytest.fixture(scope="module")
def state():
    return synthetic_state_dict("vits14_reg4", seed=3, depth=DEPTH)


def features(model, h=42, w=56):
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32))
    with torch.no_grad():
        return model.forward_features(x)


def test_official_and_huggingface_layouts_give_the_same_outputs(tmp_path, state):
    official, info_o = load_backbone(write_official_pth(tmp_path / "w.pth", state))
    folder, info_f = load_backbone(write_huggingface_folder(tmp_path / "hf", state, "vits14_reg4"))
    bare, info_b = load_backbone(tmp_path / "hf" / "model.safetensors")
    assert (info_o.layout, info_f.layout, info_b.layout) == ("official", "huggingface", "huggingface")
    assert info_o.arch == info_f.arch == "vits14_reg4-d2"
    assert info_o.num_register_tokens == 4 and info_o.trained
    ref = features(official)
    for model in (folder, bare):
        out = features(model)
        for key in ("x_norm_clstoken", "x_norm_regtokens", "x_norm_patchtokens"):
            assert torch.equal(out[key], ref[key])


def test_huggingface_prefixed_task_checkpoint_loads(tmp_path, state):
    hf = {f"dinov2.{k}": v for k, v in to_huggingface(state).items()}
    hf["classifier.weight"] = np.zeros((10, 768), np.float32)
    save_file(hf, str(tmp_path / "task.safetensors"))
    model, info = load_backbone(tmp_path / "task.safetensors")
    assert info.layout == "huggingface" and info.arch == "vits14_reg4-d2"


def test_layout_detection_reads_size_from_tensors(tmp_path):
    state = synthetic_state_dict("vitb14", seed=1, depth=1)
    _, info = load_backbone(write_official_pth(tmp_path / "b.pth", state))
    assert (info.config.embed_dim, info.config.num_heads, info.config.depth) == (768, 12, 1)
    assert info.config.interpolate_offset == 0.1 and not info.config.interpolate_antialias


def test_default_is_untrained_without_real_weights(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))
    import spatialq_ros.backbone.checkpoint as ckpt

    monkeypatch.setattr(ckpt, "find_default_checkpoint", lambda: None)
    model, info = default_backbone()
    assert not info.trained and info.layout == "synthetic" and info.arch == "vits14"


def test_default_prefers_real_checkpoint_in_models_dir(monkeypatch, tmp_path, state):
    write_official_pth(tmp_path / "dinov2_vits14_pretrain.pth", state)
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))
    _, info = default_backbone()
    assert info.trained and info.path.endswith("dinov2_vits14_pretrain.pth")


def bad_files(tmp_path, state):
    good = write_official_pth(tmp_path / "good.pth", state)
    data = good.read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pth").write_bytes(b"\x00not a checkpoint" * 100)
    (tmp_path / "empty.pth").write_bytes(b"")
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(1000, 512)},
               tmp_path / "resnet.pth")
    wrong = dict(state)
    wrong["blocks.1.attn.qkv.weight"] = np.zeros((10, 384), np.float32)
    write_official_pth(tmp_path / "wrong_shape.pth", wrong)
    missing = {k: v for k, v in state.items() if k != "blocks.1.norm2.bias"}
    write_official_pth(tmp_path / "missing.pth", missing)
    extra = {**state, "head.weight": np.zeros((3, 3), np.float32)}
    write_official_pth(tmp_path / "extra.pth", extra)
    (tmp_path / "corrupt.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}")
    (tmp_path / "empty_folder").mkdir()
    torch.save([1, 2, 3], tmp_path / "list.pth")
    return {
        "truncated.pth": "truncated or corrupt",
        "garbage.pth": "truncated or corrupt",
        "empty.pth": "empty file",
        "resnet.pth": "not a DINOv2/DINOv3 checkpoint",
        "wrong_shape.pth": "blocks.1.attn.qkv.weight has shape",
        "missing.pth": "missing tensor blocks.1.norm2.bias",
        "extra.pth": "unexpected tensor head.weight",
        "corrupt.safetensors": "truncated or corrupt",
        "empty_folder": "folder has no",
        "list.pth": "not a state dict",
        "does_not_exist.pth": "no such checkpoint",
    }


def test_every_bad_checkpoint_is_one_line_naming_file_and_problem(tmp_path, state):
    assert_one_line_errors(tmp_path, bad_files(tmp_path, state))


def test_cli_reports_bad_checkpoint_with_exit_2_and_no_output(tmp_path, state, capsys):
    from spatialq_ros.cli import main

    (tmp_path / "truncated.pth").write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    from spatialq_ros.viz.pictures import write_png

    write_png(tmp_path / "img.png", np.zeros((28, 28, 3), np.uint8))
    code = main(["features", "--model", str(tmp_path / "truncated.pth"), "--image", str(tmp_path / "img.png"),
                 "--out", str(tmp_path / "f.npz")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "truncated.pth" in err[0] and "Traceback" not in err[0]
    assert not (tmp_path / "f.npz").exists()
