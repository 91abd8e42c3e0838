"""Bag replay over real DDS: a player publishes the bag's camera (and pose) messages with /clock into a
profile's nodes, a recorder writes every output into a rosbag2 and times each output from the moment
its frame was published.

Lockstep (the default) publishes the next frame once the node has processed or rejected the last, so a
replay is deterministic; with a rate, frames go out on the bag's clock and a busy node drops some. Either
way published = processed + dropped + bad.

The graph is closed: player, nodes and recorder share one process and one DDS participant, with discovery
off. On the machine's ROS_DOMAIN_ID another graph (another replay, a robot's nodes) would otherwise add
its messages to the recording (its keypoints, with a simulated flight's very stamps, recorded twice) and
feed the nodes its frames and /clock.
"""

from __future__ import annotations

import struct
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PolygonStamped, PoseWithCovarianceStamped
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.executors import ExternalShutdownException, MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from ..atomic import atomic_path, disk_error
from ..errors import SpatialqError
from .bringup import close_nodes, create_profile_nodes
from .environment import environment
from .graph import profile
from .qos import SENSOR_QOS

OUTPUTS = {  # perception_node output (relative) -> (type, head that makes it)
    "keypoints": (PointCloud2, "keypoints"), "place/match": (PoseWithCovarianceStamped, "place"),
    "place/candidates": (PointCloud2, "place"), "place/markers": (MarkerArray, "place"),
    "field/mask": (Image, "field"), "field/boundaries": (MarkerArray, "field"),
    "field/boundary": (PolygonStamped, "field"),
}
PROCESS_LOCAL = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "OFF"}  # read by rcl when the context is initialised
PER_FRAME = ("keypoints", "place/match", "field/mask")  # one message per processed frame, in this order of preference
INPUT_TYPES = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CompressedImage": CompressedImage,
               "sensor_msgs/msg/CameraInfo": CameraInfo, "nav_msgs/msg/Odometry": Odometry}


@dataclass
class ReplayResult:
    published: int = 0
    processed: int = 0
    bad: dict = field(default_factory=dict)
    lost: int = 0  # lockstep: frames the node never received (best-effort transport)
    wall_s: float = 0.0  # first frame published -> last frame finished
    offered_fps: float = 0.0  # frames published per second of publishing
    recorded: dict = field(default_factory=dict)  # absolute topic -> messages
    arrivals: dict = field(default_factory=dict)  # per-frame output topic -> [wall s it arrived, per frame]
    latency_ms: dict = field(default_factory=dict)  # output topic -> [publish -> arrival, per frame]
    heads: dict = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)  # the perception node's last /diagnostics values
    trained: bool = True
    size: tuple = ()
    camera_topic: str = ""
    mode: str = "lockstep"
    log_time_frames: int = 0  # frames whose header stamp was zero: sent (and matched) with their log time

    @property
    def dropped(self) -> int:
        return self.published - self.processed - sum(self.bad.values())

    @property
    def sustained_fps(self) -> float | None:
        """Outputs per second between the first frame's output and the last's: the node's throughput, free of
        start-up and of the wait for the last frame (None with fewer than two outputs)."""
        times = next((sorted(v) for suffix in PER_FRAME for t, v in self.arrivals.items() if t.endswith(suffix)), [])
        if len(times) < 2 or times[-1] <= times[0]:
            return None
        return (len(times) - 1) / (times[-1] - times[0])


@dataclass
class BagInput:
    """What the player sends from a bag, streamed in log order (a long flight does not fit in memory)."""
    path: Path
    camera_topic: str
    compressed: bool
    kinds: dict  # bag topic -> camera | camera_info | pose
    frames: int  # camera messages to send

    def messages(self) -> Iterator[tuple[int, str, int, bytes, bool]]:
        """(log ns, kind, stamp ns, raw CDR, restamped) up to and with the last frame to send. A message whose
        header stamp is zero (as early ROS 2 drivers left it) goes out stamped with its log time (restamped),
        so its outputs, poses and ground truth still meet by stamp."""
        from ..sim.bag import open_bag

        sent = 0
        with open_bag(self.path) as opened:
            for topic, log_ns, raw in opened.messages(self.kinds):
                kind = self.kinds[topic]
                if kind == "camera":
                    if sent == self.frames:
                        return
                    sent += 1
                stamp = cdr_stamp(raw, False)
                if stamp == 0:
                    yield log_ns, kind, log_ns, restamped(raw, log_ns), True
                else:
                    yield log_ns, kind, log_ns if stamp is None else stamp, bytes(raw), False


