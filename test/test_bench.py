"""`spatialq bench` runs every engine on the same frames and reports the agreed columns."""

from __future__ import annotations

import json

import pytest

from spatialq_ros.bench.cpu_class import read_cpu_class
from spatialq_ros.bench.gemm_peak import GemmPeak
from spatialq_ros.cli import main

ENGINES = {"torch-fp32", "ort-fp32", "ort-int8-dynamic", "ort-int8-static-minmax", "spatialq-w4a8-qdq",
           "spatialq-w4a8-int4", "spatialq-w4a8-cpu"}


def test_bench_rows_table_and_plot(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))
    out, rows_file = tmp_path / "bench", tmp_path / "rows.json"
    assert main(["bench", "--sizes", "56x56", "--frames", "3", "--calibration-frames", "4", "--threads", "1",
                 "--out", str(out), "--json", str(rows_file)]) == 0
    rows, cpu = json.loads(rows_file.read_text()), read_cpu_class()
    assert {r["cpu_class"] for r in rows} == {cpu.name}
    written = json.loads((out / "bench.json").read_text())
    assert written["cpu"]["class"] == cpu.name and written["cpu"]["features"] == list(cpu.features)
    assert [r["engine"] for r in written["rows"]] == [r["engine"] for r in rows] and set(written["peaks_gops"]) == {
        "fp32", "int8"}
    assert {r["engine"] for r in rows} == ENGINES
    peaks = _peaks((out / "bench.md").read_text())  # the peaks the table prints are the ones the rows divide by
    for r in rows:
        assert {"engine", "size", "p50_ms", "p95_ms", "fps", "rss_mb", "model_mb", "cosine"} <= set(r)
        assert r["size"] == "56x56" and r["p95_ms"] >= r["p50_ms"] > 0
        assert (r["rss_mb"] is None) == (r["engine"] == "torch-fp32")
        assert r["peak_fraction"] == pytest.approx(r["gops"] / peaks["int8" if "int8" in r["engine"]
                                                                     or "w4a8" in r["engine"] else "fp32"], rel=0.01)
    by = {r["engine"]: r for r in rows}
    assert by["ort-fp32"]["cosine"] > 0.9999  # the same float model through another runtime
    # at most half the weights at 7 bits (stored INT8), the rest packed INT4: at most ~0.75 of the QDQ graph's
    assert by["spatialq-w4a8-int4"]["model_mb"] < 0.8 * by["spatialq-w4a8-qdq"]["model_mb"]
    table = (out / "bench.md").read_text()
    assert f"CPU class: {cpu.describe()}." in table
    assert "UNTRAINED" in table and "spatialq-w4a8-cpu" in table and (out / "bench.png").exists()
    node = json.loads((out / "node.json").read_text())  # perception_node in its own process, over DDS
    assert node[0]["size"] == "56x56" and node[0]["frames"] == 7 and not node[0]["torch_loaded"]
    assert 30 < node[0]["rss_mb"] < 1000 and node[0]["latency_p50_ms"] > 0
    assert node[0]["sustained_fps"] > 0 and node[0]["overload_published"] > node[0]["sustained_fps"]
    assert 0 < node[0]["fps_vs_backbone_limit"] < 1.5  # processed frames can't beat the backbone by much
    assert "The deploy process: perception_node" in table



def test_bench_times_two_backbones_in_one_run_on_their_own_patch_grids(tmp_path, monkeypatch):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))
    out = tmp_path / "bench"
    assert main(["bench", "--backbones", "dinov2_vits14,dinov3_vits16", "--sizes", "56x56", "--frames", "2",
                 "--calibration-frames", "4", "--threads", "1", "--no-node", "--hover-frames", "0",
                 "--out", str(out)]) == 0
    rows = json.loads((out / "bench.json").read_text())["rows"]
    by = {(r["backbone"], r["engine"]): r for r in rows}
    assert set(by) == {(b, e) for b in ("dinov2_vits14", "dinov3_vits16") for e in ENGINES}
    v2, v3 = by["dinov2_vits14", "ort-fp32"], by["dinov3_vits16", "ort-fp32"]
    assert (v2["size"], v2["patch_tokens"], v3["size"], v3["patch_tokens"]) == ("56x56", 16, "64x64", 16)
    assert by["dinov3_vits16", "spatialq-w4a8-cpu"]["cosine"] > 0.9  # its own fp32 is the reference
    table = (out / "bench.md").read_text()
    assert "dinov3_vits16: 56x56 asked, 64x64 timed, the nearest multiple of its 16 px patch" in table
    assert "dinov3_vits16 64x64 (16 tokens) vs dinov2_vits14 56x56 (16 tokens): W4A8-cpu speed-up" in table


def test_bench_backbones_refuses_model_and_unknown_names(tmp_path, capsys):
    assert main(["bench", "--backbones", "dinov3_vits16", "--model", "x.pth", "--out", str(tmp_path)]) == 2
    assert "without --model" in capsys.readouterr().err
    assert main(["bench", "--backbones", "dinov2_vits14,dinov9_vitq1", "--out", str(tmp_path)]) == 2
    assert "unknown model 'dinov9_vitq1'" in capsys.readouterr().err

def _peaks(table: str) -> dict[str, float]:
    line = next(line for line in table.splitlines() if line.startswith("Machine:"))
    return {kind: float(line.split(f"{kind.upper()} peak ")[1].split()[0]) for kind in ("fp32", "int8")}


def test_a_gemm_peak_keeps_its_best_turn():
    gemm = GemmPeak("int8", threads=1)
    first = gemm.gops
    for _ in range(3):
        gemm.run()
    assert gemm.gops >= first > 0 and gemm.gops == pytest.approx(2 * 1024**3 / gemm.best_s / 1e9)
    with pytest.raises(ValueError, match="fp32 or int8"):
        GemmPeak("fp16")
