"""rosbag2 files through `rosbags`: writing simulated flights, and reading frames, poses and ground truth
back for the commands that consume them (calibrate, build-map, train-field-head, eval, replay, demo).

Reading takes bags as real recorders leave them (`open_bag`): a folder with or without metadata.yaml, in
one file or split into several, a bare .db3 or .mcap, an mcap cut short by a killed recorder, and the type
names of ROS 2 Crystal/Dashing. Messages are keyed by header stamp, or by the bag's log (receive) time where
the recorder left the stamp zero; every way a bag can be unusable is a one-line SpatialqError. Readers
stream: a long flight never sits in memory.
"""

from __future__ import annotations

import re
import struct
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, Collection, Iterable, Iterator

import numpy as np
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader, StoragePlugin, Writer
from rosbags.rosbag2.errors import ReaderError
from rosbags.rosbag2.storage_mcap import McapReader

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
STORAGE_SUFFIXES = {".db3": "sqlite3", ".mcap": "mcap"}  # a storage file's suffix -> rosbag2 storage plugin
MCAP_MAGIC = b"\x89MCAP0\r\n"


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
    stamp_ns: int  # header stamp, or the log time where the header stamp is zero (`log_time`)
    rgb: np.ndarray  # (H, W, 3) uint8
    frame_id: str
    log_time: bool = False


@dataclass(frozen=True)
class Topic:
    msgtype: str  # pkg/msg/Name, whatever the recorder's ROS 2 called it
    count: int  # messages, over all of the bag's files
    connections: tuple


def ros2_type(name: str) -> str:
    """`sensor_msgs/Image` (bags of ROS 2 Crystal/Dashing) -> `sensor_msgs/msg/Image`; later names unchanged."""
    package, _, rest = name.partition("/")
    return f"{package}/msg/{rest}" if rest and "/" not in rest else name


class Bag:
    """An open bag: its topics, with type names normalised and counts summed over its files, and its
    messages in log order."""

    def __init__(self, path: Path, reader: AnyReader) -> None:
        self.path = path
        self._reader = reader
        self.topics: dict[str, Topic] = {}
        for c in reader.connections:
            seen = self.topics.get(c.topic, Topic(ros2_type(c.msgtype), 0, ()))
            self.topics[c.topic] = Topic(seen.msgtype, seen.count + c.msgcount, (*seen.connections, c))

    @property
    def message_count(self) -> int:
        return sum(t.count for t in self.topics.values())

    def messages(self, topics: Iterable[str]) -> Iterator[tuple[str, int, bytes]]:
        """(topic, log ns, raw CDR) of every message on these topics, in log order."""
        connections = [c for name in topics if name in self.topics for c in self.topics[name].connections]
        if not connections:
            return
        try:
            for connection, log_ns, raw in self._reader.messages(connections=connections):
                yield connection.topic, log_ns, raw
        except ReaderError as exc:
            raise SpatialqError(f"{self.path}: unreadable past this point ({exc})") from None

    def deserialize(self, raw: bytes, topic: str) -> Any:
        msgtype = self.topics[topic].msgtype
        try:
            return self._reader.deserialize(raw, msgtype)
        except Exception as exc:  # rosbags raises several types for bytes that are not the type
            raise SpatialqError(f"{self.path}: a {msgtype} message on {topic} does not decode ({exc})") from None