def read_bag_input(bag: str | Path, topic: str | None = None, frames: int | None = None) -> BagInput:
    from ..sim.bag import CAMERA_INFO_TOPIC, ODOM_TOPIC, camera_topic, open_bag

    with open_bag(bag) as opened:
        camera = camera_topic(opened, topic)
        topics = dict(opened.topics)
    compressed = topics[camera].msgtype == "sensor_msgs/msg/CompressedImage"
    info_topic = camera.removesuffix("/compressed").rsplit("/", 1)[0] + "/camera_info"
    kinds = {camera: "camera"}
    for name, kind in ((info_topic, "camera_info"), (CAMERA_INFO_TOPIC, "camera_info"), (ODOM_TOPIC, "pose")):
        if name in topics and topics[name].msgtype in INPUT_TYPES and kind not in kinds.values():
            kinds[name] = kind
    count = topics[camera].count if frames is None else min(frames, topics[camera].count)
    return BagInput(Path(bag), camera, compressed, kinds, count)


class _Recorder:
    """Subscribes to every output, writes each message into the output bag and notes when it arrived."""

    def __init__(self, node, out_bag: Path, topics: dict[str, type]) -> None:
        from rosbags.rosbag2 import StoragePlugin, Writer
        from rosbags.typesys import Stores, get_typestore

        self.node = node
        self.typestore = get_typestore(Stores.ROS2_KILTED)  # the messages are made by this ROS distribution
        self.writer = Writer(out_bag, version=8, storage_plugin=StoragePlugin.MCAP)
        self.failure: OSError | None = None
        try:
            self.writer.open()
        except Exception as exc:  # rosbags raises its own WriterError or OSError
            raise SpatialqError(f"{out_bag}: cannot write the output bag ({exc})") from None
        self.lock = threading.Lock()
        self.counts: dict[str, int] = defaultdict(int)
        self.arrivals: dict[str, list[tuple[int, float]]] = defaultdict(list)  # topic -> (stamp ns, wall s)
        self.last_diagnostics: dict[str, dict] = {}
        self._connections = {}
        group = MutuallyExclusiveCallbackGroup()
        qos = QoSProfile(depth=1000, reliability=ReliabilityPolicy.RELIABLE)
        self.subscriptions = []
        for topic, kind in topics.items():
            msgtype = f"{kind.__module__.split('.')[0]}/msg/{kind.__name__}"
            self._connections[topic] = self.writer.add_connection(topic, msgtype, typestore=self.typestore)
            # raw: the CDR bytes go into the bag as they came, no deserialise + serialise on the GIL
            self.subscriptions.append(node.create_subscription(
                kind, topic, lambda raw, t=topic, k=kind: self._on_message(t, k, raw), qos, callback_group=group,
                raw=True))

    def _on_message(self, topic: str, kind: type, raw: bytes) -> None:
        wall = time.perf_counter()
        with self.lock:
            if self.writer is None:
                return
            try:
                self.writer.write(self._connections[topic], self.node.get_clock().now().nanoseconds, raw)
            except OSError as exc:  # a full disk: stop recording, and the replay stops at its next frame
                self.failure = exc
                self._close_writer()
                return
            self.counts[topic] += 1
            if kind is DiagnosticArray:
                for status in deserialize_message(raw, DiagnosticArray).status:
                    self.last_diagnostics[status.name] = {kv.key: kv.value for kv in status.values}
                return
            stamp = cdr_stamp(raw, kind is MarkerArray)
            if stamp is not None:
                self.arrivals[topic].append((stamp, wall))

    def close(self) -> None:
        with self.lock:
            self._close_writer()

    def _close_writer(self) -> None:
        """Under the lock. Closing writes the bag's summary and metadata, so it can meet a full disk too."""
        if self.writer is not None:
            writer, self.writer = self.writer, None
            try:
                writer.close()
            except OSError as exc:
                self.failure = self.failure or exc

    def raise_failure(self, out_bag: Path) -> None:
        if self.failure is not None:
            raise disk_error(out_bag, self.failure) or SpatialqError(
                f"{out_bag}: recording failed ({self.failure.strerror or self.failure})") from None


