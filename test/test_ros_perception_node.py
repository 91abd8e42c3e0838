"""perception_node over real rclpy / Fast DDS: outputs carry the input header; bad frames are counted, not fatal."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from geometry_msgs.msg import PolygonStamped, PoseWithCovarianceStamped  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from sensor_msgs.msg import Image, PointCloud2  # noqa: E402

from ros_helpers import send, spin_until  # noqa: E402
from spatialq_ros.cli import main  # noqa: E402
from spatialq_ros.point_cloud import cloud_rows as cloud_table  # noqa: E402
from spatialq_ros.ros.messages import byte_array  # noqa: E402
from spatialq_ros.ros.perception_node import PerceptionNode  # noqa: E402
from spatialq_ros.ros.qos import SENSOR_QOS  # noqa: E402
from spatialq_ros.sim.bag import read_frames  # noqa: E402
from spatialq_ros.sim.simulate import SimConfig, simulate  # noqa: E402

SIZE = "112x112"


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("node")
    os.environ["SPATIALQ_MODELS_DIR"] = str(tmp)
    bag = tmp / "flight"
    simulate(bag, SimConfig(frames=20, size=(126, 98), seed=8), progress=False)
    assert main(["build-map", "--bag", str(bag), "--size", SIZE, "--out", str(tmp / "map.npz"), "--clusters", "4",
                 "--pca-dims", "4"]) == 0
    assert main(["train-field-head", "--bag", str(bag), "--size", SIZE, "--out", str(tmp / "head.npz"),
                 "--frames", "20", "--every", "1"]) == 0
    return bag, tmp / "map.npz", tmp / "head.npz"


@pytest.fixture
def graph(assets):
    _, map_file, head_file = assets
    context = rclpy.Context()
    rclpy.init(context=context)
    node = PerceptionNode(context=context, parameter_overrides=[
        Parameter("size", value=SIZE), Parameter("map", value=str(map_file)),
        Parameter("field_head", value=str(head_file)), Parameter("max_keypoints", value=20)])
    peer = rclpy.create_node("test_peer", context=context)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(peer)
    got: dict[str, list] = {}
    for topic, kind in (("keypoints", PointCloud2), ("place/match", PoseWithCovarianceStamped),
                        ("field/mask", Image), ("field/boundary", PolygonStamped), ("/diagnostics", DiagnosticArray)):
        peer.create_subscription(kind, topic, lambda m, t=topic: got.setdefault(t, []).append(m), 10)
    publisher = peer.create_publisher(Image, "image", SENSOR_QOS)
    yield node, publisher, executor, got
    executor.shutdown()
    node.destroy_node()
    peer.destroy_node()
    rclpy.shutdown(context=context)


def image(rgb: np.ndarray, encoding: str, sec: int) -> Image:
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding=encoding, is_bigendian=0)
    msg.header.stamp.sec = sec
    msg.header.frame_id = "camera"
    pixels = {"rgb8": rgb, "bgr8": rgb[..., ::-1], "mono8": rgb[..., 1]}[encoding] if encoding in (
        "rgb8", "bgr8", "mono8") else rgb
    msg.step = rgb.shape[1] * (1 if pixels.ndim == 2 else 3)
    msg.data = byte_array(np.ascontiguousarray(pixels))
    return msg


def test_every_output_copies_the_input_header(graph, assets):
    node, publisher, executor, got = graph
    rgb = next(read_frames(assets[0])).rgb
    for sec, encoding in ((11, "rgb8"), (12, "bgr8"), (13, "mono8")):
        send(executor, publisher, node, image(rgb, encoding, sec), done=True)
    spin_until(executor, lambda: len(got.get("keypoints", [])) >= 3 and len(got.get("field/mask", [])) >= 3
               and len(got.get("place/match", [])) >= 3)
    assert [m.header.stamp.sec for m in got["keypoints"]] == [11, 12, 13]
    for topic in ("keypoints", "place/match", "field/mask"):
        assert all(m.header.frame_id == "camera" for m in got[topic]), topic
    table = cloud_table(got["keypoints"][0])
    assert len(table) == 20 and table["descriptor"].shape == (20, 384) and table["descriptor"].dtype == np.int8
    assert (table["u"] < 126).all() and (table["v"] < 98).all() and table["u"].max() > 100  # input-image pixels, not backbone pixels
    mask = got["field/mask"][0]
    assert (mask.encoding, mask.width, mask.height) == ("mono8", 126, 98)
    assert set(np.frombuffer(bytes(mask.data), np.uint8)) <= {0, 255}


def test_bad_frames_are_counted_and_the_node_goes_on(graph, assets):
    node, publisher, executor, got = graph
    rgb = next(read_frames(assets[0])).rgb
    bad_encoding = image(rgb, "rgb8", 21)
    bad_encoding.encoding = "32FC1"
    truncated = image(rgb, "rgb8", 22)
    truncated.data = byte_array(np.zeros(10, np.uint8))
    empty = image(rgb, "rgb8", 23)
    empty.width = 0
    for msg in (bad_encoding, truncated, empty, image(rgb, "rgb8", 24)):
        send(executor, publisher, node, msg, done=True)
    spin_until(executor, lambda: any(m.header.stamp.sec == 24 for m in got.get("keypoints", [])))
    assert dict(node.stats.bad) == {"encoding": 1, "truncated": 1, "empty": 1}
    node.publish_diagnostics()

    def latest():
        return {kv.key: kv.value for kv in got["/diagnostics"][-1].status[0].values} if got.get("/diagnostics") else {}

    spin_until(executor, lambda: latest().get("processed") == "1")  # earlier timer ticks may still be in flight
    values = latest()
    assert values["bad_frames"] == "3" and values["bad_frames.truncated"] == "1" and values["processed"] == "1"


def test_a_frame_that_arrives_while_the_backbone_is_busy_is_dropped_and_deactivate_finishes_the_one_in_flight(
        graph, assets):
    node, publisher, executor, got = graph
    rgb = next(read_frames(assets[0])).rgb
    backbone, busy, release = node.pipeline.backbone, threading.Event(), threading.Event()

    def held(frame):  # the backbone, kept busy until the test lets it go
        busy.set()
        assert release.wait(60)
        return backbone(frame)

    node.pipeline.backbone = held
    send(executor, publisher, node, image(rgb, "rgb8", 31))
    assert busy.wait(60)
    broken = image(rgb, "rgb8", 32)
    broken.encoding = "32FC1"
    send(executor, publisher, node, broken)
    send(executor, publisher, node, image(rgb, "rgb8", 33))  # replaces 32, which waited
    assert node.stats.skipped == 1 and node.stats.dropped == 3  # 32 dropped; 31 and 33 not done yet
    assert not node.stats.bad  # 32 was dropped undecoded: a frame nobody will use costs no decode
    release.set()
    # a frame is counted just after its outputs go out, on the worker's thread: wait for both
    spin_until(executor, lambda: any(m.header.stamp.sec == 33 for m in got.get("keypoints", []))
               and node.stats.finished == 3)
    assert [m.header.stamp.sec for m in got["keypoints"]] == [31, 33]
    assert (node.stats.received, node.stats.processed, node.stats.dropped, node.stats.finished) == (3, 2, 1, 3)
    assert not node.stats.bad

    busy.clear()
    release.clear()
    send(executor, publisher, node, image(rgb, "rgb8", 34))
    assert busy.wait(60)
    threading.Timer(0.3, release.set).start()
    node.trigger_deactivate()  # returns once frame 34 is out and the worker's threads are gone
    assert node.state == "inactive" and node.stats.processed == 3
    assert not any(t.name.startswith("perception-") for t in threading.enumerate())
    spin_until(executor, lambda: any(m.header.stamp.sec == 34 for m in got.get("keypoints", [])))

    node.pipeline.backbone = backbone
    node.trigger_activate()
    send(executor, publisher, node, image(rgb, "rgb8", 35), done=True)
    spin_until(executor, lambda: any(m.header.stamp.sec == 35 for m in got.get("keypoints", [])))
    assert [m.header.stamp.sec for m in got["keypoints"]] == [31, 33, 34, 35]


def test_an_unexpected_error_in_a_frame_is_counted_and_the_node_goes_on(graph, assets):
    node, publisher, executor, got = graph
    rgb = next(read_frames(assets[0])).rgb
    heads = node.pipeline.heads

    def broken(result):
        node.pipeline.heads = heads
        raise RuntimeError("a bug in a head")

    node.pipeline.heads = broken
    send(executor, publisher, node, image(rgb, "rgb8", 41), done=True)
    send(executor, publisher, node, image(rgb, "rgb8", 42), done=True)
    spin_until(executor, lambda: any(m.header.stamp.sec == 42 for m in got.get("keypoints", []))
               and node.stats.finished == 2)
    assert dict(node.stats.bad) == {"internal": 1} and node.stats.processed == 1
    assert [m.header.stamp.sec for m in got["keypoints"]] == [42]