class _KilledMcap(McapReader):
    """rosbags' mcap reader; for a file with no footer (its recorder was killed) it reads the records that
    are complete, up to the first one cut short, as `ros2 bag reindex` would."""

    recovered: tuple[int, int] | None = None  # (messages read, bytes ignored after the last complete record)

    def _open(self) -> None:
        assert self.bio
        size = self.bio.seek(0, 2)
        self.bio.seek(max(size - 8, 0))
        if size < 8 + 9 + 37 or self.bio.read(8) != MCAP_MAGIC:
            self._open_unfinished(size)
        else:
            self.bio.seek(0)
            super()._open()

    def _open_unfinished(self, size: int) -> None:
        bio = self.bio
        bio.seek(0)
        if bio.read(8) != MCAP_MAGIC or bio.read(1) != b"\x01":
            raise ReaderError("not an mcap file (no mcap magic and header)")
        header_length = struct.unpack("<Q", bio.read(8))[0]
        bio.seek(header_length, 1)
        self.data_start = position = bio.tell()
        data_end_record = False
        while position + 9 <= size:  # opcode, length, body
            bio.seek(position)
            opcode, length = struct.unpack("<BQ", bio.read(9))
            data_end_record = opcode == 0x0F
            if opcode == 0x00 or data_end_record or position + 9 + length > size:  # not a record, or cut short
                break
            position += 9 + length
        self.data_end = position
        self.meta_scan()
        stats = self.statistics
        counts = stats.channel_message_counts
        self.connections = [c._replace(msgcount=counts.get(c.id, 0)) for c in self.connections]
        count = stats.message_count
        self.metadata = self.metadata._replace(
            duration=stats.end_time - stats.start_time + 1 if count else 0,
            start_time=stats.start_time if count else 2**63 - 1,
            end_time=stats.end_time + 1 if count else 0, message_count=count)
        self.recovered = (count, 0 if data_end_record else size - position)


class _Reader(Reader):
    STORAGE_PLUGINS = {**Reader.STORAGE_PLUGINS, ".mcap": _KilledMcap}


class _AnyReader(AnyReader):
    """AnyReader over one rosbag2 folder or over storage files, read with `_KilledMcap` for mcap files."""

    def __init__(self, paths: list[Path]) -> None:
        super().__init__(paths, default_typestore=TYPESTORE)
        self.readers = [_Reader(p) for p in paths]


_NOTICES: set[str] = set()


def notice(line: str) -> None:
    """Say once per process what was done to read a bag (a command opens it several times)."""
    if line not in _NOTICES:
        _NOTICES.add(line)
        print(f"BAG: {line}", file=sys.stderr)


def storage_files(path: Path) -> tuple[list[Path], str | None]:
    """What rosbags is handed for `path`: the folder when its metadata.yaml lists every storage file in it,
    else those files in split order (their metadata rebuilt in memory, never written into the user's
    folder), with the notice that says so."""
    if not path.exists():
        raise SpatialqError(f"{path}: no such bag")
    if path.is_file():
        if path.suffix not in STORAGE_SUFFIXES:
            raise SpatialqError(f"{path}: not a rosbag2 (a bag is a folder, a .db3 or an .mcap file)")
        return [path], None
    if not (path / "metadata.yaml").exists():
        return _reindexed(path, "no metadata.yaml")
    listed = _listed_files(path / "metadata.yaml")
    present = [p.name for p in _storage_files(path)]
    if listed is not None and set(present) - listed:  # newer recorders rewrite it at each split: killed after one
        return _reindexed(path, f"metadata.yaml lists {len(listed & set(present))} of its {len(present)} files")
    return [path], None


def _storage_files(folder: Path) -> list[Path]:
    return sorted((p for p in folder.iterdir() if p.suffix in STORAGE_SUFFIXES and p.is_file()), key=_split_order)


def _reindexed(folder: Path, why: str) -> tuple[list[Path], str]:
    files = _storage_files(folder)
    if not files:
        raise SpatialqError(f"{folder}: not a rosbag2 ({why}, and no .db3 or .mcap file)")
    kinds = ", ".join(sorted({STORAGE_SUFFIXES[p.suffix] for p in files}))
    plural = "s" if len(files) > 1 else ""
    return files, f"{folder}: {why}; reindexed {len(files)} file{plural} ({kinds}) in memory"


