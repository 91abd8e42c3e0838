"""`spatialq bench --zoo`: stress models calibrated as a user calibrates a checkpoint, beside ORT's baselines."""

from __future__ import annotations

import json

import pytest

from spatialq_ros.cli import main


@pytest.fixture(autouse=True)
def untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))


def test_the_zoo_table_has_every_quantizer_per_model(tmp_path, capsys):
    out = tmp_path / "zoo"
    assert main(["bench", "--zoo", "ln-outliers", "--sizes", "56x56", "--zoo-frames", "4", "--zoo-holdout", "2",
                 "--zoo-depth", "2", "--out", str(out)]) == 0
    report = json.loads((out / "zoo.json").read_text())
    scores = report["models"]["ln-outliers"]["scores"]
    assert set(scores) == {"gplq", "minmax", "ort_dynamic", "ort_static", "a8_ceiling", "a10_ceiling"}
    assert report["cpu"]
    for row in scores.values():  # each quantizer really ran: its own error, not the reference's
        assert 0 < row["patch_cosine"] < 1 and 0 <= row["nn_agreement"] <= 1
    assert len({row["patch_cosine"] for row in scores.values()}) == 6
    assert scores["a10_ceiling"]["patch_cosine"] > scores["a8_ceiling"]["patch_cosine"]
    assert isinstance(report["models"]["ln-outliers"]["out_of_reach_at_a8"], list)
    md = (out / "zoo.md").read_text()
    assert "| ln-outliers | ORT static QDQ W8A8 |" in md and "--zoo ln-outliers" in md
    assert "| ln-outliers | ceiling: A8 alone |" in md


def test_an_unknown_zoo_member_is_one_line_before_any_work(tmp_path, capsys):
    assert main(["bench", "--zoo", "ours,nope", "--out", str(tmp_path / "z")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unknown stress model 'nope'" in err[0] and not (tmp_path / "z").exists()
