"""rosbag2 files through `rosbags`: writing simulated flights, and reading frames, poses and ground truth
back for the commands that consume them (calibrate, build-map, eval, demo).

Topics of a simulated flight are listed in `simulate.py`; every reader here returns data keyed or
ordered by header stamp, and turns every way a bag can be unusable into a one-line SpatialqError.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import StoragePlugin, Writer

from ..errors import SpatialqError
from ..frames import BadFrame, decode_any, decode_image
from .messages import TYPESTORE

IMAGE_TOPIC = "/camera/image_raw"
COMPRESSED_TOPIC = "/camera/image_raw/compressed"
CAMERA_INFO_TOPIC = "/camera/camera_info"
ODOM_TOPIC = "/odom"
MASK_TOPIC = "/ground_truth/field_mask"
PLACE_TOPIC = "/ground_truth/place"
IMAGE_TYPES = ("sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage")
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


class BagWriter:
    """Typed convenience over rosbags' Writer; rosbag2 format version 8, which ROS 2 Humble plays."""

    def __init__(self, path: Path, storage: str = "mcap") -> None:
        self._writer = Writer(path, version=8, storage_plugin=STORAGES[storage])
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


@dataclass(frozen=True)
class Frame:
    stamp_ns: int  # header stamp
    rgb: np.ndarray  # (H, W, 3) uint8
    frame_id: str


def header_ns(msg: Any) -> int:
    t = msg.header.stamp if hasattr(msg, "header") else msg.stamp
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def read_frames(bag: str | Path, topic: str | None = None, skip_bad: bool = False) -> Iterator[Frame]:
    """Every frame on `topic` (default: the camera topic) as RGB, in bag order.

    The bag and topic are checked before this returns, so a wrong path or topic fails at the call.
    Image messages are decoded honouring encoding and step; CompressedImage by its data.
    """
    with open_bag(bag) as reader:
        chosen = camera_topic(reader, Path(bag), topic)
    return _frames(Path(bag), chosen, skip_bad)


def _frames(bag: Path, topic: str, skip_bad: bool) -> Iterator[Frame]:
    for ns, msg in _messages(bag, topic):
        try:
            yield Frame(ns, decode_any(msg), msg.header.frame_id)
        except BadFrame as exc:
            if not skip_bad:
                raise SpatialqError(f"{bag}: bad frame on {topic} at stamp {ns} ns ({exc})") from None


def read_topic(bag: str | Path, topic: str) -> Iterator[tuple[int, Any]]:
    """(header stamp, message) of every message on a topic, in bag order."""
    with open_bag(bag) as reader:
        _check_topic(reader, Path(bag), topic)
    return _messages(Path(bag), topic)


def read_poses(bag: str | Path, topic: str = ODOM_TOPIC) -> dict[int, np.ndarray]:
    """stamp -> (x, y, z, qx, qy, qz, qw) from nav_msgs/Odometry or PoseStamped-like messages."""
    poses = {}
    for ns, msg in read_topic(bag, topic):
        pose = msg.pose.pose if hasattr(msg.pose, "pose") else msg.pose
        p, q = pose.position, pose.orientation
        poses[ns] = np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])
    return poses


def read_camera_matrices(bag: str | Path, topic: str = CAMERA_INFO_TOPIC) -> dict[int, np.ndarray]:
    """stamp -> 3x3 camera matrix K from sensor_msgs/CameraInfo."""
    return {ns: np.asarray(msg.k, np.float64).reshape(3, 3) for ns, msg in read_topic(bag, topic)}


def read_masks(bag: str | Path, topic: str = MASK_TOPIC) -> dict[int, np.ndarray]:
    """stamp -> (H, W) uint8 mask (first channel of whatever encoding the mask has)."""
    masks = {}
    for ns, msg in read_topic(bag, topic):
        try:
            masks[ns] = decode_image(msg)[..., 0]
        except BadFrame as exc:
            raise SpatialqError(f"{bag}: bad mask on {topic} at stamp {ns} ns ({exc})") from None
    return masks


def read_places(bag: str | Path, topic: str = PLACE_TOPIC) -> dict[int, int]:
    """stamp -> place id, from std_msgs/Header messages whose frame_id is `place/<id>`."""
    places = {}
    for ns, msg in read_topic(bag, topic):
        prefix, _, number = msg.frame_id.partition("/")
        if prefix != "place" or not number.lstrip("-").isdigit():
            raise SpatialqError(f"{bag}: {topic} at stamp {ns} ns has frame_id {msg.frame_id!r}, not place/<id>")
        places[ns] = int(number)
    return places


@contextmanager
def open_bag(bag: str | Path) -> Iterator[AnyReader]:
    path = Path(bag)
    if not path.exists():
        raise SpatialqError(f"{path}: no such bag")
    try:
        reader = AnyReader([path], default_typestore=TYPESTORE)  # a folder without metadata fails already here
        reader.open()
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise SpatialqError(f"{path}: not a readable rosbag2 ({exc})") from None
    try:
        if reader.message_count == 0:
            raise SpatialqError(f"{path}: empty bag (no messages)")
        yield reader
    finally:
        reader.close()


def _messages(bag: Path, topic: str) -> Iterator[tuple[int, Any]]:
    with open_bag(bag) as reader:
        connections = [c for c in reader.connections if c.topic == topic]
        for connection, _, raw in reader.messages(connections=connections):
            msg = reader.deserialize(raw, connection.msgtype)
            yield header_ns(msg), msg


def _check_topic(reader: AnyReader, bag: Path, topic: str) -> None:
    counts = {c.topic: c.msgcount for c in reader.connections}
    if topic not in counts:
        raise SpatialqError(f"{bag}: topic {topic} not in bag (topics: {', '.join(sorted(counts)) or 'none'})")
    if counts[topic] == 0:
        raise SpatialqError(f"{bag}: topic {topic} has no messages")


def camera_topic(reader: AnyReader, bag: Path, topic: str | None) -> str:
    topics = sorted({c.topic for c in reader.connections if c.msgtype in IMAGE_TYPES})
    if topic is None:
        preferred = [t for t in (IMAGE_TOPIC, COMPRESSED_TOPIC) if t in topics]
        camera = [t for t in topics if not t.startswith("/ground_truth")]
        if not (preferred or camera):
            raise SpatialqError(f"{bag}: no camera image topics in bag (image topics: {', '.join(topics) or 'none'})")
        topic = (preferred or camera)[0]
    elif topic not in topics:
        raise SpatialqError(f"{bag}: topic {topic} is not an image topic of this bag "
                            f"(image topics: {', '.join(topics) or 'none'})")
    _check_topic(reader, bag, topic)
    return topic