def _listed_files(metadata: Path) -> set[str] | None:
    """The storage files a metadata.yaml names; None when it cannot tell (rosbags then says what is wrong)."""
    import yaml

    try:
        info = yaml.safe_load(metadata.read_text())["rosbag2_bagfile_information"]
        return {PurePath(name).name for name in info["relative_file_paths"]}
    except Exception:  # unreadable or not rosbag2 metadata: left to rosbags' own error
        return None


def _split_order(path: Path) -> list:
    """flight_2.db3 before flight_10.db3."""
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def _open_reader(path: Path) -> tuple[AnyReader, str | None]:
    """The opened reader, and the notice of what had to be rebuilt; a folder whose metadata.yaml rosbags
    cannot use (a killed recorder's) is reindexed from its storage files."""
    if path.name == "metadata.yaml":
        path = path.parent
    files, reindexed = storage_files(path)
    while True:
        try:
            reader = _AnyReader(files)
            reader.open()
            return reader, reindexed
        except Exception as exc:  # rosbags raises several types for unreadable bags
            failure = exc
        if files != [path] or not path.is_dir() or not _storage_files(path):
            raise SpatialqError(f"{path}: not a readable rosbag2 ({failure})") from None
        files, reindexed = _reindexed(path, f"metadata.yaml unusable ({failure})")  # tried once: files != [path]


@contextmanager
def open_bag(bag: str | Path) -> Iterator[Bag]:
    path = Path(bag)
    reader, reindexed = _open_reader(path)
    try:
        if reindexed:
            notice(reindexed)
        for part in reader.readers:
            if getattr(part.storage, "recovered", None):
                count, cut = part.storage.recovered
                notice(f"{part.path}: mcap without footer (recorder killed?); read its {count} complete messages"
                       + (f", ignored a last record cut short ({cut} bytes)" if cut else ""))
        opened = Bag(path, reader)
        if opened.message_count == 0:
            raise SpatialqError(f"{path}: empty bag (no messages)")
        yield opened
    finally:
        reader.close()


def header_ns(msg: Any) -> int:
    t = msg.header.stamp if hasattr(msg, "header") else msg.stamp
    return int(t.sec) * 1_000_000_000 + int(t.nanosec)


def _messages(bag: Path, topic: str) -> Iterator[tuple[int, Any, bool]]:
    """(key ns, message, keyed by log time) of every message on a topic. The key is the header stamp, or the
    log time where the stamp is zero (many drivers of early ROS 2 never set it): what frames are matched by,
    to poses, masks and each other."""
    with open_bag(bag) as opened:
        for _, log_ns, raw in opened.messages([topic]):
            msg = opened.deserialize(raw, topic)
            stamp = header_ns(msg) if hasattr(msg, "header") or hasattr(msg, "stamp") else 0
            yield (stamp, msg, False) if stamp else (log_ns, msg, True)


def read_frames(bag: str | Path, topic: str | None = None, skip_bad: bool = False,
                only: Collection[int] | None = None) -> Iterator[Frame]:
    """Every frame on `topic` (default: the camera topic) as RGB, in bag order; with `only`, just the frames
    with those stamps (the others are not decoded).

    The bag and topic are checked before this returns, so a wrong path or topic fails at the call.
    Image messages are decoded honouring encoding and step; CompressedImage by its data.
    """
    with open_bag(bag) as opened:
        chosen = camera_topic(opened, topic)
    return _frames(Path(bag), chosen, skip_bad, only)


def _frames(bag: Path, topic: str, skip_bad: bool, only: Collection[int] | None) -> Iterator[Frame]:
    for ns, msg, log_time in _messages(bag, topic):
        if only is not None and ns not in only:
            continue
        try:
            yield Frame(ns, decode_any(msg), msg.header.frame_id, log_time)
        except BadFrame as exc:
            if not skip_bad:
                raise SpatialqError(f"{bag}: bad frame on {topic} at stamp {ns} ns ({exc})") from None


def bag_topics(bag: str | Path) -> dict[str, Topic]:
    with open_bag(bag) as opened:
        return dict(opened.topics)


