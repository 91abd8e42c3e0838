"""Bags as real recorders leave them, built for real (rosbags, sqlite3, mcap files cut short) and read by the
real commands: each is read, or gets one line and exit 2, never a traceback."""

from __future__ import annotations

import json
import sqlite3
import struct

import cv2
import numpy as np
import pytest
import yaml
from rosbags.rosbag2 import StoragePlugin, Writer

from spatialq_ros.cli import main
from spatialq_ros.sim import bag as B
from spatialq_ros.sim import messages as M
from spatialq_ros.sim.simulate import SimConfig, simulate

SIZE = "56x56"
FRAMES = 10
PLUGINS = {"sqlite3": StoragePlugin.SQLITE3, "mcap": StoragePlugin.MCAP}


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    """A simulated flight's messages: (topic, msgtype, log ns, raw CDR) in log order."""
    bag = tmp_path_factory.mktemp("real") / "sim"
    simulate(bag, SimConfig(frames=FRAMES, size=(56, 56), seed=5), progress=False)
    with B.open_bag(bag) as opened:
        return [(t, opened.topics[t].msgtype, ns, bytes(raw)) for t, ns, raw in opened.messages(opened.topics)]


@pytest.fixture(autouse=True)
def untrained(monkeypatch, tmp_path):
    monkeypatch.setenv("SPATIALQ_MODELS_DIR", str(tmp_path))
    B._NOTICES.clear()  # each test sees its bag's notice


def unstamped(messages):
    """The flight as a driver of early ROS 2 recorded it: every header stamp zero, every frame_id empty
    (the place topic's Header keeps its frame_id: it is the data)."""
    out = []
    for topic, msgtype, ns, raw in messages:
        msg = M.TYPESTORE.deserialize_cdr(raw, msgtype)
        header = msg.header if hasattr(msg, "header") else msg
        header.stamp.sec = header.stamp.nanosec = 0
        if hasattr(msg, "header"):
            header.frame_id = ""
        out.append((topic, msgtype, ns, bytes(M.TYPESTORE.serialize_cdr(msg, msgtype))))
    return out


def write_raw(folder, messages, storage):
    """A rosbag2 (metadata.yaml + one storage file) of these messages; returns the storage file."""
    with Writer(folder, version=8, storage_plugin=PLUGINS[storage]) as writer:
        connections = {}
        for topic, msgtype, ns, raw in messages:
            if topic not in connections:
                connections[topic] = writer.add_connection(topic, msgtype, typestore=M.TYPESTORE)
            writer.write(connections[topic], ns, raw)
    return next(folder.glob("*.db3" if storage == "sqlite3" else "*.mcap"))


def split_bag(folder, messages, storage, parts, metadata):
    """One recording split into `parts` files in one folder, as `ros2 bag record --max-bag-size` leaves it;
    with the metadata.yaml that lists them all, or without (the recorder was killed)."""
    folder.mkdir()
    names, infos = [], []
    for k, part in enumerate(np.array_split(np.arange(len(messages)), parts)):
        scratch = folder.parent / f"{folder.name}_part{k}"
        storage_file = write_raw(scratch, [messages[i] for i in part], storage)
        names.append(f"{folder.name}_{k}{storage_file.suffix}")
        storage_file.rename(folder / names[-1])
        infos.append(yaml.safe_load((scratch / "metadata.yaml").read_text())["rosbag2_bagfile_information"])
    if metadata:
        info = dict(infos[0], relative_file_paths=names, message_count=sum(i["message_count"] for i in infos),
                    files=[dict(i["files"][0], path=name) for i, name in zip(infos, names)])
        topics = {}
        for i in infos:
            for t in i["topics_with_message_count"]:
                entry = topics.setdefault(t["topic_metadata"]["name"], dict(t, message_count=0))
                entry["message_count"] += t["message_count"]
        info["topics_with_message_count"] = list(topics.values())
        start = min(i["starting_time"]["nanoseconds_since_epoch"] for i in infos)
        end = max(i["starting_time"]["nanoseconds_since_epoch"] + i["duration"]["nanoseconds"] for i in infos)
        info["starting_time"], info["duration"] = {"nanoseconds_since_epoch": start}, {"nanoseconds": end - start}
        (folder / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": info}))
    return folder


def one_error_line(capsys, command):
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "UNTRAINED" not in line]
    assert len(err) == 1 and err[0].startswith(f"spatialq {command}: error: "), err
    return err[0]


def log_times(messages, topic=B.IMAGE_TOPIC):
    return [ns for t, _, ns, _ in messages if t == topic]


