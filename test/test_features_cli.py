"""`spatialq features`: what it writes, that it equals the backbone's own output, and its errors."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch

from spatialq_ros.backbone.checkpoint import synthetic_backbone
from spatialq_ros.backbone.preprocess import preprocess
from spatialq_ros.cli import main
from spatialq_ros.imageio import read_rgb


@pytest.fixture(scope="module", autouse=True)
def no_real_weights(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("SPATIALQ_MODELS_DIR", str(tmp_path_factory.mktemp("empty_models")))
    mp.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    mp.undo()


@pytest.fixture
def image(tmp_path):
    rgb = np.zeros((56, 84, 3), np.uint8)
    rgb[:, :42] = (40, 160, 40)
    rgb[:, 42:] = (190, 170, 90)
    rgb[::4] //= 2  # crop rows
    path = tmp_path / "frame.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


def test_features_match_the_backbone_and_are_marked_untrained(tmp_path, image, capsys):
    torch.set_num_threads(1)
    out = tmp_path / "f.npz"
    png = tmp_path / "f.png"
    assert main(["features", "--image", str(image), "--out", str(out), "--layer", "-2", "--facet", "value",
                 "--pca-png", str(png)]) == 0
    captured = capsys.readouterr()
    assert "UNTRAINED" in captured.err and "UNTRAINED" in captured.out
    data = np.load(out)
    meta = json.loads(str(data["meta"]))
    assert meta["trained"] is False and meta["size"] == [84, 56]
    assert data["patch_tokens"].shape == (4, 6, 384) and data["cls_token"].shape == (384,)
    model, _ = synthetic_backbone()
    with torch.no_grad():
        ref = model.extract(torch.from_numpy(preprocess(read_rgb(image))), facet_layer=-2, facet="value")
    assert np.allclose(data["patch_tokens"], ref.patch_tokens[0].numpy(), atol=1e-5)
    assert np.allclose(data["facet"], ref.facet[0].numpy(), atol=1e-5)
    picture = read_rgb(png)
    assert picture.shape[0] == 56 and picture.shape[1] > 2 * 84
    assert (picture[:3, :, 0] > 150).mean() > 0.5  # the red UNTRAINED band


def test_size_flag_resizes_and_off_grid_images_are_rounded(tmp_path, image, capsys):
    out = tmp_path / "f.npz"
    assert main(["features", "--image", str(image), "--out", str(out), "--size", "28x42"]) == 0
    assert np.load(out)["patch_tokens"].shape == (3, 2, 384)
    odd = tmp_path / "odd.png"
    cv2.imwrite(str(odd), np.zeros((50, 90, 3), np.uint8))
    assert main(["features", "--image", str(odd), "--out", str(out)]) == 0
    assert np.load(out)["patch_tokens"].shape == (4, 6, 384)
    assert "resizing 90x50 -> 84x56" in capsys.readouterr().err


@pytest.mark.parametrize("extra, message", [
    (["--size", "30x30"], "multiples of 14"),
    (["--layer", "12"], "out of range"),
    (["--model", "nothing.pth"], "no such checkpoint"),
])
def test_bad_flags_are_one_line_and_write_nothing(tmp_path, image, capsys, extra, message):
    out = tmp_path / "f.npz"
    assert main(["features", "--image", str(image), "--out", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and not out.exists()


def test_unreadable_image(tmp_path, capsys):
    bad = tmp_path / "x.jpg"
    bad.write_bytes(b"\xff\xd8 not really")
    assert main(["features", "--image", str(bad), "--out", str(tmp_path / "f.npz")]) == 2
    assert "x.jpg: not a readable image" in capsys.readouterr().err


def test_demo_writes_report_and_pictures_marked_untrained(tmp_path, capsys):
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--frames", "16", "--size", "112x84", "--pictures", "2",
            "--calibration-frames", "4"]
    assert main(args) == 0
    report = (out / "report.md").read_text()
    assert "UNTRAINED" in report and "features.png" in report and "eval/report.md" in report
    assert (out / "w4a8" / "model_int4.onnx").exists() and (out / "map.npz").exists()
    assert "Recall@1" in (out / "eval" / "report.md").read_text()
    replay = (out / "replay" / "report.md").read_text()
    assert "UNTRAINED" in replay and "published 16 = processed 16" in replay and "replay/report.md" in report
    assert (out / "replay.bag" / "metadata.yaml").exists() and (out / "replay" / "matches.png").exists()
    sheet = read_rgb(out / "features.png")
    assert sheet.shape[1] == 3 * 112 + 8 and (sheet[:3, :, 0] > 150).mean() > 0.5
    assert (out / "flight" / "metadata.yaml").exists()
    assert main(args) == 0
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.tex").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path / "precious")]) == 2
    assert (tmp_path / "precious" / "thesis.tex").exists()


def test_demo_runs_on_untrained_dinov3_with_its_16_px_grid(tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--backbone", "dinov3_vits16", "--out", str(out), "--frames", "16", "--size", "112x80",
                 "--pictures", "2", "--calibration-frames", "4"]) == 0
    report = (out / "report.md").read_text()
    assert "UNTRAINED" in report and "dinov3_vits16, vits16 (synthetic" in report and "7x5 patches of 16 px" in report
    quant = json.loads((out / "w4a8" / "quant.json").read_text())
    assert quant["arch"] == "vits16" and quant["patch_size"] == 16 and quant["trained"] is False
    assert "UNTRAINED" in (out / "replay" / "report.md").read_text()


def test_demo_refuses_unknown_backbone_and_sizes_off_its_patch(tmp_path, capsys):
    assert main(["demo", "--backbone", "dinov4_vitz9", "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown model 'dinov4_vitz9'" in err and "dinov3_vits16" in err and "dinov2_vits14" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "a").exists()
    assert main(["demo", "--backbone", "dinov3_vits16", "--size", "112x84", "--out", str(tmp_path / "b")]) == 2
    assert "16" in capsys.readouterr().err and not (tmp_path / "b").exists()
