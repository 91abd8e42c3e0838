"""train-field-head + build-map + eval on one simulated flight: the whole perception chain, ROS-free."""

from __future__ import annotations

import json

import numpy as np
import pytest

from spatialq_ros.cli import main
from spatialq_ros.perception.field import load_head
from spatialq_ros.perception.pipeline import Pipeline
from spatialq_ros.runtime.factory import make_engine
from spatialq_ros.sim.bag import read_frames
from spatialq_ros.sim.simulate import SimConfig, simulate

SIZE = "112x112"


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval") / "flight"
    simulate(out, SimConfig(frames=40, size=(112, 112), seed=6), progress=False)
    return out


@pytest.fixture(autouse=True)
def untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))


def test_chain_gives_every_table(flight, tmp_path, capsys):
    head, db, out = tmp_path / "head.npz", tmp_path / "map.npz", tmp_path / "eval"
    assert main(["train-field-head", "--bag", str(flight), "--size", SIZE, "--out", str(head), "--frames", "8"]) == 0
    assert main(["build-map", "--bag", str(flight), "--size", SIZE, "--out", str(db), "--frames", "28",
                 "--clusters", "8", "--pca-dims", "16"]) == 0
    assert main(["eval", "--bag", str(flight), "--size", SIZE, "--map", str(db), "--field-head", str(head),
                 "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["frames"] == 40 and report["trained"] is False
    assert 0 <= report["keypoints"]["repeatability"] <= 1 and report["keypoints"]["pairs"] == 8
    assert 0.5 < report["field"]["iou"] <= 1
    assert report["field"]["boundary_f"] > report["field"]["boundary_f_bilinear"]  # the guide pays off
    assert report["place"]["queries"] == 12 and 0 <= report["place"]["recall@1"] <= report["place"]["recall@5"]
    md = (out / "report.md").read_text()
    assert "UNTRAINED" in md and "Recall@1" in md and "boundary F" in md and (out / "field_0.png").exists()


def test_pipeline_switches_heads_off_and_checks_the_head(flight, tmp_path):
    engine = make_engine(None, (112, 112))
    frame = next(read_frames(flight)).rgb
    result = Pipeline(engine, keypoints=None).process(frame)
    assert result.keypoints is None and result.place is None and result.field_mask is None
    assert result.features.patch_tokens.shape == (8, 8, 384) and "backbone" in result.timings_ms
    head = tmp_path / "head.npz"
    assert main(["train-field-head", "--bag", str(flight), "--size", SIZE, "--out", str(head), "--frames", "4"]) == 0
    from spatialq_ros.errors import SpatialqError

    with pytest.raises(SpatialqError, match="fitted at 112x112"):
        Pipeline(make_engine(None, (56, 56)), field_head=load_head(head))
    full = Pipeline(engine, field_head=load_head(head)).process(frame)
    assert full.field_mask.shape == (112, 112) and set(np.unique(full.field_mask)) <= {0, 255}


def test_train_field_head_errors(flight, tmp_path, capsys):
    assert main(["train-field-head", "--bag", str(flight), "--mask-topic", "/masks", "--size", SIZE,
                 "--out", str(tmp_path / "h.npz")]) == 2
    assert "topic /masks not in bag" in capsys.readouterr().err
    assert main(["train-field-head", "--images", str(tmp_path), "--size", SIZE, "--out", str(tmp_path / "h.npz")]) == 2
    assert "--images needs --masks" in capsys.readouterr().err
    assert not (tmp_path / "h.npz").exists()


def test_an_artifact_is_scored_beside_ort_quantize_dynamic(flight, tmp_path, capsys):
    art = tmp_path / "art"
    assert main(["calibrate", "--bag", str(flight), "--size", SIZE, "--frames", "4", "--holdout", "0",
                 "--method", "minmax", "--out", str(art)]) == 0
    out = tmp_path / "eval"
    assert main(["eval", "--bag", str(flight), "--size", SIZE, "--model", str(art), "--frames", "10",
                 "--out", str(out)]) == 0
    baseline = json.loads((out / "report.json").read_text())["baseline"]
    assert baseline["frames"] == 2 and set(baseline["models"]) == {baseline["ours"], "ORT quantize_dynamic W8A8"}
    for scores in baseline["models"].values():  # real sessions, real scores: not the reference itself
        assert 0 < scores["patch_cosine"] < 1 and 0 <= scores["nn_agreement"] <= 1
    behind = baseline["not_ahead"]["ORT quantize_dynamic W8A8"]
    ours, theirs = baseline["models"][baseline["ours"]], baseline["models"]["ORT quantize_dynamic W8A8"]
    assert ("patch cosine" in [m for m, _, _ in behind]) == (ours["patch_cosine"] <= theirs["patch_cosine"])
    assert "## Against ORT quantize_dynamic" in (out / "report.md").read_text()
    assert main(["eval", "--bag", str(flight), "--size", SIZE, "--model", str(art), "--frames", "2",
                 "--baseline", "none", "--out", str(tmp_path / "e2")]) == 0
    assert "baseline" not in json.loads((tmp_path / "e2" / "report.json").read_text())
    capsys.readouterr()
    assert main(["eval", "--bag", str(flight), "--size", SIZE, "--baseline", "dynamic", "--out", str(tmp_path / "e3")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "give a W4A8 artifact as --model" in err[0]
