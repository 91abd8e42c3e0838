"""Bag readers on hand-made bags: encodings and row padding, and a clear error for every unusable input."""

from __future__ import annotations

import numpy as np
import pytest
from rosbags.rosbag2 import StoragePlugin, Writer

from spatialq_ros.errors import SpatialqError
from spatialq_ros.sim import bag as B
from spatialq_ros.sim import messages as M

NS = 1_700_000_000_000_000_000
RGB = np.random.default_rng(0).integers(0, 256, (6, 10, 3), dtype=np.uint8)
RAMPS = np.stack(np.broadcast_arrays(np.linspace(40, 220, 32)[None, :], np.linspace(200, 60, 24)[:, None],
                                     np.full((24, 32), 90.0)), axis=-1).astype(np.uint8)  # smooth, channels differ


def raw_image(encoding: str, pixels: np.ndarray, pad: int = 0, frame_id: str = "camera"):
    """An Image with `pad` bytes of padding at the end of every row."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    padded = np.concatenate([rows, np.full((h, pad), 77, np.uint8)], axis=1)
    return M.T["sensor_msgs/msg/Image"](header=M.header(NS, frame_id), height=h, width=w, encoding=encoding,
                                        is_bigendian=0, step=padded.shape[1], data=padded.reshape(-1))


def write_bag(path, messages: dict[str, list]) -> None:
    with B.BagWriter(path, "mcap") as writer:
        for topic, msgs in messages.items():
            for i, msg in enumerate(msgs):
                writer.write(topic, msg, NS + i)


def test_image_encodings_and_row_padding_decode_to_rgb(tmp_path):
    grey = RGB[..., 1]
    write_bag(tmp_path / "b", {
        "/rgb": [raw_image("rgb8", RGB, pad=2)],
        "/bgr": [raw_image("bgr8", RGB[..., ::-1].copy(), pad=6)],
        "/mono": [raw_image("mono8", grey, pad=3)],
        "/jpeg": [M.compressed_msg(NS, "camera", RAMPS, quality=95)],
    })
    for topic in ("/rgb", "/bgr"):
        (frame,) = B.read_frames(tmp_path / "b", topic)
        assert np.array_equal(frame.rgb, RGB) and frame.stamp_ns == NS and frame.frame_id == "camera"
    (mono,) = B.read_frames(tmp_path / "b", "/mono")
    assert np.array_equal(mono.rgb, np.repeat(grey[..., None], 3, axis=2))
    (jpeg,) = B.read_frames(tmp_path / "b", "/jpeg")
    assert jpeg.rgb.shape == RAMPS.shape and np.abs(jpeg.rgb.astype(int) - RAMPS).mean() < 3  # and not BGR


def test_default_topic_is_the_camera_not_the_ground_truth(tmp_path):
    write_bag(tmp_path / "b", {B.MASK_TOPIC: [raw_image("mono8", RGB[..., 0])],
                               B.COMPRESSED_TOPIC: [M.compressed_msg(NS, "camera", RGB)]})
    (frame,) = B.read_frames(tmp_path / "b")
    assert frame.rgb.shape == RGB.shape
    write_bag(tmp_path / "gt", {B.MASK_TOPIC: [raw_image("mono8", RGB[..., 0])]})
    with pytest.raises(SpatialqError, match=r"no camera image topics in bag \(image topics: /ground_truth/field_mask\)"):
        B.read_frames(tmp_path / "gt")


def test_wrong_topics_name_what_the_bag_has(tmp_path):
    write_bag(tmp_path / "b", {"/cam": [raw_image("rgb8", RGB)], "/other": [M.header(NS, "place/1")]})
    with pytest.raises(SpatialqError, match=r"/front is not an image topic of this bag \(image topics: /cam\)"):
        B.read_frames(tmp_path / "b", "/front")  # fails at the call, before iteration
    with pytest.raises(SpatialqError, match="image topics: /cam"):
        B.read_frames(tmp_path / "b", "/other")
    with pytest.raises(SpatialqError, match=r"topic /odom not in bag \(topics: /cam, /other\)"):
        B.read_poses(tmp_path / "b")


def test_empty_bag_and_topic_without_messages(tmp_path):
    empty = Writer(tmp_path / "empty", version=8, storage_plugin=StoragePlugin.MCAP)
    with empty:
        empty.add_connection("/cam", "sensor_msgs/msg/Image", typestore=M.TYPESTORE)
    with pytest.raises(SpatialqError, match="empty bag"):
        B.read_frames(tmp_path / "empty")
    partial = Writer(tmp_path / "partial", version=8, storage_plugin=StoragePlugin.MCAP)
    with partial:
        partial.add_connection("/cam", "sensor_msgs/msg/Image", typestore=M.TYPESTORE)
        places = partial.add_connection(B.PLACE_TOPIC, "std_msgs/msg/Header", typestore=M.TYPESTORE)
        partial.write(places, NS, M.TYPESTORE.serialize_cdr(M.place(NS, 7), "std_msgs/msg/Header"))
    with pytest.raises(SpatialqError, match="topic /cam has no messages"):
        B.read_frames(tmp_path / "partial", "/cam")
    assert B.read_places(tmp_path / "partial") == {NS: 7}


def test_missing_or_unreadable_bags(tmp_path):
    with pytest.raises(SpatialqError, match="no such bag"):
        B.read_frames(tmp_path / "missing")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "metadata.yaml").write_text("not: [a bag")
    with pytest.raises(SpatialqError, match="not a readable rosbag2"):
        B.read_masks(tmp_path / "junk")


def test_bad_frames_are_named_or_skipped(tmp_path):
    broken = raw_image("rgb8", RGB)
    broken.data = broken.data[:-5]  # truncated
    write_bag(tmp_path / "b", {"/cam": [raw_image("rgb8", RGB), broken, raw_image("rgb8", RGB)],
                               "/place": [M.header(NS, "somewhere")]})
    with pytest.raises(SpatialqError, match=r"bad frame on /cam at stamp \d+ ns \(truncated"):
        list(B.read_frames(tmp_path / "b", "/cam"))
    assert len(list(B.read_frames(tmp_path / "b", "/cam", skip_bad=True))) == 2
    with pytest.raises(SpatialqError, match="not place/<id>"):
        B.read_places(tmp_path / "b", "/place")
