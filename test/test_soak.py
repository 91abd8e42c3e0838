"""spatialq soak, short: the deploy node in its own process over real DDS, a few hundred frames, 3 lifecycle
cycles and a 3 s camera vanish; behaviour only (no timing, no tight RSS bound)."""

from __future__ import annotations

import json
import re
import time

import pytest

pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticStatus  # noqa: E402

from spatialq_ros.cli import main  # noqa: E402
from spatialq_ros.ros.diagnostics import FrameStats  # noqa: E402
from spatialq_ros.soak_report import checks  # noqa: E402


@pytest.fixture(autouse=True)
def untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))


def test_a_short_soak_builds_its_inputs_and_every_check_passes(tmp_path, capsys):
    out = tmp_path / "soak"
    code = main(["soak", "--out", str(out), "--size", "112x112", "--frames", "300", "--warmup", "100",
                 "--cycles", "3", "--vanish", "3", "--stale-after", "1", "--max-growth-mb", "500"])
    printed = capsys.readouterr().out
    report = json.loads((out / "soak.json").read_text())
    assert code == 0, printed
    assert report["passed"] and all(c["passed"] for c in report["checks"].values())
    assert {"w4a8", "map.npz", "field_head.npz", "flight"} <= {p.name for p in (out / "inputs").iterdir()}
    assert "building" in printed and "UNTRAINED" in printed
    phases = report["phases"]
    assert phases["long_run"]["outputs"] >= 300 and phases["after"]["outputs"] >= 200
    assert phases["lifecycle"]["cycles"] == 3 and phases["lifecycle"]["outputs"] >= 15
    vanish = phases["vanish"]
    assert vanish["warnings"] >= 1 and vanish["outputs_after_return"] >= vanish["frames_after_return"] >= 10
    seconds = int(re.fullmatch(r"no frames for (\d+) s", vanish["first_warning"]["message"]).group(1))
    assert 1 <= seconds <= 4
    levels = [d["level"] for d in report["diagnostics"]]  # while the camera is gone WARN, then OK once frames return
    assert "WARN" in levels and "OK" in levels[levels.index("WARN"):]
    assert report["exit_code"] == 0 and report["torch_loaded"] is False and not report["failure"]
    assert report["final_diagnostics"]["message"] == "ok" and int(report["final_diagnostics"]["processed"]) >= 500
    md = (out / "soak.md").read_text()
    assert "UNTRAINED" in md and "PASSED" in md and (out / "rss.png").stat().st_size > 0
    # a second soak reuses the inputs it built
    assert main(["soak", "--out", str(out), "--size", "112x112", "--frames", "20", "--warmup", "10",
                 "--cycles", "0", "--vanish", "2", "--stale-after", "1", "--max-growth-mb", "500"]) == 0
    assert "reusing" in capsys.readouterr().out


def test_the_stale_warning_follows_the_silence_and_only_while_waiting():
    stats = FrameStats()
    stats.frame_received()
    time.sleep(0.05)

    def status(stale_after):
        return stats.to_message(None, "n", "h", stale_after=stale_after).status[0]

    silent = status(0.01)
    assert silent.level == DiagnosticStatus.WARN and re.fullmatch(r"no frames for \d+ s", silent.message)
    assert status(60.0).level == DiagnosticStatus.OK and status(None).message == "ok"  # None: the node is not active
    stats.frame_received()
    assert status(1.0).level == DiagnosticStatus.OK
    stats.expect_frames()  # activation restarts the clock
    assert stats.silent_s() < 1.0


def test_bad_frames_warn_in_the_next_report_only_and_skipped_frames_never_do():
    stats = FrameStats()

    def status():
        return stats.to_message(None, "n", "h").status[0]

    assert status().level == DiagnosticStatus.OK
    stats.frame_received()
    stats.frame_bad("encoding")
    stats.frame_received()
    stats.frame_bad("truncated")
    warned = status()
    assert warned.level == DiagnosticStatus.WARN and warned.message == "2 bad frames since the last report"
    assert {kv.key: kv.value for kv in warned.values}["bad_frames"] == "2"
    again = status()
    assert again.level == DiagnosticStatus.OK and {kv.key: kv.value for kv in again.values}["bad_frames"] == "2"
    stats.frame_received()
    stats.frame_dropped()  # a newer frame took its place: a camera faster than the backbone, not a fault
    assert status().level == DiagnosticStatus.OK


def test_a_phase_that_never_ran_fails_its_check():
    result = {"config": {"warmup": 10}, "phases": {}, "rss": [], "failure": "the node process exited (1)",
              "exit_code": 1, "torch_loaded": None}
    verdict = checks(result, 10.0)
    assert not any(c["passed"] for c in verdict.values())
    assert "exited" in verdict["no_crash"]["detail"]


@pytest.mark.parametrize("args, message", [
    (["--model", "x"], "together"),
    (["--frames", "10", "--warmup", "10"], "warmup < frames"),
    (["--stale-after", "5", "--vanish", "3"], "below --vanish"),
    (["--bag", "/nonexistent/bag"], "no such file"),
    (["--size", "100x100"], "multiples of 14"),
])
def test_bad_soak_arguments_are_one_line_errors(tmp_path, capsys, args, message):
    assert main(["soak", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and err.startswith("spatialq soak: error:")


def test_a_folder_that_is_not_a_bag_is_one_line(tmp_path, capsys):
    (tmp_path / "notbag").mkdir()
    assert main(["soak", "--out", str(tmp_path / "o"), "--bag", str(tmp_path / "notbag"), "--size", "112x112",
                 "--frames", "20", "--warmup", "5"]) == 2
    err = capsys.readouterr().err.strip()
    assert "notbag: not a rosbag2 (no metadata.yaml, and no .db3 or .mcap file)" in err and len(err.splitlines()) == 1


def test_a_model_that_is_not_an_artifact_is_refused(tmp_path, capsys):
    for name in ("model.pth", "map.npz", "head.npz"):
        (tmp_path / name).write_bytes(b"x")
    assert main(["soak", "--out", str(tmp_path / "o"), "--model", str(tmp_path / "model.pth"), "--map",
                 str(tmp_path / "map.npz"), "--field-head", str(tmp_path / "head.npz")]) == 2
    assert "not a W4A8 artifact" in capsys.readouterr().err
