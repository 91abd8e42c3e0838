"""rosbag2 files through `rosbags`: writing simulated flights and reading frames, poses and ground truth.

Topics of a simulated flight (all messages of one frame share its header stamp):
  /camera/image_raw                sensor_msgs/Image rgb8 (or /camera/image_raw/compressed, jpeg)
  /camera/camera_info              sensor_msgs/CameraInfo
  /odom                            nav_msgs/Odometry, frame `map`, child `base_link`
  /ground_truth/field_mask         sensor_msgs/Image mono8, 255 inside cultivated fields
  /ground_truth/place              std_msgs/Header whose frame_id is `place/<id>` (a 25 m ground cell):
                                   a standard stamped message that carries the id and keeps the stamp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import cv2
import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from ..errors import SpatialqError
from ..frames import BadFrame, decode_any, decode_image

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
ODOM_TOPIC = "/odom"
MASK_TOPIC = "/ground_truth/field_mask"
PLACE_TOPIC = "/ground_truth/place"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
T = TYPESTORE.types


def stamp(ns: int) -> Any:
    return T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def header(ns: int, frame_id: str) -> Any:
    return T["std_msgs/msg/Header"](stamp=stamp(ns), frame_id=frame_id)


def image_msg(ns: int, frame_id: str, pixels: np.ndarray) -> Any:
    encoding = "rgb8" if pixels.ndim == 3 else "mono8"
    h, w = pixels.shape[:2]
    step = w * (3 if pixels.ndim == 3 else 1)
    return T["sensor_msgs/msg/Image"](header=header(ns, frame_id), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=step, data=np.ascontiguousarray(pixels).reshape(-1))


def compressed_msg(ns: int, frame_id: str, rgb: np.ndarray, quality: int = 90) -> Any:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok
    return T["sensor_msgs/msg/CompressedImage"](header=header(ns, frame_id), format="jpeg",
                                                data=data.reshape(-1))


class BagWriter:
    """Typed convenience over rosbags' Writer (rosbag2 version 8, which ROS 2 Humble plays)."""

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        plugin = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}[storage]
        self._writer = Writer(path, version=8, storage_plugin=plugin)
        self._connections: dict[str, Any] = {}

    def __enter__(self) -> "BagWriter":
        self._writer.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self._writer.close()

    def write(self, topic: str, msg: Any, ns: int) -> None:
        msgtype = msg.__msgtype__
        if topic not in self._connections:
            self._connections[topic] = self._writer.add_connection(topic, msgtype, typestore=TYPESTORE)
        self._writer.write(self._connections[topic], ns, TYPESTORE.serialize_cdr(msg, msgtype))


@dataclass
class Frame:
    stamp_ns: int
    rgb: np.ndarray
    frame_id: str


def header_ns(msg: Any) -> int:
    t = msg.header.stamp if hasattr(msg, "header") else msg.stamp
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def open_reader(bag: str | Path) -> AnyReader:
    path = Path(bag)
    if not path.exists():
        raise SpatialqError(f"{path}: no such bag")
    try:
        reader = AnyReader([path], default_typestore=TYPESTORE)
        reader.open()
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise SpatialqError(f"{path}: not a readable rosbag2 ({exc})") from None
    return reader


def image_topics(reader: AnyReader) -> list[str]:
    return sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})


def choose_image_topic(reader: AnyReader, bag: Path, topic: str | None) -> str:
    topics = image_topics(reader)
    if topic is None:
        preferred = [t for t in (IMAGE_TOPIC, COMPRESSED_TOPIC) if t in topics]
        camera = [t for t in topics if not t.startswith("/ground_truth")]
        if not (preferred or camera):
            raise SpatialqError(f"{bag}: no image topics in bag")
        return (preferred or camera)[0]
    if topic not in topics:
        present = ", ".join(topics) or "none"
        raise SpatialqError(f"{bag}: topic {topic} is not an image topic of this bag (image topics: {present})")
    return topic


def read_frames(bag: str | Path, topic: str | None = None, skip_bad: bool = False) -> Iterator[Frame]:
    """(stamp, RGB) of every frame on `topic` (default: the camera topic), in bag order."""
    reader = open_reader(bag)
    try:
        chosen = choose_image_topic(reader, Path(bag), topic)
        connections = [c for c in reader.connections if c.topic == chosen]
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            try:
                yield Frame(header_ns(msg), decode_any(msg), msg.header.frame_id)
            except BadFrame as exc:
                if not skip_bad:
                    raise SpatialqError(f"{bag}: bad frame on {chosen} at {header_ns(msg)} ns ({exc})") from None
    finally:
        reader.close()


def read_topic(bag: str | Path, topic: str) -> Iterator[tuple[int, Any]]:
    """(header stamp, message) of every message on a topic."""
    reader = open_reader(bag)
    try:
        connections = [c for c in reader.connections if c.topic == topic]
        if not connections:
            raise SpatialqError(f"{bag}: topic {topic} not in bag")
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            yield header_ns(msg), msg
    finally:
        reader.close()


def read_poses(bag: str | Path, topic: str = ODOM_TOPIC) -> dict[int, np.ndarray]:
    """stamp -> (x, y, z, qx, qy, qz, qw) from nav_msgs/Odometry or PoseStamped-like messages."""
    poses = {}
    for ns, msg in read_topic(bag, topic):
        pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
        p, q = pose.position, pose.orientation
        poses[ns] = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
    return poses


def read_masks(bag: str | Path, topic: str = MASK_TOPIC) -> dict[int, np.ndarray]:
    return {ns: decode_image(msg)[..., 0] for ns, msg in read_topic(bag, topic)}


def read_places(bag: str | Path, topic: str = PLACE_TOPIC) -> dict[int, int]:
    return {ns: int(msg.frame_id.split("/", 1)[1]) for ns, msg in read_topic(bag, topic)}