def test_killed_recording_without_metadata_is_reindexed_in_memory_and_matched_by_log_time(flight, tmp_path,
                                                                                          capsys):
    """sqlite3 split in two, metadata.yaml never written, stamps zero, frame_ids empty: build-map pairs frames
    with poses and calibrate scores the heads on masks, both by log time; the folder is left as it was."""
    messages = unstamped(flight)
    bag = split_bag(tmp_path / "killed", messages, "sqlite3", parts=2, metadata=False)
    before = sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in bag.iterdir())
    frames = list(B.read_frames(bag))
    assert [f.stamp_ns for f in frames] == log_times(messages) and all(f.log_time for f in frames)
    assert {f.frame_id for f in frames} == {""}
    assert capsys.readouterr().err.strip() == f"BAG: {bag}: no metadata.yaml; reindexed 2 files (sqlite3) in memory"

    assert main(["build-map", "--bag", str(bag), "--size", SIZE, "--out", str(tmp_path / "map.npz"),
                 "--clusters", "2", "--pca-dims", "0"]) == 0
    assert f"wrote {tmp_path / 'map.npz'}: {FRAMES} places" in capsys.readouterr().out  # every frame met its pose
    assert main(["calibrate", "--bag", str(bag), "--size", SIZE, "--frames", "6", "--holdout", "2",
                 "--method", "minmax", "--out", str(tmp_path / "art")]) == 0
    report = json.loads((tmp_path / "art" / "report.json").read_text())
    assert report["truth_matched_by"] == "log time"
    assert {"field", "place"} <= set(report["heads"]["FP32"])  # masks and poses met their frames
    assert "matched to the frames by the bag's log time" in (tmp_path / "art" / "report.md").read_text()
    assert sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in bag.iterdir()) == before


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_split_bag_with_metadata_and_bare_storage_files(flight, tmp_path, storage):
    bag = split_bag(tmp_path / "split", flight, storage, parts=3, metadata=True)
    assert [f.stamp_ns for f in B.read_frames(bag)] == log_times(flight)  # the sim stamps = its log times
    with B.open_bag(bag) as opened:
        assert opened.topics[B.IMAGE_TOPIC].count == FRAMES  # summed over the three files
    assert main(["train-field-head", "--bag", str(bag), "--size", SIZE, "--frames", "4", "--every", "2",
                 "--out", str(tmp_path / "head.npz")]) == 0
    bare = write_raw(tmp_path / "whole", flight, storage)
    assert len(list(B.read_frames(bare))) == FRAMES
    assert main(["eval", "--bag", str(bare), "--size", SIZE, "--frames", "3", "--field-head",
                 str(tmp_path / "head.npz"), "--out", str(tmp_path / "eval")]) == 0
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert report["frames"] == 3 and report["field"]["frames"] == 3  # frames met their masks in the bare file


def test_metadata_that_misses_files_or_is_broken_is_rebuilt(flight, tmp_path, capsys):
    """A recorder that rewrites metadata.yaml at each split and is killed after one; a metadata.yaml cut short."""
    bag = split_bag(tmp_path / "split", flight, "mcap", parts=2, metadata=True)
    info = yaml.safe_load((bag / "metadata.yaml").read_text())
    info["rosbag2_bagfile_information"]["relative_file_paths"] = ["split_0.mcap"]
    (bag / "metadata.yaml").write_text(yaml.safe_dump(info))
    assert len(list(B.read_frames(bag))) == FRAMES
    assert f"BAG: {bag}: metadata.yaml lists 1 of its 2 files; reindexed 2 files (mcap) in memory" in \
        capsys.readouterr().err
    (bag / "metadata.yaml").write_text("rosbag2_bagfile_information:\n  version: 8\n  storage_identifier: mc")
    assert len(list(B.read_frames(bag / "metadata.yaml"))) == FRAMES  # the metadata's path names its folder
    assert "metadata.yaml unusable (" in capsys.readouterr().err


def test_join_by_stamp_pairs_in_bag_order_with_gaps_on_either_side():
    frames = [(1, "f1"), (2, "f2"), (3, "f3"), (6, "f6"), (7, "f7")]
    masks = [(0, "m0"), (1, "m1"), (3, "m3"), (4, "m4"), (5, "m5"), (6, "m6")]
    assert list(B.join_by_stamp(frames, masks, window=2)) == [
        (1, "f1", "m1"), (2, "f2", None), (3, "f3", "m3"), (6, "f6", "m6"), (7, "f7", None)]
    assert list(B.join_by_stamp(frames, ())) == [(s, f, None) for s, f in frames]


