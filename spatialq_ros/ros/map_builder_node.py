"""map_builder_node: camera frames + poses in, a place map (the AnyLoc VLAD database) out.

Builds a new map, or extends the one at `map` when `extend` is true. Saves on the `~/save` Trigger
service and on shutdown, atomically (temp file + rename), so a save that fails leaves the last good map.
"""

from __future__ import annotations

import sys
import threading
from collections import deque

import numpy as np
from nav_msgs.msg import Odometry
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import Trigger

from ..errors import SpatialqError
from ..frames import BadFrame, decode_compressed, decode_image
from .diagnostics import FrameStats
from .lifecycle import AutostartNode
from .parameters import Spec
from .qos import OUTPUT_QOS, SENSOR_QOS

PARAMETERS = (
    Spec("autostart", True, "configure and activate at start"),
    Spec("model", "", "checkpoint or W4A8 artifact folder; empty: the embedded default", path="model"),
    Spec("size", "448x448", "backbone input WxH (the perception node must use the same)", size=True),
    Spec("compressed", False, "subscribe image/compressed (CompressedImage) instead of image"),
    Spec("map", "flight_map.npz", "map file to write (and to extend, with extend: true)"),
    Spec("extend", False, "add places to the map at `map` instead of starting a new one"),
    Spec("min_distance", 5.0, "metres between kept places (0: keep every frame with a pose)", (0.0, 10000.0)),
    Spec("clusters", 32, "VLAD vocabulary size of a new map (AnyLoc: 32)", (1, 4096)),
    Spec("pca_dims", 128, "PCA-whitening dims of a new map (0: off)", (0, 65536)),
    Spec("pose_tolerance", 0.05, "seconds between a frame and the pose it takes", (0.0, 10.0)),
    Spec("diagnostics_period", 1.0, "seconds between /diagnostics messages", (0.05, 60.0)),
)


