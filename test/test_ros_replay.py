"""spatialq replay over real rclpy / Fast DDS: every output recorded with its input header, the frame
accounting identity, the report, and bags of broken frames that must not crash anything."""

from __future__ import annotations

import json
import os
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("rclpy")

from ros_frames import write_compressed_bag, write_torture_bag  # noqa: E402
from process_helpers import error_lines, run_spatialq  # noqa: E402
from ros_helpers import cpu_load, foreign_graph  # noqa: E402
from spatialq_ros.bench.cpu_class import read_cpu_class  # noqa: E402
from spatialq_ros.cli import main  # noqa: E402
from spatialq_ros.point_cloud import cloud_rows  # noqa: E402
from spatialq_ros.replay_report import _throughput, read_outputs  # noqa: E402
from spatialq_ros.ros.replay import ReplayResult  # noqa: E402
from spatialq_ros.sim.bag import read_frames, read_masks  # noqa: E402
from spatialq_ros.sim.simulate import SimConfig, simulate  # noqa: E402

SIZE = "112x112"
FRAMES = 16


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("replay")
    os.environ["SPATIALQ_MODELS_DIR"] = str(tmp)
    bag = tmp / "flight"
    simulate(bag, SimConfig(frames=FRAMES, size=(126, 98), seed=3), progress=False)
    assert main(["build-map", "--bag", str(bag), "--size", SIZE, "--out", str(tmp / "map.npz"), "--clusters", "4",
                 "--pca-dims", "4", "--frames", "8"]) == 0
    assert main(["train-field-head", "--bag", str(bag), "--size", SIZE, "--out", str(tmp / "head.npz"),
                 "--frames", str(FRAMES)]) == 0
    return tmp, bag


def test_lockstep_replay_records_every_output_with_input_headers(flight, capsys):
    tmp, bag = flight
    out, report = tmp / "out", tmp / "report"
    assert main(["replay", str(bag), "--profile", "drone", "--size", SIZE, "--map", str(tmp / "map.npz"),
                 "--field-head", str(tmp / "head.npz"), "--out", str(out), "--report", str(report)]) == 0
    stamps = [f.stamp_ns for f in read_frames(bag)]
    outputs = read_outputs(out)
    for topic in ("keypoints", "place/match", "place/candidates", "place/markers", "field/mask",
                  "field/boundaries", "field/boundary"):
        recorded = outputs[f"/drone/{topic}"]
        expected = stamps if topic != "field/boundary" else [s for s in stamps if s in recorded]
        assert sorted(recorded) == expected, topic  # one message per frame, stamped with that frame's header
        if topic != "place/markers":  # markers live in the map frame; the rest copy the input header whole
            assert all(_frame_id(m) == "camera" for m in recorded.values()), topic
    assert len(outputs["/drone/field/boundary"]) >= FRAMES // 2
    kp = cloud_rows(outputs["/drone/keypoints"][stamps[0]])
    assert kp["descriptor"].dtype == np.int8 and kp["descriptor"].shape[1] == 384 and (kp["u"] < 126).all()
    mask = outputs["/drone/field/mask"][stamps[0]]
    assert (mask.width, mask.height) == (126, 98) and set(np.unique(mask.data)) <= {0, 255}
    truth = read_masks(bag)
    assert truth[stamps[0]].shape == (98, 126)

    r = json.loads((report / "report.json").read_text())
    f = r["frames"]
    assert f == {"published": FRAMES, "processed": FRAMES, "dropped": 0, "bad": 0, "bad_by_reason": {},
                 "lost_in_transport": 0}
    assert r["heads"] == {"keypoints": "on", "place": "on", "field": "on"} and not r["trained"]
    assert set(r["stage_ms"]) == {"backbone", "keypoints", "place", "field"}
    assert r["latency_ms"]["/drone/keypoints"]["n"] == FRAMES
    assert r["place"]["matched_frames"] == FRAMES and r["field"]["frames"] == FRAMES
    md = (report / "report.md").read_text()
    assert "UNTRAINED" in md and "published 16 = processed 16 + dropped 0 + bad 0" in md
    assert f"- CPU class: {read_cpu_class().describe()}: the speed figures below belong to it" in md
    for picture in r["pictures"]:
        assert (report / picture).stat().st_size > 1000, picture
    assert {"overlay_0.png", "matches.png", "latency.png"} <= set(r["pictures"])


