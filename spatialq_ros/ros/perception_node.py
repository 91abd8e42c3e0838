"""perception_node: camera frames in; keypoints, place matches and field boundaries out, one backbone pass each.

A lifecycle node (unattended robots: `autostart` configures and activates it at start). Thin by design:
decoding is `spatialq_ros.frames`, all perception is `perception.pipeline.Pipeline`; this file maps
parameters, topics, headers and diagnostics. A frame it cannot use is counted and logged (throttled) and
the node goes on; a bad parameter fails `configure` with one clear line instead of crashing.

The executor thread only takes frames in. While active, a `FrameWorker` decodes and runs the backbone on a
thread of its own and the heads and publishing on another, so one frame's heads and messages overlap the
next frame's backbone; a frame that arrives while the backbone is busy replaces the one waiting, which is
dropped undecoded.
"""

from __future__ import annotations

import sys
import time
import traceback

import numpy as np
import rclpy
from geometry_msgs.msg import PolygonStamped, PoseWithCovarianceStamped
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CameraInfo, CompressedImage, Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from ..errors import SpatialqError
from ..frames import BadFrame, decode_compressed, decode_image
from ..perception.frame_worker import FrameWorker
from ..runtime.factory import BACKENDS
from ..runtime.memory import release_freed_memory
from .diagnostics import FrameStats
from .lifecycle import AutostartNode
from .messages import boundary_markers, mono8_image, place_markers, polygon, table_cloud
from .parameters import Spec
from .qos import OUTPUT_QOS, SENSOR_QOS

PARAMETERS = (
    Spec("autostart", True, "configure and activate at start (unattended robots)"),
    Spec("model", "", "checkpoint or W4A8 artifact folder; empty: the embedded default", path="model"),
    Spec("map", "", "place map from spatialq build-map; empty: place recognition off", path="file"),
    Spec("field_head", "", "field head from spatialq train-field-head; empty: field boundaries off", path="file"),
    Spec("engine", "auto", "auto (artifact: ONNX Runtime; checkpoint: torch), onnxruntime or tensorrt",
         choices=BACKENDS),
    Spec("size", "448x448", "backbone input WxH, multiples of the backbone's patch (14 for DINOv2, "
         "16 for DINOv3; an artifact fixes it)", size=True),
    Spec("compressed", False, "subscribe image/compressed (CompressedImage) instead of image"),
    Spec("keypoints", True, "publish grid keypoints"),
    Spec("max_keypoints", 512, "top-K keypoints per frame", (1, 100000)),
    Spec("keypoint_threshold", 10.0, "least smoothed gradient (grey levels) a keypoint needs", (0.0, 255.0)),
    Spec("place_top_k", 5, "place candidates per frame", (1, 100)),
    Spec("frame_cache_threshold", 0.0, "reuse the last outputs while the frame changes less than this "
         "(mean grey-level difference); 0: off", (0.0, 255.0)),
    Spec("diagnostics_period", 1.0, "seconds between /diagnostics messages", (0.05, 60.0)),
    Spec("stale_after", 2.0, "while active, /diagnostics warns \"no frames for N s\" once no frame has arrived "
         "for this many seconds (a camera that vanished)", (0.1, 3600.0)),
)


