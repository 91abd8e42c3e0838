"""perception_node over real rclpy / Fast DDS: outputs carry the input header; bad frames are counted, not fatal."""

from __future__ import annotations

import os

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
        send(executor, publisher, node, image(rgb, encoding, sec))
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
        send(executor, publisher, node, msg)
    spin_until(executor, lambda: any(m.header.stamp.sec == 24 for m in got.get("keypoints", [])))
    assert dict(node.stats.bad) == {"encoding": 1, "truncated": 1, "empty": 1}
    node.publish_diagnostics()

    def latest():
        return {kv.key: kv.value for kv in got["/diagnostics"][-1].status[0].values} if got.get("/diagnostics") else {}

    spin_until(executor, lambda: latest().get("processed") == "1")  # earlier timer ticks may still be in flight
    values = latest()
    assert values["bad_frames"] == "3" and values["bad_frames.truncated"] == "1" and values["processed"] == "1"
