"""Lifecycle behaviour, map_builder_node and calibration_node over real rclpy / Fast DDS."""

from __future__ import annotations

import json
import os
import time
from contextlib import contextmanager

import numpy as np
import pytest
import torch

rclpy = pytest.importorskip("rclpy")
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.executors import SingleThreadedExecutor  # noqa: E402
from rclpy.parameter import Parameter  # noqa: E402
from std_srvs.srv import Trigger  # noqa: E402

from ros_helpers import send, spin_until  # noqa: E402
from spatialq_ros.cli import main  # noqa: E402
from spatialq_ros.errors import SpatialqError  # noqa: E402
from spatialq_ros.perception.place.database import PlaceDatabase  # noqa: E402
from spatialq_ros.ros.bringup import close_nodes, create_profile_nodes  # noqa: E402
from spatialq_ros.ros.calibration_node import CalibrationNode  # noqa: E402
from spatialq_ros.ros.perception_node import PerceptionNode  # noqa: E402
from spatialq_ros.ros.replay import read_bag_input  # noqa: E402
from spatialq_ros.ros.qos import SENSOR_QOS  # noqa: E402
from spatialq_ros.sim.simulate import SimConfig, simulate  # noqa: E402

SIZE = "112x112"


@pytest.fixture(scope="module")
def bag(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("nodes")
    os.environ["SPATIALQ_MODELS_DIR"] = str(tmp)
    simulate(tmp / "flight", SimConfig(frames=10, size=(126, 98), seed=5), progress=False)
    return tmp / "flight"


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def test_without_autostart_the_node_waits_and_a_bad_map_fails_configure_not_the_process(context, tmp_path):
    node = PerceptionNode(context=context, parameter_overrides=[
        Parameter("autostart", value=False), Parameter("size", value=SIZE),
        Parameter("map", value=str(tmp_path / "missing.npz"))])
    try:
        assert node.state == "unconfigured"
        node.trigger_configure()
        assert node.state == "unconfigured" and "missing.npz does not exist" in node.configure_error
        status = node.stats.to_message(node.get_clock().now().to_msg(), "n", "h",
                                       {"configure_error": node.configure_error}).status[0]
        assert status.level == status.ERROR and "missing.npz" in status.message
        node.set_parameters([Parameter("map", value="")])
        node.trigger_configure()
        node.trigger_activate()
        assert node.state == "active" and node.configure_error == "" and node.heads()["place"] is False
        node.trigger_deactivate()
        node.trigger_cleanup()
        assert node.state == "unconfigured" and node.pipeline is None
    finally:
        node.destroy_node()


@pytest.mark.parametrize("override, message", [
    ({"size": "100x100"}, "multiples of 14"),
    ({"max_keypoints": 0}, "max_keypoints"),
    ({"frame_cache_threshold": -1.0}, "frame_cache_threshold"),
    ({"field_head": "/nope/head.npz"}, "/nope/head.npz does not exist"),
])
def test_bringup_refuses_bad_parameters_with_one_line(context, override, message):
    with pytest.raises(SpatialqError, match=message):
        create_profile_nodes("drone", context, overrides={"perception_node": override})


def test_a_whole_number_given_for_a_double_parameter_is_taken_as_a_double(context):
    nodes = create_profile_nodes("drone", context, overrides={"*": {"frame_cache_threshold": 0},
                                                               "perception_node": {"size": "112x112"}})
    try:
        value = nodes[0].get_parameter("frame_cache_threshold").value
        assert value == 0.0 and isinstance(value, float)
    finally:
        close_nodes(nodes)


def test_bringup_command_bad_parameter_is_exit_2(capsys):
    assert main(["bringup", "drone", "--set", "size=100x100"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("spatialq bringup: error: /drone/perception_node:") and "multiples of 14" in err
    assert main(["bringup", "drone", "--set", "novalue"]) == 2


def test_a_node_executable_that_cannot_start_reports_the_error_on_diagnostics_before_exit_2(context):
    import subprocess
    import sys

    listener = rclpy.create_node("diagnostics_listener", context=context)
    got = []
    listener.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(listener)
    proc = subprocess.Popen([sys.executable, "-m", "spatialq_ros.ros.perception_node", "--ros-args", "-p",
                             "model:=/no/such"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        spin_until(executor, lambda: proc.poll() is not None, timeout=120)
        err = proc.stderr.read().strip().splitlines()
        assert proc.returncode == 2 and err[-1].startswith("perception_node: error: /perception_node: "), err
        reason = err[-1].removeprefix("perception_node: error: /perception_node: ")
        assert "/no/such" in reason
        # acknowledged before the process exited: it only has to be taken from the listener's queue
        errors = lambda: [st for m in got for st in m.status if st.name == "/perception_node" and st.level == st.ERROR]
        spin_until(executor, errors, timeout=5)
        status = errors()[0]
        assert status.message == reason
        assert {kv.key: kv.value for kv in status.values}["configure_error"] == reason
    finally:
        if proc.poll() is None:
            proc.kill()
        executor.shutdown()
        listener.destroy_node()


def _feed(executor, peer, bag, builder, frames):
    """Publish the bag's odometry and frames to the map builder, frame by frame, until it took each."""
    from nav_msgs.msg import Odometry
    from sensor_msgs.msg import Image

    image_pub = peer.create_publisher(Image, "/camera/image_raw", SENSOR_QOS)
    pose_pub = peer.create_publisher(Odometry, "/odom", 50)
    spin_until(executor, lambda: image_pub.get_subscription_count() > 0 and pose_pub.get_subscription_count() > 0)
    source = read_bag_input(bag, frames=frames)
    for _, kind, _, raw, _ in source.messages():
        if kind == "pose":
            pose_pub.publish(raw)
        elif kind == "camera":
            send(executor, image_pub, builder, raw)
    spin_until(executor, lambda: builder.stats.finished >= frames)  # frames that waited for their pose


@contextmanager
def builder_graph(context, overrides, peer_name):
    """The drone profile with its map builder, a peer node, and one executor; shut down (saving) on exit."""
    nodes = create_profile_nodes("drone", context, enable={"build_map"}, overrides=overrides)
    peer = rclpy.create_node(peer_name, context=context)
    executor = SingleThreadedExecutor(context=context)
    for n in (*nodes, peer):
        executor.add_node(n)
    try:
        yield nodes, peer, executor
    finally:
        executor.shutdown()
        close_nodes(nodes)  # shutdown: the builder saves what it added since its last save
        peer.destroy_node()


def test_map_builder_builds_saves_on_trigger_and_shutdown_and_extends(context, bag, tmp_path):
    map_file = tmp_path / "map.npz"
    overrides = {"*": {"size": SIZE}, "map_builder_node": {"map": str(map_file), "min_distance": 0.0, "clusters": 4,
                                                           "pca_dims": 4}}
    with builder_graph(context, overrides, "peer") as ((perception, builder), peer, executor):
        _feed(executor, peer, bag, builder, 6)
        assert builder.builder.places == 6 and builder.stats.bad == {}
        client = peer.create_client(Trigger, "/drone/map_builder_node/save")
        future = client.call_async(Trigger.Request())
        spin_until(executor, future.done)
        assert future.result().success and "saved 6 places" in future.result().message
        saved = PlaceDatabase.load(map_file)
        assert len(saved) == 6 and saved.fingerprint == perception.pipeline.engine.fingerprint

        builder.params["map"] = str(tmp_path / "no_such_dir" / "map.npz")  # a save that cannot succeed
        future = client.call_async(Trigger.Request())
        spin_until(executor, future.done)
        assert not future.result().success and "not saved" in future.result().message
        assert len(PlaceDatabase.load(map_file)) == 6  # the last good map is intact
        builder.params["map"] = str(map_file)
    assert len(PlaceDatabase.load(map_file)) == 6  # nothing new since the last save: the file is untouched

    extend = {**overrides, "map_builder_node": {**overrides["map_builder_node"], "extend": True}}
    with builder_graph(context, extend, "peer2") as ((_, builder), peer, executor):
        _feed(executor, peer, bag, builder, 3)
    grown = PlaceDatabase.load(map_file)  # shutdown saved the 3 new places
    assert len(grown) == 9 and np.array_equal(grown.vocabulary, saved.vocabulary)


def test_map_builder_extend_needs_an_existing_map(context, tmp_path):
    with pytest.raises(SpatialqError, match="cannot be extended"):
        create_profile_nodes("drone", context, enable={"build_map"}, overrides={
            "map_builder_node": {"size": SIZE, "map": str(tmp_path / "none.npz"), "extend": True}})


def test_calibration_node_from_a_bag_writes_the_artifact_and_reports_progress(context, bag, tmp_path):
    out = tmp_path / "artifact"
    node = CalibrationNode(context=context, parameter_overrides=[
        Parameter("size", value=SIZE), Parameter("frames", value=4), Parameter("holdout", value=1),
        Parameter("method", value="minmax"), Parameter("bag", value=str(bag)), Parameter("out", value=str(out))])
    peer = rclpy.create_node("listener", context=context)
    got = []
    peer.create_subscription(DiagnosticArray, "/diagnostics", got.append, 10)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    executor.add_node(peer)
    try:
        spin_until(executor, node.done.is_set, timeout=300)
        assert node.phase == "done", node.result
        quant = json.loads((out / "quant.json").read_text())
        assert quant["method"] == "minmax" and quant["calibration"]["frames"] == 4
        assert quant["calibration"]["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # auto
        heads = json.loads((out / "report.json").read_text())["heads"]  # the bag's masks and poses scored them
        assert {"keypoints", "field", "place"} <= set(heads["minmax W4A8"])
        spin_until(executor, lambda: any(s.values and any(kv.key == "phase" and kv.value == "done" for kv in s.values)
                                         for m in got for s in m.status), timeout=10)
        assert not [p for p in tmp_path.iterdir() if p.name != "artifact"]  # no temp folders left behind
    finally:
        executor.shutdown()
        node.destroy_node()
        peer.destroy_node()


def test_calibration_node_refuses_an_existing_artifact(context, tmp_path):
    (tmp_path / "artifact").mkdir()
    node = CalibrationNode(context=context, parameter_overrides=[
        Parameter("size", value=SIZE), Parameter("out", value=str(tmp_path / "artifact")),
        Parameter("method", value="minmax")])
    try:
        assert node.state == "unconfigured" and "already exists" in node.configure_error
    finally:
        node.destroy_node()


@pytest.mark.parametrize("device, message", [("cuda", "sees no CUDA GPU"), ("tpu", "choose auto or cpu or cuda")])
def test_calibration_node_refuses_a_missing_device(context, tmp_path, monkeypatch, device, message):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    node = CalibrationNode(context=context, parameter_overrides=[
        Parameter("size", value=SIZE), Parameter("out", value=str(tmp_path / "artifact")),
        Parameter("device", value=device)])
    try:
        assert node.state == "unconfigured" and message in node.configure_error, node.configure_error
    finally:
        node.destroy_node()


def test_bringup_runs_the_profile_until_ctrl_c(context, tmp_path):
    import signal
    import subprocess
    import sys

    env = {**os.environ, "SPATIALQ_MODELS_DIR": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "spatialq_ros.cli", "bringup", "tractor", "--set", f"size={SIZE}",
                             "--build-map", "--set", f"map_builder_node.map={tmp_path / 'm.npz'}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    peer = rclpy.create_node("observer", context=context)
    try:
        end = time.monotonic() + 120
        names = set()
        while time.monotonic() < end and not {"perception_node", "map_builder_node"} <= names:
            assert proc.poll() is None, proc.stderr.read()
            names = {name for name, ns in peer.get_node_names_and_namespaces() if ns == "/tractor"}
            time.sleep(0.2)
        assert {"perception_node", "map_builder_node"} <= names
        topics = dict(peer.get_topic_names_and_types())
        assert "/tractor/keypoints" in topics and "/front_camera/image_raw" in topics  # the profile's remapping
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err
        assert "running /tractor/perception_node, /tractor/map_builder_node" in out
        assert not (tmp_path / "m.npz").exists()  # nothing was added, so nothing to save
    finally:
        if proc.poll() is None:
            proc.kill()
        peer.destroy_node()