class PerceptionNode(AutostartNode):
    PARAMETERS = PARAMETERS
    _subscriptions_active: tuple | list = ()  # class defaults: destroy_node also meets a node whose
    _worker: FrameWorker | None = None  # construction failed (a bad parameter) before __init__ set them

    def __init__(self, **kwargs) -> None:
        super().__init__("perception_node", **kwargs)
        self.stats = FrameStats()
        self.pipeline = None
        self.camera_info: CameraInfo | None = None
        self._subscriptions_active = []
        self._worker = None  # while active
        self._last_warning = 0.0
        self._frames = MutuallyExclusiveCallbackGroup()  # frames in one group, timers in another
        # Outputs live as long as the node (the lifecycle turns them on and off): made anew at every configure,
        # each cleanup + configure cycle left DDS endpoint memory behind (spatialq soak, 25 cycles: RSS trend
        # +14.3 MB over cycles 5-25, +7.2 MB with the publishers kept)
        self.keypoints_pub = self.create_lifecycle_publisher(PointCloud2, "keypoints", OUTPUT_QOS)
        self.match_pub = self.create_lifecycle_publisher(PoseWithCovarianceStamped, "place/match", OUTPUT_QOS)
        self.candidates_pub = self.create_lifecycle_publisher(PointCloud2, "place/candidates", OUTPUT_QOS)
        self.place_markers_pub = self.create_lifecycle_publisher(MarkerArray, "place/markers", OUTPUT_QOS)
        self.mask_pub = self.create_lifecycle_publisher(Image, "field/mask", OUTPUT_QOS)
        self.boundaries_pub = self.create_lifecycle_publisher(MarkerArray, "field/boundaries", OUTPUT_QOS)
        self.boundary_pub = self.create_lifecycle_publisher(PolygonStamped, "field/boundary", OUTPUT_QOS)
        self.start()

    # lifecycle ---------------------------------------------------------------------------------------------

    def configure(self, params: dict) -> None:
        self.pipeline = self._build_pipeline(params)
        heads = ", ".join(f"{name} {'on' if on else 'off'}" for name, on in self.heads().items())
        self.get_logger().info(f"configured: {self.pipeline.engine.size[0]}x{self.pipeline.engine.size[1]}, {heads}")

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.params["compressed"]:
            sub = self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, SENSOR_QOS,
                                           callback_group=self._frames)
        else:
            sub = self.create_subscription(Image, "image", self._on_image, SENSOR_QOS, callback_group=self._frames)
        info = self.create_subscription(CameraInfo, "camera_info", self._on_camera_info, SENSOR_QOS,
                                        callback_group=self._frames)
        self._subscriptions_active = [sub, info]
        self._worker = FrameWorker(self._backbone, self._finish, on_drop=lambda frame: self.stats.frame_dropped(),
                                   on_error=self._failed, name="perception")
        self.stats.expect_frames()
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        self.pipeline = None
        release_freed_memory()  # else each cleanup + configure leaves the old engine's pages in malloc's arenas
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._stop()
        return TransitionCallbackReturn.SUCCESS

    def destroy_node(self) -> None:
        self._stop()
        super().destroy_node()

    def _stop(self) -> None:
        """No more frames in; the frames inside the worker finish (their outputs still go out)."""
        for sub in self._subscriptions_active:
            self.destroy_subscription(sub)
        self._subscriptions_active = []
        if self._worker is not None and not self._worker.stop():
            self.get_logger().error("the frame worker did not stop within 30 s")

    def _build_pipeline(self, p: dict):
        from ..backbone.preprocess import parse_size
        from ..perception.keypoints import KeypointConfig
        from ..perception.pipeline import Pipeline
        from ..runtime.factory import make_engine
        from ..runtime.threads import single_threaded_blas

        self._blas_limit = single_threaded_blas()  # small head matmuls next to the engine's threads
        engine = make_engine(p["model"] or None, parse_size(p["size"]), backend=p["engine"])
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
        keypoints = (KeypointConfig(max_keypoints=p["max_keypoints"], threshold=p["keypoint_threshold"])
                     if p["keypoints"] else None)
        return Pipeline(engine, keypoints=keypoints, place=place, field_head=head,
                        frame_cache=p["frame_cache_threshold"])

    def heads(self) -> dict[str, bool]:
        p = self.pipeline
        return {"keypoints": p is not None and p.keypoint_config is not None,
                "place": p is not None and p.place is not None, "field": p is not None and p.field_head is not None}

    # frames ------------------------------------------------------------------------------------------------

    def _on_image(self, msg: Image) -> None:
        self._handle(msg.header, lambda: decode_image(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle(msg.header, lambda: decode_compressed(msg))

    def _on_camera_info(self, msg: CameraInfo) -> None:
        self.camera_info = msg

    def _handle(self, header, decode) -> None:
        self.stats.frame_received()
        self._worker.submit((header, decode))  # decoded by the worker: a frame dropped unused costs no decode

    def _backbone(self, frame):
        """The worker's first stage, on its own thread: decode, then the backbone (ONNX Runtime runs without
        the GIL, so the previous frame's `_finish` runs meanwhile)."""
        rgb = frame[1]()
        return rgb.shape, self.pipeline.backbone(rgb)

    def _finish(self, frame, output) -> None:
        """The worker's second stage: heads, outputs (stamped with the input header) and accounting."""
        header, (input_shape, result) = frame[0], output
        self._publish(header, input_shape, self.pipeline.heads(result))
        self.stats.frame_processed(_age_ms(self, header), result.timings_ms, result.reused)

    def _failed(self, frame, exc: Exception) -> None:
        if isinstance(exc, BadFrame):
            self._reject(exc.reason, str(exc))
        elif isinstance(exc, SpatialqError):
            self._reject("processing", str(exc))
        else:  # a bug, not a bad frame: counted and logged in full (throttled), and the node goes on
            self.get_logger().error("frame failed:\n" + "".join(traceback.format_exception(
                type(exc), exc, exc.__traceback__)), throttle_duration_sec=5.0)
            self._reject("internal", f"{type(exc).__name__}: {exc}")

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
            rings = [p.exterior * np.array([sx, sy]) for p in result.polygons]
            self.boundaries_pub.publish(boundary_markers(header, rings))
            if rings:
                self.boundary_pub.publish(polygon(header, rings[0]))

    def _publish_place(self, header, place) -> None:
        best = place.poses[0]
        msg = PoseWithCovarianceStamped(header=header)
        msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = (float(v) for v in best[:3])
        (msg.pose.pose.orientation.x, msg.pose.pose.orientation.y, msg.pose.pose.orientation.z,
         msg.pose.pose.orientation.w) = (float(v) for v in best[3:7])
        msg.pose.covariance = match_covariance(float(place.similarities[0]))
        self.match_pub.publish(msg)
        self.candidates_pub.publish(table_cloud(header, {
            "db_index": place.indices.astype(np.int32), "similarity": place.similarities.astype(np.float32),
            "rank": np.arange(len(place.indices), dtype=np.int32),
            "x": place.poses[:, 0].astype(np.float32), "y": place.poses[:, 1].astype(np.float32),
            "z": place.poses[:, 2].astype(np.float32)}))
        self.place_markers_pub.publish(place_markers(header, place.poses[:, :3], place.similarities))

    def publish_diagnostics(self) -> None:
        extra = {"state": self.state, **{f"head.{k}": "on" if v else "off" for k, v in self.heads().items()}}
        if self.configure_error:
            extra["configure_error"] = self.configure_error
        extra["camera_info"] = "received" if self.camera_info is not None else "none"
        stale_after = self.params["stale_after"] if self.state == "active" else None  # only waiting while active
        self.diagnostics_pub.publish(self.stats.to_message(self.get_clock().now().to_msg(),
                                                           self.get_fully_qualified_name(), "spatialq_ros", extra,
                                                           stale_after))


def match_covariance(similarity: float) -> list[float]:
    """Position variance 1 m^2 at similarity 1, growing by 100 m^2 per unit of similarity lost; yaw etc. a tenth."""
    sigma2 = 1.0 + 100.0 * max(0.0, 1.0 - similarity)
    return [sigma2 if i in (0, 7, 14) else (0.1 * sigma2 if i in (21, 28, 35) else 0.0) for i in range(36)]


def _age_ms(node, header) -> float:
    """Latency from the frame's own stamp to now (meaningful with a shared clock; under replay /clock it is ~0)."""
    now = node.get_clock().now().nanoseconds
    stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
    return max(0.0, (now - stamp) / 1e6)


def main(argv: list[str] | None = None) -> int:
    from .bringup import run_nodes

    return run_nodes([PerceptionNode], argv, "perception_node")


if __name__ == "__main__":
    sys.exit(main())