def cdr_stamp(raw: bytes, marker_array: bool) -> int | None:
    """The header stamp, read straight from the CDR bytes: every stamped message starts with its header
    (after the 4-byte encapsulation); a MarkerArray starts with its length, then the first marker.
    None when the bytes are too short to hold one."""
    offset = 8 if marker_array else 4
    if len(raw) < offset + 8:
        return None
    order = "<" if raw[1] & 1 else ">"  # encapsulation: CDR_LE = 0x0001, CDR_BE = 0x0000
    if marker_array and struct.unpack_from(order + "I", raw, 4)[0] == 0:
        return None
    sec, nanosec = struct.unpack_from(order + "iI", raw, offset)
    return sec * 1_000_000_000 + nanosec


def restamped(raw: bytes, ns: int) -> bytes:
    """The message with its header stamp (the first field after the encapsulation) set to `ns`."""
    out = bytearray(raw)
    order = "<" if out[1] & 1 else ">"
    struct.pack_into(order + "iI", out, 4, ns // 1_000_000_000, ns % 1_000_000_000)
    return bytes(out)


def replay(bag: str | Path, profile_name: str, out_bag: str | Path, *, overrides: dict | None = None,
           rate: float | None = None, topic: str | None = None, frames: int | None = None,
           frame_timeout: float = 120.0, progress: bool = True) -> ReplayResult:
    """Replay `bag` through the profile's nodes; lockstep unless `rate` (x bag speed) is given. The recording
    goes into a temp folder beside `out_bag` and takes its name when complete: a replay that fails (a full
    disk, an interrupt) leaves no half bag behind."""
    out_bag = Path(out_bag)
    if out_bag.exists():
        raise SpatialqError(f"{out_bag} already exists (rosbag2 will not overwrite a bag)")
    if rate is not None and not rate > 0:
        raise SpatialqError(f"--rate {rate}: must be > 0")
    source = read_bag_input(bag, topic, frames)
    node_overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    node_overrides.setdefault("perception_node", {})["compressed"] = source.compressed
    with atomic_path(out_bag) as recording:
        result = _replay(source, profile_name, out_bag, recording, node_overrides, rate, frame_timeout, progress)
    return result


def _replay(source: BagInput, profile_name: str, out_bag: Path, recording: Path, node_overrides: dict,
            rate: float | None, frame_timeout: float, progress: bool) -> ReplayResult:
    from tqdm import tqdm

    prof = profile(profile_name)
    context = rclpy.Context()
    with environment(PROCESS_LOCAL):
        rclpy.init(context=context)
    nodes, recorder, executor = [], None, None
    try:
        nodes = create_profile_nodes(profile_name, context, use_sim_time=True, overrides=node_overrides)
        perception = next(n for n in nodes if n.get_name() == "perception_node")
        result = ReplayResult(heads=perception.heads(), trained=perception.pipeline.engine.trained,
                              size=tuple(perception.pipeline.engine.size), camera_topic=source.camera_topic,
                              mode="lockstep" if rate is None else f"rate {rate:g}x")
        player = rclpy.create_node("spatialq_player", context=context)
        ns = "/" + prof.namespace
        outputs = {f"{ns}/{rel}": kind for rel, (kind, head) in OUTPUTS.items() if result.heads[head]}
        outputs["/diagnostics"] = DiagnosticArray
        recorder = _Recorder(player, recording, outputs)
        camera_out = prof.topics["image"] + ("/compressed" if source.compressed else "")
        publishers = {
            "camera": player.create_publisher(CompressedImage if source.compressed else Image, camera_out, SENSOR_QOS),
            "camera_info": player.create_publisher(CameraInfo, prof.topics["camera_info"], SENSOR_QOS),
            "pose": player.create_publisher(Odometry, prof.topics["pose"], 50)}
        clock = player.create_publisher(Clock, "/clock", 10)
        executor = MultiThreadedExecutor(num_threads=4, context=context)
        for node in (*nodes, player):
            executor.add_node(node)
        spinner = threading.Thread(target=_spin, args=(executor,), daemon=True)
        spinner.start()
        _wait_connected(publishers["camera"], recorder, outputs)

        published_at: dict[int, float] = {}
        stats = perception.stats
        start_wall, first_log = time.perf_counter(), None
        bar = tqdm(total=source.frames, desc=f"replay ({result.mode})", unit="frame", disable=not progress)
        for log_ns, kind, stamp, raw, restamp in source.messages():
            first_log = log_ns if first_log is None else first_log
            if rate is not None:
                delay = start_wall + (log_ns - first_log) / 1e9 / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            clock.publish(Clock(clock=_time_msg(stamp)))
            if kind != "camera":
                publishers[kind].publish(raw)
                continue
            result.log_time_frames += restamp
            published_at[stamp] = time.perf_counter()
            publishers["camera"].publish(raw)
            result.published += 1
            bar.update(1)
            if rate is None and not _wait_lockstep(stats, result.published, frame_timeout):
                result.lost += 1
            if recorder.failure is not None:
                break
        bar.close()
        result.offered_fps = result.published / max(time.perf_counter() - start_wall, 1e-9)
        finished_at = _wait_idle(stats) if rate is not None else time.perf_counter()
        result.wall_s = finished_at - start_wall
        diagnostics_before = recorder.counts.get("/diagnostics", 0)
        perception.publish_diagnostics()
        _wait_recorded(recorder, outputs, stats, diagnostics_before)
        result.processed, result.bad = stats.processed, dict(stats.bad)
        result.recorded = dict(recorder.counts)
        result.diagnostics = dict(recorder.last_diagnostics.get(perception.get_fully_qualified_name(), {}))
        result.latency_ms = {t: [1000.0 * (wall - published_at[s]) for s, wall in arrivals if s in published_at]
                             for t, arrivals in recorder.arrivals.items()}
        result.arrivals = {t: [wall for s, wall in arrivals if s in published_at]
                           for t, arrivals in recorder.arrivals.items() if t.endswith(PER_FRAME)}
    finally:
        if executor is not None:
            executor.shutdown()
        if recorder is not None:
            recorder.close()
        close_nodes(nodes)
        rclpy.try_shutdown(context=context)
    recorder.raise_failure(out_bag)
    return result


def _spin(executor) -> None:
    """executor.spin (not a spin_once loop: that rebuilds the wait set on the GIL every time) until shutdown."""
    try:
        executor.spin()
    except ExternalShutdownException:
        pass


def _time_msg(ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _wait_connected(camera_pub, recorder: _Recorder, outputs: dict, timeout: float = 20.0) -> None:
    """Discovery: start only when the node hears the camera and the recorder hears every output."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if camera_pub.get_subscription_count() > 0 and all(
                sub.get_publisher_count() > 0 for sub in recorder.subscriptions):
            return
        time.sleep(0.05)
    missing = [t for t, sub in zip(outputs, recorder.subscriptions) if sub.get_publisher_count() == 0]
    raise SpatialqError(f"DDS discovery did not complete in {timeout:.0f} s (no publisher for "
                        f"{', '.join(missing) or 'the camera subscription'})")


def _wait_lockstep(stats, count: int, timeout: float) -> bool:
    """Wait until the node is done with frame `count`; False if it never received it (lost in transport)."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if stats.wait_finished(count, 0.25):
            return True
        if stats.received < count and time.monotonic() - start > 5.0:
            return False
    return False


def _wait_idle(stats, quiet: float = 1.0, timeout: float = 300.0) -> float:
    """Rate mode: wait until the node has finished everything it received and nothing new arrives; returns
    when (perf_counter) it finished the last frame, so the quiet wait is not counted as work."""
    end = time.perf_counter() + timeout
    last, since = None, time.perf_counter()
    while time.perf_counter() < end:
        state = (stats.received, stats.finished)
        if state != last:
            last, since = state, time.perf_counter()
        elif state[0] == state[1] and time.perf_counter() - since > quiet:
            break
        time.sleep(0.05)
    return since


def _wait_recorded(recorder: _Recorder, outputs: dict, stats, diagnostics_before: int, timeout: float = 20.0) -> None:
    """Outputs are reliable: wait until every processed frame's messages are in the bag (and the last diagnostics)."""
    per_frame = [t for t in outputs if t.endswith(PER_FRAME)]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with recorder.lock:
            done = all(recorder.counts.get(t, 0) >= stats.processed for t in per_frame)
            diag = recorder.counts.get("/diagnostics", 0) > diagnostics_before
        if done and diag:
            time.sleep(0.2)  # let the rest of the last frame's messages land
            return
        time.sleep(0.05)