def test_a_loaded_machine_with_another_graph_on_the_domain_still_records_each_frame_once(flight):
    """The demo's bag once held 17 frames' keypoints twice: while the machine was busy, another graph on the
    same ROS domain published keypoints with the very stamps of a simulated flight. Here two busy loops and
    such a graph (keypoints and camera frames) run through the whole replay; the bag, read back with the
    mcap library's ROS 2 decoder (what Foxglove uses), holds each processed frame once on every topic."""
    from mcap.reader import make_reader
    from mcap_ros2.decoder import DecoderFactory

    tmp, bag = flight
    stamps = [f.stamp_ns for f in read_frames(bag)]
    out, report = tmp / "out_loaded", tmp / "report_loaded"
    with cpu_load(2), foreign_graph("drone", stamps):
        assert main(["replay", str(bag), "--profile", "drone", "--size", SIZE, "--map", str(tmp / "map.npz"),
                     "--field-head", str(tmp / "head.npz"), "--out", str(out), "--report", str(report)]) == 0
    recorded: dict[str, Counter] = {}
    with open(next(out.glob("*.mcap")), "rb") as f:
        for _, channel, _, msg in make_reader(f, decoder_factories=[DecoderFactory()]).iter_decoded_messages():
            if channel.topic != "/diagnostics":
                header = msg.markers[0].header if hasattr(msg, "markers") else msg.header
                recorded.setdefault(channel.topic, Counter())[header.stamp.sec * 1_000_000_000
                                                              + header.stamp.nanosec] += 1
    frames = json.loads((report / "report.json").read_text())["frames"]
    assert frames["processed"] == FRAMES and frames["dropped"] == 0  # no foreign frame reached the node
    for topic in ("keypoints", "place/match", "place/candidates", "place/markers", "field/mask",
                  "field/boundaries"):
        assert recorded[f"/drone/{topic}"] == Counter(stamps), topic
    boundary = recorded["/drone/field/boundary"]  # only frames with a polygon, each once
    assert boundary and set(boundary) <= set(stamps) and set(boundary.values()) == {1}


def _frame_id(msg):
    return msg.markers[-1].header.frame_id if hasattr(msg, "markers") else msg.header.frame_id


def test_heads_without_files_are_off_and_the_report_says_so(flight):
    tmp, bag = flight
    out, report = tmp / "out_off", tmp / "report_off"
    assert main(["replay", str(bag), "--profile", "tractor", "--size", SIZE, "--frames", "4", "--out", str(out),
                 "--report", str(report)]) == 0
    r = json.loads((report / "report.json").read_text())
    assert r["heads"]["place"] == "off (no --map given)" and r["heads"]["field"] == "off (no --field-head given)"
    assert set(read_outputs(out)) == {"/tractor/keypoints", "/diagnostics"}
    assert "place off (no --map given)" in (report / "report.md").read_text()


def test_rate_mode_accounts_for_every_frame(flight):
    tmp, bag = flight
    out, report = tmp / "out_rate", tmp / "report_rate"
    assert main(["replay", str(bag), "--size", SIZE, "--rate", "4", "--out", str(out), "--report", str(report)]) == 0
    f = json.loads((report / "report.json").read_text())["frames"]
    assert f["published"] == FRAMES == f["processed"] + f["dropped"] + f["bad"]
    assert len(read_outputs(out)["/drone/keypoints"]) == f["processed"] >= 1
    r = json.loads((report / "report.json").read_text())
    assert r["offered_fps"] > 0 and (r["sustained_fps"] is None) == (f["processed"] < 2)


def test_throughput_is_timed_from_the_first_output_to_the_last():
    result = ReplayResult(arrivals={"/drone/field/mask": [5.0, 9.0], "/drone/keypoints": [10.0, 10.5, 11.0, 12.0]})
    assert result.sustained_fps == 1.5  # keypoints first; start-up before 10 s and the wait after 12 s are not work
    assert ReplayResult(arrivals={"/drone/keypoints": [3.0]}).sustained_fps is None


@pytest.mark.parametrize("mode, offered, reused, says", [
    ("rate 4x", 40.0, 0, None), ("rate 1x", 10.0, 0, "measures the camera"),
    ("rate 4x", 40.0, 7, "7 frames reused the frame cache"), ("lockstep", 9.0, 0, "frames never overlap")])
def test_the_report_says_what_bounds_the_throughput(mode, offered, reused, says):
    report = {"mode": mode, "sustained_fps": 9.0, "fps_vs_backbone_limit": 0.45, "offered_fps": offered,
              "offered_vs_backbone_limit": offered / 20.0, "frame_cache_reused": reused}
    line = _throughput(report)[0]
    assert "**0.45 x the backbone's limit**" in line
    assert (says in line) if says else not any(w in line for w in ("camera", "cache", "lockstep"))


