"""perception_node: camera frames in; keypoints, place matches and field boundaries out, one backbone pass each.

Thin by design: decoding is `spatialq_ros.frames`, all perception is `perception.pipeline.Pipeline`; this
file only maps parameters, topics, headers and diagnostics. A frame it cannot use is counted and logged
(throttled) and the node goes on.
"""

from __future__ import annotations

import sys
import time

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PolygonStamped, PoseWithCovarianceStamped
from rcl_interfaces.msg import IntegerRange, ParameterDescriptor
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.node import Node
from sensor_msgs.msg import CompressedImage, Image, PointCloud2

from ..errors import SpatialqError
from ..frames import BadFrame, decode_compressed, decode_image
from .diagnostics import FrameStats
from .messages import mono8_image, polygon, table_cloud
from .qos import OUTPUT_QOS, SENSOR_QOS


class PerceptionNode(Node):
    def __init__(self, **kwargs) -> None:
        super().__init__("perception_node", **kwargs)
        p = self._declare_parameters()
        from ..backbone.preprocess import parse_size
        from ..perception.keypoints import KeypointConfig
        from ..perception.pipeline import Pipeline
        from ..runtime.factory import make_engine

        size = parse_size(p["size"])
        engine = make_engine(p["model"] or None, size)
        if not engine.trained:
            self.get_logger().warning("UNTRAINED: no real DINOv2 weights; outputs are not meaningful")
        place = None
        if p["map"]:
            from ..perception.place.database import PlaceDatabase
            from ..perception.place.recognizer import PlaceRecognizer

            place = PlaceRecognizer(PlaceDatabase.load(p["map"]), engine.fingerprint, p["place_top_k"])
        head = None
        if p["field_head"]:
            from ..perception.field import load_head

            head = load_head(p["field_head"])
        keypoints = KeypointConfig(max_keypoints=p["max_keypoints"]) if p["keypoints"] else None
        self.pipeline = Pipeline(engine, keypoints=keypoints, place=place, field_head=head)
        self.stats = FrameStats()
        self._last_warning = 0.0

        frames = MutuallyExclusiveCallbackGroup()
        timers = MutuallyExclusiveCallbackGroup()
        if p["compressed"]:
            self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, SENSOR_QOS,
                                     callback_group=frames)
        else:
            self.create_subscription(Image, "image", self._on_image, SENSOR_QOS, callback_group=frames)
        self.keypoints_pub = self.create_publisher(PointCloud2, "keypoints", OUTPUT_QOS)
        self.match_pub = self.create_publisher(PoseWithCovarianceStamped, "place/match", OUTPUT_QOS)
        self.candidates_pub = self.create_publisher(PointCloud2, "place/candidates", OUTPUT_QOS)
        self.mask_pub = self.create_publisher(Image, "field/mask", OUTPUT_QOS)
        self.boundary_pub = self.create_publisher(PolygonStamped, "field/boundary", OUTPUT_QOS)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, "/diagnostics", OUTPUT_QOS)
        self.create_timer(1.0, self._publish_diagnostics, callback_group=timers)

    def _declare_parameters(self) -> dict:
        def text(name, default, about):
            self.declare_parameter(name, default, ParameterDescriptor(description=about))

        text("model", "", "checkpoint or W4A8 artifact folder; empty: the embedded default")
        text("map", "", "place map from spatialq build-map; empty: place recognition off")
        text("field_head", "", "field head from spatialq train-field-head; empty: field off")
        text("size", "448x448", "backbone input WxH, multiples of 14")
        self.declare_parameter("keypoints", True, ParameterDescriptor(description="publish grid keypoints"))
        self.declare_parameter("compressed", False, ParameterDescriptor(description="subscribe image/compressed"))
        self.declare_parameter("max_keypoints", 512, ParameterDescriptor(
            description="top-K keypoints", integer_range=[IntegerRange(from_value=1, to_value=100000, step=1)]))
        self.declare_parameter("place_top_k", 5, ParameterDescriptor(
            description="place candidates", integer_range=[IntegerRange(from_value=1, to_value=100, step=1)]))
        names = ("model", "map", "field_head", "size", "keypoints", "compressed", "max_keypoints", "place_top_k")
        return {n: self.get_parameter(n).value for n in names}

    def _on_image(self, msg: Image) -> None:
        self._handle(msg.header, lambda: decode_image(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle(msg.header, lambda: decode_compressed(msg))

    def _handle(self, header, decode) -> None:
        self.stats.frame_received()
        try:
            rgb = decode()
            result = self.pipeline.process(rgb)
        except BadFrame as exc:
            self._reject(exc.reason, str(exc))
            return
        except SpatialqError as exc:
            self._reject("processing", str(exc))
            return
        self._publish(header, rgb.shape, result)
        self.stats.frame_processed(_age_ms(self, header))

    def _reject(self, reason: str, detail: str) -> None:
        self.stats.frame_bad(reason)
        now = time.monotonic()
        if now - self._last_warning > 5.0:
            self._last_warning = now
            self.get_logger().warning(f"bad frame ({detail}); {sum(self.stats.bad.values())} so far")

    def _publish(self, header, input_shape, result) -> None:
        sx = input_shape[1] / result.frame.shape[1]
        sy = input_shape[0] / result.frame.shape[0]
        if result.keypoints is not None:
            from ..perception.keypoints import quantize_descriptors

            kp = result.keypoints
            codes, scale = quantize_descriptors(kp.descriptors)
            self.keypoints_pub.publish(table_cloud(header, {
                "u": (kp.u * sx).astype(np.float32), "v": (kp.v * sy).astype(np.float32),
                "score": kp.score.astype(np.float32), "row": kp.row.astype(np.int32), "col": kp.col.astype(np.int32),
                "descriptor": codes, "desc_scale": np.full(len(kp), scale, np.float32)}))
        if result.place is not None:
            self._publish_place(header, result.place)
        if result.field_mask is not None:
            import cv2

            mask = cv2.resize(result.field_mask, (input_shape[1], input_shape[0]), interpolation=cv2.INTER_NEAREST)
            self.mask_pub.publish(mono8_image(header, mask))
            if result.polygons:
                ring = result.polygons[0].exterior * np.array([sx, sy])
                self.boundary_pub.publish(polygon(header, ring))

    def _publish_place(self, header, place) -> None:
        best = place.poses[0]
        msg = PoseWithCovarianceStamped(header=header)
        msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = (float(v) for v in best[:3])
        (msg.pose.pose.orientation.x, msg.pose.pose.orientation.y, msg.pose.pose.orientation.z,
         msg.pose.pose.orientation.w) = (float(v) for v in best[3:7])
        sigma2 = 1.0 + 100.0 * max(0.0, 1.0 - float(place.similarities[0]))  # grows as similarity drops
        msg.pose.covariance = [sigma2 if i in (0, 7, 14) else (0.1 * sigma2 if i in (21, 28, 35) else 0.0)
                               for i in range(36)]
        self.match_pub.publish(msg)
        self.candidates_pub.publish(table_cloud(header, {
            "db_index": place.indices.astype(np.int32), "similarity": place.similarities.astype(np.float32),
            "rank": np.arange(len(place.indices), dtype=np.int32),
            "x": place.poses[:, 0].astype(np.float32), "y": place.poses[:, 1].astype(np.float32),
            "z": place.poses[:, 2].astype(np.float32)}))

    def _publish_diagnostics(self) -> None:
        self.diagnostics_pub.publish(self.stats.to_message(self.get_clock().now().to_msg(), self.get_name(),
                                                           "spatialq_ros"))


def _age_ms(node: Node, header) -> float:
    """Latency from the frame's own stamp to now (meaningful with a shared clock, e.g. replay /clock)."""
    now = node.get_clock().now().nanoseconds
    stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
    return max(0.0, (now - stamp) / 1e6)


def main(argv: list[str] | None = None) -> int:
    from rclpy.executors import MultiThreadedExecutor

    rclpy.init(args=argv)
    try:
        node = PerceptionNode()
    except SpatialqError as exc:
        print(f"perception_node: error: {exc}", file=sys.stderr)
        rclpy.try_shutdown()
        return 2
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    try:
        executor.spin()
    except KeyboardInterrupt:
        pass
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