class MapBuilderNode(AutostartNode):
    PARAMETERS = PARAMETERS

    def __init__(self, **kwargs) -> None:
        super().__init__("map_builder_node", **kwargs)
        self.stats = FrameStats()
        self.builder = None
        self.saved_places = 0
        self.last_save = "never"
        self._poses: deque[tuple[int, np.ndarray]] = deque(maxlen=500)
        self._waiting: list = []  # (stamp, decode) of frames whose pose has not come yet
        self._lock = threading.Lock()  # builder: frames vs save
        self._subs: list = []
        self._inputs = MutuallyExclusiveCallbackGroup()
        self.create_service(Trigger, "~/save", self._on_save, callback_group=MutuallyExclusiveCallbackGroup())
        self.start()

    def configure(self, params: dict) -> None:
        self.builder, self.engine = self._make_builder(params)
        self.get_logger().info(f"configured: {'extending' if params['extend'] else 'new map'} {params['map']} "
                               f"({self.builder.places} places)")

    def _make_builder(self, p: dict):
        from pathlib import Path

        from ..backbone.preprocess import parse_size
        from ..perception.place.builder import MapBuilder
        from ..perception.place.database import PlaceDatabase
        from ..runtime.factory import make_engine
        from ..runtime.threads import single_threaded_blas

        if not p["map"]:
            raise SpatialqError("parameter map: give the map file to write")
        existing = None
        if p["extend"]:
            if not Path(p["map"]).is_file():
                raise SpatialqError(f"parameter map: {p['map']} does not exist, so it cannot be extended")
            existing = PlaceDatabase.load(p["map"])
        self._blas_limit = single_threaded_blas()  # small head matmuls next to the engine's threads
        size = parse_size(p["size"])
        engine = make_engine(p["model"] or None, size, int(existing.config.get("facet_layer", -1)) if existing else -1)
        if not engine.trained:
            self.get_logger().warning("UNTRAINED: no real DINOv2 weights; the map is not meaningful")
        config = {"facet_layer": -1, "aggregation": "vlad", "size": list(size), "patch_size": engine.patch_size,
                  "pca_dims": p["pca_dims"],
                  "clusters": p["clusters"], "pose_topic": self.resolve_topic_name("pose")}
        builder = MapBuilder(engine.fingerprint, config, existing, min_distance=p["min_distance"])
        return builder, engine

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        if self.params["compressed"]:
            image = self.create_subscription(CompressedImage, "image/compressed", self._on_compressed, SENSOR_QOS,
                                             callback_group=self._inputs)
        else:
            image = self.create_subscription(Image, "image", self._on_image, SENSOR_QOS, callback_group=self._inputs)
        pose = self.create_subscription(Odometry, "pose", self._on_pose, 50, callback_group=self._inputs)
        self._subs = [image, pose]
        return super().on_activate(state)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        for sub in self._subs:
            self.destroy_subscription(sub)
        self._subs = []
        return super().on_deactivate(state)

    def _on_pose(self, msg: Odometry) -> None:
        p, q = msg.pose.pose.position, msg.pose.pose.orientation
        stamp = _stamp_ns(msg.header)
        self._poses.append((stamp, np.array([p.x, p.y, p.z, q.x, q.y, q.z, q.w])))
        waiting, self._waiting = self._waiting, []
        for frame_stamp, decode in waiting:  # frames that came before their pose
            pose = self._pose_at(frame_stamp)
            if pose is not None:
                self._add(frame_stamp, pose, decode)
            elif frame_stamp < stamp - self.params["pose_tolerance"] * 1e9:
                self.stats.frame_bad("no_pose")
            else:
                self._waiting.append((frame_stamp, decode))

    def _on_image(self, msg: Image) -> None:
        self._handle(msg.header, lambda: decode_image(msg))

    def _on_compressed(self, msg: CompressedImage) -> None:
        self._handle(msg.header, lambda: decode_compressed(msg))

    def _handle(self, header, decode) -> None:
        self.stats.frame_received()
        stamp = _stamp_ns(header)
        pose = self._pose_at(stamp)
        if pose is not None:
            self._add(stamp, pose, decode)
        elif self._poses and self._poses[-1][0] > stamp + self.params["pose_tolerance"] * 1e9:
            self.stats.frame_bad("no_pose")  # poses have moved past this frame: none will fit
        else:
            self._waiting = [*self._waiting[-4:], (stamp, decode)]  # its pose may still come

    def _add(self, stamp: int, pose: np.ndarray, decode) -> None:
        from ..backbone.preprocess import resize_rgb

        try:
            with self._lock:
                if self.builder.wants(pose):
                    rgb = decode()
                    self.builder.add(self.engine.infer(resize_rgb(rgb, self.engine.size)).value_facet, pose, stamp)
        except BadFrame as exc:
            self.stats.frame_bad(exc.reason)
            return
        except SpatialqError:
            self.stats.frame_bad("processing")
            return
        self.stats.frame_processed(0.0)

    def _pose_at(self, stamp_ns: int) -> np.ndarray | None:
        tolerance = self.params["pose_tolerance"] * 1e9
        best = min(self._poses, key=lambda sp: abs(sp[0] - stamp_ns), default=None)
        return best[1] if best is not None and abs(best[0] - stamp_ns) <= tolerance else None

    def save(self) -> str:
        """Write the map atomically; raises SpatialqError (and keeps the last saved map) when it cannot."""
        with self._lock:
            db = self.builder.build()
            db.save(self.params["map"])
            self.saved_places = len(db)
        from datetime import datetime

        self.last_save = datetime.now().isoformat(timespec="seconds")
        return f"saved {self.saved_places} places to {self.params['map']}"

    def _on_save(self, request, response):
        if self.builder is None:
            response.success, response.message = False, f"not configured: {self.configure_error or 'call configure'}"
            return response
        try:
            response.message = self.save()
            response.success = True
        except (SpatialqError, OSError) as exc:
            response.success, response.message = False, f"not saved: {exc}"
        self.get_logger().info(response.message)
        return response

    def close(self) -> None:
        """Shutdown: save what was added since the last save."""
        if self.builder is not None and self.builder.places != self.saved_places:
            try:
                self.get_logger().info(self.save())
            except (SpatialqError, OSError) as exc:
                self.get_logger().error(f"map not saved at shutdown: {exc}")

    def publish_diagnostics(self) -> None:
        extra = {"state": self.state, "places": str(self.builder.places if self.builder else 0),
                 "saved_places": str(self.saved_places), "last_save": self.last_save}
        if self.configure_error:
            extra["configure_error"] = self.configure_error
        self.diagnostics_pub.publish(self.stats.to_message(self.get_clock().now().to_msg(),
                                                           self.get_fully_qualified_name(), "spatialq_ros", extra))


def _stamp_ns(header) -> int:
    return header.stamp.sec * 1_000_000_000 + header.stamp.nanosec


def main(argv: list[str] | None = None) -> int:
    from .bringup import run_nodes

    return run_nodes([MapBuilderNode], argv, "map_builder_node")


if __name__ == "__main__":
    sys.exit(main())