def big_frames_mcap(folder, frames=12):
    """An mcap whose 320x240 frames fill several 1 MiB chunks (what a recorder has written when killed)."""
    rng = np.random.default_rng(1)
    with B.BagWriter(folder, "mcap") as writer:
        for i in range(frames):
            ns = 1_700_000_000_000_000_000 + i * 100_000_000
            writer.write(B.IMAGE_TOPIC, M.image_msg(ns, "camera", rng.integers(0, 256, (240, 320, 3), np.uint8)), ns)
    return next(folder.glob("*.mcap"))


def test_mcap_of_a_killed_recorder_reads_its_complete_records(tmp_path, capsys):
    whole = big_frames_mcap(tmp_path / "whole")
    data = whole.read_bytes()
    summary_start = struct.unpack_from("<Q", data, len(data) - 37 + 9)[0]
    (tmp_path / "no_summary.mcap").write_bytes(data[:summary_start])  # data end record kept, summary never written
    assert len(list(B.read_frames(tmp_path / "no_summary.mcap"))) == 12
    assert "read its 12 complete messages" in capsys.readouterr().err

    killed = tmp_path / "killed"
    killed.mkdir()
    (killed / "killed_0.mcap").write_bytes(data[: int(len(data) * 0.6)])  # ends inside a chunk
    frames = list(B.read_frames(killed))
    assert 4 <= len(frames) < 12
    assert np.array_equal(frames[0].rgb, next(B.read_frames(whole)).rgb)
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == f"BAG: {killed}: no metadata.yaml; reindexed 1 file (mcap) in memory"
    assert err[1].startswith(f"BAG: {killed / 'killed_0.mcap'}: mcap without footer (recorder killed?); read its "
                             f"{len(frames)} complete messages, ignored a last record cut short (") and len(err) == 2
    assert main(["eval", "--bag", str(killed), "--size", SIZE, "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "report.json").read_text())["frames"] == len(frames)


def crystal_db3(path, frames=2):
    """A bag as ROS 2 Crystal/Dashing recorded it: sqlite3 of that schema (topics without offered_qos_profiles,
    no schema table), type names without /msg/, a 640x480 bgr8 Image and its JPEG, header stamps zero and
    frame_ids empty. Returns the frame (RGB) it holds."""
    rgb = np.stack(np.broadcast_arrays(np.full((480, 640), 210.0), np.linspace(40, 220, 640)[None, :],
                                       np.full((480, 640), 30.0)), axis=-1).astype(np.uint8)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    image = M.T["sensor_msgs/msg/Image"](header=M.header(0, ""), height=480, width=640, encoding="bgr8",
                                         is_bigendian=0, step=640 * 3, data=bgr.reshape(-1))
    jpeg = M.T["sensor_msgs/msg/CompressedImage"](header=M.header(0, ""), format="bgr8; jpeg compressed bgr8",
                                                  data=cv2.imencode(".jpg", bgr)[1].reshape(-1))
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE topics(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                            serialization_format TEXT NOT NULL);
        CREATE TABLE messages(id INTEGER PRIMARY KEY, topic_id INTEGER NOT NULL, timestamp INTEGER NOT NULL,
                              data BLOB NOT NULL);
        CREATE INDEX timestamp_idx ON messages (timestamp ASC);
        INSERT INTO topics VALUES (1, '/image_raw', 'sensor_msgs/Image', 'cdr');
        INSERT INTO topics VALUES (2, '/image_raw/compressed', 'sensor_msgs/CompressedImage', 'cdr');
    """)
    for i in range(frames):
        ns = 1_560_000_000_000_000_000 + i * 50_000_000  # 2019
        db.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (1, ?, ?)",
                   (ns, bytes(M.TYPESTORE.serialize_cdr(image, "sensor_msgs/msg/Image"))))
        db.execute("INSERT INTO messages (topic_id, timestamp, data) VALUES (2, ?, ?)",
                   (ns + 1, bytes(M.TYPESTORE.serialize_cdr(jpeg, "sensor_msgs/msg/CompressedImage"))))
    db.commit()
    db.close()
    return rgb


def test_crystal_dashing_bag_as_a_file_and_as_a_folder(tmp_path):
    folder = tmp_path / "rosbag2_2019_06_08"
    folder.mkdir()
    db3 = folder / "rosbag2_2019_06_08.db3"
    rgb = crystal_db3(db3)
    (raw, _), (jpeg, _) = (list(B.read_frames(db3)), list(B.read_frames(db3, "/image_raw/compressed")))
    assert np.array_equal(raw.rgb, rgb) and raw.frame_id == "" and raw.log_time
    assert raw.stamp_ns == 1_560_000_000_000_000_000  # zero header stamp: keyed by log time
    assert np.abs(jpeg.rgb.astype(int) - rgb).mean() < 3  # "bgr8; jpeg compressed bgr8" decodes to RGB, not BGR
    assert len(list(B.read_frames(folder))) == 2  # the folder without metadata.yaml: reindexed
    (folder / "metadata.yaml").write_text(yaml.safe_dump({"rosbag2_bagfile_information": {  # what Crystal wrote
        "version": 1, "storage_identifier": "sqlite3", "storage_format": "cdr",
        "relative_file_paths": ["rosbag2_2019_06_08/rosbag2_2019_06_08.db3"],
        "duration": {"nanoseconds": 50_000_002},
        "starting_time": {"nanoseconds_since_epoch": 1_560_000_000_000_000_000},
        "message_count": 4, "topics_with_message_count": [
            {"topic_metadata": {"name": "/image_raw", "type": "sensor_msgs/Image", "serialization_format": "cdr"},
             "message_count": 2},
            {"topic_metadata": {"name": "/image_raw/compressed", "type": "sensor_msgs/CompressedImage",
                                "serialization_format": "cdr"}, "message_count": 2}]}}))
    assert np.array_equal(next(B.read_frames(folder)).rgb, rgb)
    assert main(["eval", "--bag", str(folder), "--size", SIZE, "--out", str(tmp_path / "eval")]) == 0


def test_several_cameras_need_a_topic_in_every_command(flight, tmp_path, capsys):
    cameras = [(t.replace("/camera/", cam), msgtype, ns, raw) for t, msgtype, ns, raw in flight
               if t == B.IMAGE_TOPIC for cam in ("/left/", "/right/")]
    bag = tmp_path / "stereo"
    write_raw(bag, sorted(cameras + [m for m in flight if m[0] != B.IMAGE_TOPIC and "image" not in m[0]],
                          key=lambda m: m[2]), "mcap")
    commands = {
        "eval": ["--bag", str(bag), "--size", SIZE, "--out", str(tmp_path / "eval")],
        "build-map": ["--bag", str(bag), "--size", SIZE, "--out", str(tmp_path / "map.npz")],
        "train-field-head": ["--bag", str(bag), "--size", SIZE, "--out", str(tmp_path / "head.npz")],
        "calibrate": ["--bag", str(bag), "--size", SIZE, "--frames", "4", "--holdout", "0",
                      "--out", str(tmp_path / "art")],
    }
    try:
        import rclpy  # noqa: F401

        commands["replay"] = [str(bag), "--size", SIZE, "--out", str(tmp_path / "out")]
    except ImportError:
        pass
    for command, args in commands.items():
        assert main([command, *args]) == 2, command
        line = one_error_line(capsys, command)
        assert "several camera topics (/left/image_raw, /right/image_raw); pick one with --topic" in line
    assert main(["eval", *commands["eval"], "--topic", "/right/image_raw", "--frames", "2"]) == 0


def test_what_is_not_a_bag_gets_one_line(tmp_path, capsys):
    (tmp_path / "empty_folder").mkdir()
    (tmp_path / "notes.txt").write_text("not a bag")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "junk_0.mcap").write_bytes(b"\x89MCAP0\r\n garbage")
    (tmp_path / "junk.db3").write_bytes(b"SQLite format 3\x00 but cut")
    for bag, expected in (("empty_folder", "no metadata.yaml, and no .db3 or .mcap file"),
                          ("notes.txt", "not a rosbag2 (a bag is a folder, a .db3 or an .mcap file)"),
                          ("junk", "not a readable rosbag2"), ("junk.db3", "not a readable rosbag2")):
        assert main(["eval", "--bag", str(tmp_path / bag), "--size", SIZE, "--out", str(tmp_path / "e")]) == 2
        assert expected in one_error_line(capsys, "eval")


def test_replay_over_dds_of_a_reindexed_unstamped_bag(flight, tmp_path, capsys):
    pytest.importorskip("rclpy")
    from spatialq_ros.replay_report import read_outputs

    messages = unstamped(flight)
    bag = split_bag(tmp_path / "killed", messages, "sqlite3", parts=2, metadata=False)
    out, report = tmp_path / "out", tmp_path / "report"
    assert main(["replay", str(bag), "--size", SIZE, "--out", str(out), "--report", str(report)]) == 0
    assert "no metadata.yaml; reindexed 2 files (sqlite3) in memory" in capsys.readouterr().err
    r = json.loads((report / "report.json").read_text())
    assert r["frames"]["processed"] == FRAMES and r["matched_by"] == "log time" and r["log_time_frames"] == FRAMES
    assert sorted(read_outputs(out)["/drone/keypoints"]) == log_times(messages)  # sent stamped with log time
    assert "had a zero header stamp" in (report / "report.md").read_text()
    assert "overlay_0.png" in r["pictures"]
