"""`spatialq calibrate` end to end on a simulated bag, and its one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import cv2
import numpy as np
import pytest

from spatialq_ros.cli import main
from spatialq_ros.sim.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    out = tmp_path_factory.mktemp("cal") / "flight"
    simulate(out, SimConfig(frames=12, size=(56, 56), seed=2), progress=False)
    return out


@pytest.fixture(autouse=True)
def untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))
    monkeypatch.chdir(tmp_path)


def test_calibrate_writes_a_complete_artifact(bag, tmp_path, capsys):
    out = tmp_path / "art"
    assert main(["calibrate", "--bag", str(bag), "--size", "56x56", "--frames", "8", "--holdout", "2",
                 "--method", "minmax", "--out", str(out)]) == 0
    assert {"quant.json", "weights.safetensors", "model.onnx", "model_int4.onnx", "model_cpu.onnx", "fp32.onnx", "report.md",
            "report.json"} <= {p.name for p in out.iterdir()}
    report = json.loads((out / "report.json").read_text())
    assert 0 < report["fidelity"]["minmax"]["patch_cosine"] <= 1 and report["int4_vs_fp32_size"] < 0.2
    assert len(report["fidelity"]["minmax"]["block_cosine"]) == 12 and (out / "block_cosine.png").exists()
    assert "UNTRAINED" in (out / "report.md").read_text() and "UNTRAINED" in capsys.readouterr().out
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".art")]
    heads = report["heads"]  # the simulated bag has masks and poses: every head is scored, per model
    assert set(heads) == {"FP32", "minmax W4A8", "ORT quantize_dynamic W8A8"}
    assert {"keypoints", "field", "place"} <= set(heads["FP32"]) == set(heads["ORT quantize_dynamic W8A8"])
    assert heads["FP32"]["keypoints"]["repeatability"] == heads["minmax W4A8"]["keypoints"]["repeatability"]
    assert heads["FP32"]["place"]["top1_as_fp32"] == 1.0 and heads["FP32"]["place"]["queries"] == 2
    assert 0 <= heads["minmax W4A8"]["field"]["boundary_f"] <= 1 and heads["FP32"]["field"]["frames"] == 2
    assert "## Heads on the held-out frames (2)" in (out / "report.md").read_text()
    dynamic = report["fidelity"]["ort_dynamic"]  # the skeptic's baseline, scored as ours are, from outside
    assert 0 < dynamic["patch_cosine"] <= 1 and dynamic["block_cosine"] == [] and report["ort_dynamic_vs_int4_size"] > 1
    assert "| ORT quantize_dynamic W8A8 |" in (out / "report.md").read_text()
    assert set(report["not_ahead"]) == {"ORT quantize_dynamic W8A8"}


def test_the_report_says_in_words_where_the_method_is_not_ahead():
    from spatialq_ros.quant.report import not_ahead

    scores = {"patch_cosine": 0.99, "cls_cosine": 0.98, "nn_agreement": 0.5, "erqa_pca": 0.9, "corner_preservation": 0.8}
    theirs = {**scores, "patch_cosine": 0.95, "nn_agreement": 0.7, "cls_cosine": 0.98}
    heads = {"ours": {"keypoints": {"matching_accuracy": 0.6}, "place": {"recall@1": float("nan")}},
             "theirs": {"keypoints": {"matching_accuracy": 0.4}, "place": {"recall@1": 0.5}}}
    found = not_ahead({"ours": scores, "theirs": theirs}, heads, "ours")
    assert found == {"theirs": [("CLS cosine", 0.98, 0.98), ("patch NN agreement", 0.5, 0.7),
                                ("ERQA", 0.9, 0.9), ("corners kept", 0.8, 0.8)]}


def test_calibrating_on_images_scores_the_heads_that_need_no_ground_truth(bag, tmp_path):
    from spatialq_ros.sim.bag import read_frames

    folder = tmp_path / "imgs"
    folder.mkdir()
    for i, frame in enumerate(read_frames(bag)):
        cv2.imwrite(str(folder / f"{i:02d}.png"), cv2.cvtColor(frame.rgb, cv2.COLOR_RGB2BGR))
    out = tmp_path / "art"
    assert main(["calibrate", "--images", str(folder), "--size", "56x56", "--frames", "6", "--holdout", "2",
                 "--method", "minmax", "--out", str(out)]) == 0
    heads = json.loads((out / "report.json").read_text())["heads"]
    assert set(heads["FP32"]) == {"keypoints"} and heads["minmax W4A8"]["keypoints"]["frames"] == 2
    md = (out / "report.md").read_text()
    assert "Field boundaries: not scored" in md and "Place recognition: not scored" in md


@pytest.mark.parametrize("args, message", [
    (["--size", "50x56"], "multiples of 14"),
    (["--frames", "20"], "12 frames, fewer than the 36 asked"),
    (["--topic", "/nope"], "not an image topic"),
    (["--massive-factor", "1"], "massive factor 1: use 0"),
    (["--wide-share", "1.5"], "wide share 1.5: use a share of the weights from 0"),
    (["--value-alpha", "2"], "value alpha 2: use a folding strength from 0"),
])
def test_bad_inputs(bag, tmp_path, capsys, args, message):
    out = tmp_path / "art"
    assert main(["calibrate", "--bag", str(bag), "--size", "56x56", "--frames", "4", *args, "--out", str(out)]) == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not out.exists()


def test_existing_output_and_unreadable_images(tmp_path, capsys):
    (tmp_path / "art").mkdir()
    assert main(["calibrate", "--images", str(tmp_path), "--out", str(tmp_path / "art")]) == 2
    assert "already exists" in capsys.readouterr().err
    folder = tmp_path / "imgs"
    folder.mkdir()
    (folder / "a.png").write_bytes(b"broken")
    assert main(["calibrate", "--images", str(folder), "--frames", "1", "--holdout", "0",
                 "--out", str(tmp_path / "x")]) == 2
    assert "a.png: not a readable image" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    cv2.imwrite(str(tmp_path / "not_in_folder.png"), np.zeros((14, 14, 3), np.uint8))
    assert main(["calibrate", "--images", str(empty), "--out", str(tmp_path / "y")]) == 2
    assert "no frames" in capsys.readouterr().err


def test_features_runs_an_artifact_through_onnx_runtime(bag, tmp_path, capsys):
    art = tmp_path / "art"
    assert main(["calibrate", "--bag", str(bag), "--size", "56x56", "--frames", "4", "--holdout", "0",
                 "--method", "minmax", "--out", str(art)]) == 0
    image = tmp_path / "f.png"
    cv2.imwrite(str(image), np.full((56, 56, 3), 90, np.uint8))
    out = tmp_path / "f.npz"
    assert main(["features", "--model", str(art), "--image", str(image), "--out", str(out), "--facet", "value",
                 "--pca-png", str(tmp_path / "p.png")]) == 0
    data = np.load(out)
    assert data["patch_tokens"].shape == (4, 4, 384) and data["facet"].shape == (4, 4, 384)
    assert json.loads(str(data["meta"]))["fingerprint"] and (tmp_path / "p.png").exists()
    assert main(["features", "--model", str(art), "--image", str(image), "--out", str(out), "--size", "112x112"]) == 2
    assert "exported for 56x56" in capsys.readouterr().err


def test_a_calibration_killed_outright_leaves_a_temp_folder_that_the_next_run_removes(bag, tmp_path, capsys):
    """SIGKILL while the artifact is being written (no handler runs); the next run to the same output cleans up."""
    out = tmp_path / "art"
    args = ["calibrate", "--bag", str(bag), "--size", "56x56", "--frames", "4", "--holdout", "0", "--method",
            "minmax", "--out", str(out)]
    code = ("import os, signal, sys\nimport spatialq_ros.quant.artifact as artifact\n"
            "def killed(folder, *args, **kwargs):\n    (folder / 'quant.json').write_text('{')\n"
            "    os.kill(os.getpid(), signal.SIGKILL)\n"
            "artifact.write_artifact = killed\nfrom spatialq_ros.cli import main\nmain(sys.argv[1:])\n")
    run = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)
    assert run.returncode == -signal.SIGKILL, run.stderr[-2000:]
    assert not out.exists() and [p.name for p in tmp_path.iterdir() if p.name.startswith(".art.")]
    assert main(args) == 0
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".art.")] and (out / "quant.json").exists()