def read_topic(bag: str | Path, topic: str) -> Iterator[tuple[int, Any]]:
    """(stamp, message) of every message on a topic, in bag order; the stamp as `_messages` keys it."""
    with open_bag(bag) as opened:
        _check_topic(opened, topic)
    return ((ns, msg) for ns, msg, _ in _messages(Path(bag), topic))


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


def iter_masks(bag: str | Path, topic: str = MASK_TOPIC) -> Iterator[tuple[int, np.ndarray]]:
    """(stamp, (H, W) uint8 mask: the first channel of whatever encoding the mask has), in bag order."""
    for ns, msg in read_topic(bag, topic):
        try:
            yield ns, decode_image(msg)[..., 0]
        except BadFrame as exc:
            raise SpatialqError(f"{bag}: bad mask on {topic} at stamp {ns} ns ({exc})") from None


def read_masks(bag: str | Path, topic: str = MASK_TOPIC, keep: Collection[int] | None = None) -> dict[int, np.ndarray]:
    """stamp -> mask, for every mask or only those with a stamp in `keep` (a long flight's masks fill memory)."""
    return {ns: mask for ns, mask in iter_masks(bag, topic) if keep is None or ns in keep}


def read_places(bag: str | Path, topic: str = PLACE_TOPIC) -> dict[int, int]:
    """stamp -> place id, from std_msgs/Header messages whose frame_id is `place/<id>`."""
    places = {}
    for ns, msg in read_topic(bag, topic):
        prefix, _, number = msg.frame_id.partition("/")
        if prefix != "place" or not number.lstrip("-").isdigit():
            raise SpatialqError(f"{bag}: {topic} at stamp {ns} ns has frame_id {msg.frame_id!r}, not place/<id>")
        places[ns] = int(number)
    return places


def join_by_stamp(left: Iterable[tuple[int, Any]], right: Iterable[tuple[int, Any]],
                  window: int = 64) -> Iterator[tuple[int, Any, Any]]:
    """(stamp, left item, right item with that stamp or None) for every item of `left`. Both streams come in bag
    order, so `right` is read only as far as the current stamp and at most `window` of its items are held:
    frames meet their masks without a flight's masks in memory."""
    ahead: dict[int, Any] = {}
    pending = iter(right)
    newest = None
    for stamp, item in left:
        while newest is None or newest <= stamp:
            following = next(pending, None)
            if following is None:
                break
            newest = following[0]
            ahead[newest] = following[1]
            if len(ahead) > window:
                ahead.pop(next(iter(ahead)))
        yield stamp, item, ahead.pop(stamp, None)


def _check_topic(bag: Bag, topic: str) -> None:
    if topic not in bag.topics:
        raise SpatialqError(f"{bag.path}: topic {topic} not in bag (topics: {', '.join(sorted(bag.topics)) or 'none'})")
    if bag.topics[topic].count == 0:
        raise SpatialqError(f"{bag.path}: topic {topic} has no messages")


def camera_topic(bag: Bag, topic: str | None) -> str:
    """`topic`, checked; or the bag's one camera (raw, compressed or both: then raw) when none is given."""
    topics = sorted(t for t, info in bag.topics.items() if info.msgtype in IMAGE_TYPES)
    if topic is None:
        cameras = [t for t in topics if not t.startswith("/ground_truth")]
        if not cameras:
            raise SpatialqError(f"{bag.path}: no camera image topics in bag "
                                f"(image topics: {', '.join(topics) or 'none'})")
        if len({t.removesuffix("/compressed") for t in cameras}) > 1:
            raise SpatialqError(f"{bag.path}: several camera topics ({', '.join(cameras)}); pick one with --topic "
                                "(the calibration node: bag_topic)")
        topic = min(cameras, key=len)
    elif topic not in topics:
        raise SpatialqError(f"{bag.path}: topic {topic} is not an image topic of this bag "
                            f"(image topics: {', '.join(topics) or 'none'})")
    _check_topic(bag, topic)
    return topic
