"""The simulated flight: topics, stamps, ground truth, geometry, revisits, hover, determinism, variants."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from spatialq_ros.sim import bag as B
from spatialq_ros.sim.geometry import frame_homography, yaw_of
from spatialq_ros.sim.simulate import FRAME_PERIOD_NS, START_NS, SimConfig, simulate
from spatialq_ros.sim.world import make_world

FRAMES, SIZE, SEED, HOVER = 100, (112, 84), 3, 8


@pytest.fixture(scope="module")
def flight(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim") / "flight"
    simulate(out, SimConfig(frames=FRAMES, size=SIZE, seed=SEED, hover=HOVER), progress=False)
    return out


@pytest.fixture(scope="module")
def data(flight):
    frames = list(B.read_frames(flight))
    return frames, B.read_poses(flight), B.read_camera_matrices(flight), B.read_masks(flight), B.read_places(flight)


def alignment(a: np.ndarray, b: np.ndarray, h: np.ndarray) -> tuple[float, float]:
    """Normalised cross-correlation of frame b with frame a warped by h, over their overlap; and the overlap."""
    ga, gb = (cv2.cvtColor(x, cv2.COLOR_RGB2GRAY).astype(np.float32) for x in (a, b))
    size = (b.shape[1], b.shape[0])
    warped = cv2.warpPerspective(ga, h, size)
    valid = cv2.warpPerspective(np.ones_like(ga), h, size, flags=cv2.INTER_NEAREST) > 0
    valid = cv2.erode(valid.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    x, y = warped[valid] - warped[valid].mean(), gb[valid] - gb[valid].mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum())), float(valid.mean())


def test_topics_types_and_counts_through_anyreader(flight):
    with AnyReader([flight], default_typestore=B.TYPESTORE) as reader:
        topics = {c.topic: (c.msgtype, c.msgcount) for c in reader.connections}
        assert reader.message_count == 5 * FRAMES
    assert topics == {
        B.IMAGE_TOPIC: ("sensor_msgs/msg/Image", FRAMES),
        B.CAMERA_INFO_TOPIC: ("sensor_msgs/msg/CameraInfo", FRAMES),
        B.ODOM_TOPIC: ("nav_msgs/msg/Odometry", FRAMES),
        B.MASK_TOPIC: ("sensor_msgs/msg/Image", FRAMES),
        B.PLACE_TOPIC: ("std_msgs/msg/Header", FRAMES),
    }
    metadata = (flight / "metadata.yaml").read_text()
    assert "version: 8" in metadata and "storage_identifier: mcap" in metadata
    assert (flight / "flight.mcap").is_file()


def test_every_message_of_a_frame_shares_its_stamp(flight):
    expected = [START_NS + i * FRAME_PERIOD_NS for i in range(FRAMES)]
    with AnyReader([flight], default_typestore=B.TYPESTORE) as reader:
        by_topic: dict[str, list[tuple[int, int, str]]] = {}
        for connection, log_ns, raw in reader.messages():
            msg = reader.deserialize(raw, connection.msgtype)
            frame_id = msg.header.frame_id if hasattr(msg, "header") else "-"
            by_topic.setdefault(connection.topic, []).append((B.header_ns(msg), log_ns, frame_id))
    for topic, rows in by_topic.items():
        assert [r[0] for r in rows] == expected, topic
        assert [r[1] for r in rows] == expected, topic  # bag time is the header stamp
    for topic in (B.IMAGE_TOPIC, B.MASK_TOPIC, B.CAMERA_INFO_TOPIC):
        assert {r[2] for r in by_topic[topic]} == {"camera"}
    _, odom = next(B.read_topic(flight, B.ODOM_TOPIC))
    assert odom.header.frame_id == "map" and odom.child_frame_id == "base_link"


def test_images_masks_and_intrinsics_agree_in_size(data):
    frames, _, matrices, masks, _ = data
    width, height = SIZE
    for frame in frames:
        assert frame.rgb.shape == (height, width, 3) and frame.rgb.dtype == np.uint8
        assert masks[frame.stamp_ns].shape == (height, width)
    k = matrices[frames[0].stamp_ns]
    assert all(np.array_equal(m, k) for m in matrices.values())
    assert k[0, 0] == k[1, 1] > 0 and k[0, 2] == (width - 1) / 2 and k[1, 2] == (height - 1) / 2


def test_field_mask_is_binary_and_matches_the_picture(data):
    frames, _, _, masks, _ = data
    stacked = np.stack(list(masks.values()))
    assert set(np.unique(stacked)) == {0, 255}
    assert 0.5 < (stacked == 255).mean() < 0.97
    # hedges, trees and tracks are darker or browner than crops on average: the mask is not noise
    rgb = np.stack([f.rgb for f in frames]).astype(np.float32)
    inside = stacked == 255
    assert abs(rgb[inside].mean() - rgb[~inside].mean()) > 3


def test_consecutive_frames_are_related_by_the_pose_homography(data):
    """Odometry and camera_info describe the pictures: warping by the pose homography aligns the ground."""
    frames, poses, matrices, _, _ = data
    for i in (0, 10, 60):
        a, b = frames[i], frames[i + 1]
        h = frame_homography(poses[a.stamp_ns], poses[b.stamp_ns], matrices[a.stamp_ns])
        ncc, overlap = alignment(a.rgb, b.rgb, h)
        shifted, _ = alignment(a.rgb, b.rgb, np.array([[1, 0, 4], [0, 1, 0], [0, 0, 1.0]]) @ h)
        assert overlap > 0.3 and ncc > 0.9 and ncc > shifted + 0.05, (i, ncc, shifted, overlap)


def test_the_flight_revisits_the_same_ground_from_another_pose(data):
    frames, poses, matrices, _, places = data
    stamps = [f.stamp_ns for f in frames]
    xy = np.array([poses[s][:2] for s in stamps])
    early, late = np.arange(FRAMES // 4), np.arange(3 * FRAMES // 4, FRAMES)
    distance = np.linalg.norm(xy[early][:, None] - xy[late][None], axis=-1)
    i, j = np.unravel_index(np.argmin(distance), distance.shape)
    i, j = early[i], late[j]
    assert distance.min() < 12.0  # metres apart, more than half the flight later
    a, b = poses[stamps[i]], poses[stamps[j]]
    turn = np.angle(np.exp(1j * (yaw_of(b[3:]) - yaw_of(a[3:]))))
    assert abs(b[2] - a[2]) > 2 and abs(turn) > 0.1  # higher and turned: not the same pose again
    assert not np.array_equal(frames[i].rgb, frames[j].rgb)
    ncc, overlap = alignment(frames[i].rgb, frames[j].rgb, frame_homography(a, b, matrices[stamps[i]]))
    assert overlap > 0.5 and ncc > 0.85, (ncc, overlap)
    ids = [places[s] for s in stamps]
    assert set(ids[: FRAMES // 4]) & set(ids[3 * FRAMES // 4:])


def test_hover_holds_still_among_normal_flight(data):
    frames, poses, *_ = data
    xy = np.array([poses[f.stamp_ns][:2] for f in frames])
    steps = np.linalg.norm(np.diff(xy, axis=0), axis=1)
    assert (steps < 0.2).sum() == HOVER and np.median(steps) > 5.0


def test_same_arguments_same_bytes(flight, tmp_path):
    make_world.cache_clear()  # draw the world again, too
    again = tmp_path / "flight"
    simulate(again, SimConfig(frames=FRAMES, size=SIZE, seed=SEED, hover=HOVER), progress=False)
    for name in ("flight.mcap", "metadata.yaml"):
        assert (again / name).read_bytes() == (flight / name).read_bytes()


def test_another_seed_another_flight(flight, tmp_path):
    other = tmp_path / "other"
    simulate(other, SimConfig(frames=2, size=SIZE, seed=SEED + 1), progress=False)
    first = next(B.read_frames(flight)).rgb.astype(np.int16)
    assert np.abs(next(B.read_frames(other)).rgb.astype(np.int16) - first).mean() > 10


def test_compressed_sqlite3_variant_shows_the_same_frames(data, tmp_path):
    frames = data[0]
    out = tmp_path / "c"
    simulate(out, SimConfig(frames=FRAMES, size=SIZE, seed=SEED, hover=HOVER, storage="sqlite3", compressed=True),
             progress=False)
    assert (out / "c.db3").is_file() and "storage_identifier: sqlite3" in (out / "metadata.yaml").read_text()
    with AnyReader([out], default_typestore=B.TYPESTORE) as reader:
        topics = {c.topic: c.msgtype for c in reader.connections}
    assert topics[B.COMPRESSED_TOPIC] == "sensor_msgs/msg/CompressedImage" and B.IMAGE_TOPIC not in topics
    _, msg = next(B.read_topic(out, B.COMPRESSED_TOPIC))
    assert msg.format == "jpeg" and msg.header.frame_id == "camera"
    jpeg = list(B.read_frames(out))
    assert [f.stamp_ns for f in jpeg] == [f.stamp_ns for f in frames]
    errors = [np.abs(j.rgb.astype(np.int16) - f.rgb.astype(np.int16)).mean() for j, f in zip(jpeg, frames)]
    assert max(errors) < 6.0  # the same pictures, through JPEG at quality 90 (small frames, fine texture)