def test_a_bag_of_every_encoding_and_broken_frames_replays_without_a_crash(flight):
    tmp, bag = flight
    rgb = next(read_frames(bag)).rgb[:98, :126]
    torture = tmp / "torture"
    expected = write_torture_bag(torture, rgb)
    out, report = tmp / "out_torture", tmp / "report_torture"
    assert main(["replay", str(torture), "--size", SIZE, "--out", str(out), "--report", str(report)]) == 0
    r = json.loads((report / "report.json").read_text())
    assert r["frames"]["processed"] == expected["processed"] and r["frames"]["bad_by_reason"] == expected["bad"]
    assert r["frames"]["dropped"] == 0
    assert len(read_outputs(out)["/drone/keypoints"]) == expected["processed"]


def test_compressed_frames_and_corrupt_jpegs(flight):
    tmp, bag = flight
    rgb = next(read_frames(bag)).rgb
    compressed = tmp / "compressed"
    expected = write_compressed_bag(compressed, rgb)
    out, report = tmp / "out_compressed", tmp / "report_compressed"
    assert main(["replay", str(compressed), "--size", SIZE, "--out", str(out), "--report", str(report)]) == 0
    r = json.loads((report / "report.json").read_text())
    assert r["camera_topic"] == "/camera/image_raw/compressed"
    assert r["frames"]["processed"] == expected["processed"] and r["frames"]["bad_by_reason"] == expected["bad"]


@pytest.mark.parametrize("args, message", [
    (["--rate", "0"], "--rate 0.0: must be > 0"),
    (["--map", "/no/such/map.npz"], "parameter map: /no/such/map.npz does not exist"),
    (["--size", "100x100"], "multiples of 14"),
    (["--frames", "0"], "--frames must be >= 1"),
    (["--report", "/proc/no/report"], "cannot make the report folder"),
])
def test_bad_replay_arguments_are_one_line_errors(flight, capsys, args, message):
    tmp, bag = flight
    assert main(["replay", str(bag), "--out", str(tmp / "never"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert message in err[-1] and err[-1].startswith("spatialq replay: error:")
    assert not (tmp / "never").exists()


def test_an_existing_or_unwritable_output_bag_is_refused(flight, capsys):
    tmp, bag = flight
    (tmp / "taken").mkdir()
    assert main(["replay", str(bag), "--size", SIZE, "--out", str(tmp / "taken")]) == 2
    assert "already exists" in capsys.readouterr().err
    assert main(["replay", str(bag), "--size", SIZE, "--out", "/proc/no/bag"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("/proc/no/bag: folder /proc/no does not exist")


def test_a_hover_reuses_outputs_through_the_frame_cache(flight):
    tmp, _ = flight
    hover = tmp / "hover"
    simulate(hover, SimConfig(frames=12, size=(126, 98), seed=4, hover=8), progress=False)
    out, report = tmp / "out_hover", tmp / "report_hover"
    assert main(["replay", str(hover), "--size", SIZE, "--set", "perception_node.frame_cache_threshold=2.0",
                 "--out", str(out), "--report", str(report)]) == 0
    r = json.loads((report / "report.json").read_text())
    assert r["frames"]["processed"] == 12 and r["frame_cache_reused"] >= 4
    assert len(read_outputs(out)["/drone/keypoints"]) == 12  # a reused frame still gets every output


def test_a_full_disk_while_recording_is_one_line_and_leaves_no_half_bag(flight):
    tmp, bag = flight
    (tmp / "kept.bag").mkdir()
    out = tmp / "out_full_disk"
    run = run_spatialq(["replay", str(bag), "--profile", "drone", "--size", SIZE, "--out", str(out)],
                       file_size_limit=64 * 1024)  # a 16-frame recording is ~0.4 MB
    errors = [line for line in error_lines(run) if line.startswith("spatialq ")]  # not the nodes' log lines
    assert run.returncode == 2 and len(errors) == 1 and run.stderr.strip().endswith(errors[0]), run.stderr[-3000:]
    assert errors[0] == f"spatialq replay: error: {out}: not written: file too large; what was there before is kept"
    assert "Traceback" not in run.stderr
    assert not out.exists() and not [p for p in tmp.iterdir() if p.name.startswith(f".{out.name}.")]
    assert (tmp / "kept.bag").is_dir()
