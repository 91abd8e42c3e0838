"""The simulated flight: topics, stamps, ground truth, revisits, determinism, and bad inputs."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from spatialq_ros.cli import main
from spatialq_ros.errors import SpatialqError
from spatialq_ros.sim import bag as B
from spatialq_ros.sim.simulate import SimConfig, simulate


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "flight"
    simulate(out, SimConfig(frames=60, size=(112, 84), seed=3, hover=6), progress=False)
    return out


def test_topics_types_and_counts(flight):
    with AnyReader([flight], default_typestore=B.TYPESTORE) as reader:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
    assert topics == {
        B.IMAGE_TOPIC: ("sensor_msgs/msg/Image", 60),
        B.CAMERA_INFO_TOPIC: ("sensor_msgs/msg/CameraInfo", 60),
        B.ODOM_TOPIC: ("nav_msgs/msg/Odometry", 60),
        B.MASK_TOPIC: ("sensor_msgs/msg/Image", 60),
        B.PLACE_TOPIC: ("std_msgs/msg/Header", 60),
    }
    assert "version: 8" in (flight / "metadata.yaml").read_text()


def test_every_frame_shares_its_stamp_with_its_ground_truth(flight):
    frames = list(B.read_frames(flight))
    stamps = [f.stamp_ns for f in frames]
    assert stamps == sorted(stamps) and len(set(stamps)) == 60
    assert set(B.read_masks(flight)) == set(stamps) == set(B.read_poses(flight)) == set(B.read_places(flight))
    assert frames[0].rgb.shape == (84, 112, 3) and frames[0].frame_id == "camera"
    _, odom = next(B.read_topic(flight, B.ODOM_TOPIC))
    assert odom.header.frame_id == "map" and odom.child_frame_id == "base_link"


def test_field_mask_is_binary_and_mixed(flight):
    masks = np.stack(list(B.read_masks(flight).values()))
    assert set(np.unique(masks)) == {0, 255}
    assert 0.5 < (masks == 255).mean() < 0.98


def test_path_revisits_earlier_places_and_hovers(flight):
    poses = B.read_poses(flight)
    xy = np.array([p[:2] for _, p in sorted(poses.items())])
    late, early = xy[-8:], xy[:10]
    distances = np.linalg.norm(late[:, None] - early[None], axis=-1)
    assert distances.min() < 25.0  # metres: the end of the flight comes back over the start
    places = [p for _, p in sorted(B.read_places(flight).items())]
    assert set(places[-8:]) & set(places[:10])
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    assert (steps < 0.5).sum() >= 5 and np.median(steps) > 2.0  # a hover among normal flight


def test_same_seed_same_bytes_other_seed_other_world(tmp_path):
    def digest(out, seed):
        simulate(out, SimConfig(frames=3, size=(56, 56), seed=seed), progress=False)
        return hashlib.sha256(b"".join(f.rgb.tobytes() for f in B.read_frames(out))).hexdigest()

    assert digest(tmp_path / "a", 1) == digest(tmp_path / "b", 1) != digest(tmp_path / "c", 2)


def test_compressed_sqlite3_variant(tmp_path):
    out = tmp_path / "c"
    simulate(out, SimConfig(frames=4, size=(70, 56), seed=0, storage="sqlite3", compressed=True), progress=False)
    assert list(out.glob("*.db3"))
    frames = list(B.read_frames(out))
    assert len(frames) == 4 and frames[0].rgb.shape == (56, 70, 3)
    with AnyReader([out], default_typestore=B.TYPESTORE) as reader:
        assert {c.topic for c in reader.connections} >= {B.COMPRESSED_TOPIC}


def test_cli_writes_bag_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "flight"
    assert main(["sim", "--out", str(out), "--frames", "2", "--size", "56x42"]) == 0
    before = sorted(p.name for p in out.iterdir())
    assert main(["sim", "--out", str(out), "--frames", "2", "--size", "56x42"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == before
    assert main(["sim", "--out", str(out), "--frames", "3", "--size", "56x42", "--force"]) == 0
    assert len(list(B.read_frames(out))) == 3


@pytest.mark.parametrize("args, message", [
    (["--size", "448"], "expected WxH"),
    (["--size", "0x448"], "expected WxH"),
    (["--frames", "0"], "at least 1 frame"),
    (["--hover", "5", "--frames", "5"], "--hover"),
])
def test_cli_bad_arguments_are_one_line(tmp_path, capsys, args, message):
    assert main(["sim", "--out", str(tmp_path / "x"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not (tmp_path / "x").exists() and list(tmp_path.iterdir()) == []


def test_cli_missing_output_folder(tmp_path, capsys):
    assert main(["sim", "--out", str(tmp_path / "no" / "x"), "--frames", "1"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_readers_explain_missing_topics_and_bags(flight, tmp_path):
    with pytest.raises(SpatialqError, match="image topics: /camera/image_raw, /ground_truth/field_mask"):
        next(B.read_frames(flight, topic="/front/image"))
    with pytest.raises(SpatialqError, match="no such bag"):
        next(B.read_frames(tmp_path / "missing"))
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: [a bag")
    with pytest.raises(SpatialqError, match="not a readable rosbag2"):
        next(B.read_frames(tmp_path / "junk"))
    with pytest.raises(SpatialqError, match="not in bag"):
        B.read_poses(flight, topic="/gps")
