"""Driving nodes over real DDS from a test: spin until something happens, deliver a best-effort frame, and
the surroundings a graph meets on a robot (a busy CPU, another graph on the same domain)."""

from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager


def spin_until(executor, condition, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not condition():
        executor.spin_once(timeout_sec=0.05)
    assert condition(), "timed out"


def send(executor, publisher, node, msg, done=False):
    """Publish until `node` has received it: best effort, depth 1, so a frame can be lost on the way.
    done: then wait until the node is done with every frame it received (a node that works on its own
    threads drops a frame that arrives while it is busy)."""
    before = node.stats.received
    while node.stats.received == before:
        publisher.publish(msg)
        end = time.monotonic() + 2.0  # a resend that crosses a slow delivery would arrive twice
        while time.monotonic() < end and node.stats.received == before:
            executor.spin_once(timeout_sec=0.05)
    if done:
        spin_until(executor, lambda: node.stats.finished >= node.stats.received)


@contextmanager
def cpu_load(workers=2):
    """Busy loops on `workers` cores for the block: a busy machine, as the demo once met."""
    procs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(workers)]
    try:
        yield
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


FOREIGN_GRAPH = """
import sys, time
import numpy as np
import rclpy
from sensor_msgs.msg import Image, PointCloud2
from spatialq_ros.ros.messages import table_cloud
from spatialq_ros.ros.qos import OUTPUT_QOS, SENSOR_QOS
namespace, (w, h), stamps = sys.argv[1], map(int, sys.argv[2].split("x")), [int(s) for s in sys.argv[3:]]
rclpy.init()
node = rclpy.create_node("foreign")
outputs = node.create_publisher(PointCloud2, f"/{namespace}/keypoints", OUTPUT_QOS)
frames = node.create_publisher(Image, "/camera/image_raw", SENSOR_QOS)
print("ready", flush=True)
while True:
    for ns in stamps:
        image = Image(height=h, width=w, encoding="rgb8", step=3 * w, data=bytes(3 * w * h))
        image.header.stamp.sec, image.header.stamp.nanosec = divmod(ns, 1_000_000_000)
        image.header.frame_id = "camera"
        empty = np.zeros(0, np.float32)  # a keypoints cloud as perception_node's, with no keypoints
        cloud = table_cloud(image.header, {"u": empty, "v": empty, "score": empty, "row": empty.astype(np.int32),
                                           "col": empty.astype(np.int32), "descriptor": np.zeros((0, 384), np.int8),
                                           "desc_scale": empty})
        outputs.publish(cloud)
        frames.publish(image)
        time.sleep(0.05)
"""


@contextmanager
def foreign_graph(namespace, stamps, size=(126, 98)):
    """Another graph on this ROS domain for the block, as a robot's nodes or a second replay would be: it
    publishes keypoints under `namespace` and black camera frames of `size` (W, H), stamped with `stamps` over
    and over."""
    proc = subprocess.Popen([sys.executable, "-c", FOREIGN_GRAPH, namespace, "%dx%d" % size, *map(str, stamps)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        yield
    finally:
        proc.kill()
        proc.wait()
