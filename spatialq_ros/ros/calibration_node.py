"""calibration_node: GPLQ W4A8 calibration on the robot's own footage, the same job as `spatialq calibrate`.

Collects `frames + holdout` frames from its image topic (every `every`-th), or reads them from `bag`,
then calibrates in a worker thread while /diagnostics reports progress. The artifact is written to a
temp folder and renamed, so a run that fails or is stopped leaves nothing half-written.
"""

from __future__ import annotations

import sys
import threading

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.lifecycle import LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image

from ..errors import SpatialqError
from ..frames import BadFrame, decode_compressed, decode_image
from ..quant.device import DEVICES
from .lifecycle import AutostartNode
from .parameters import Spec
from .qos import SENSOR_QOS

PARAMETERS = (
    Spec("autostart", True, "configure and activate at start"),
    Spec("model", "", "FP32 checkpoint; empty: the embedded default", path="model"),
    Spec("size", "448x448", "deployment resolution WxH, multiples of the backbone's patch "
         "(14 for DINOv2, 16 for DINOv3)", size=True),
    Spec("frames", 256, "calibration frames", (1, 100000)),
    Spec("holdout", 16, "extra frames kept out for the report", (0, 10000)),
    Spec("every", 5, "take every N-th frame from the topic (spread over the flight)", (1, 10000)),
    Spec("method", "gplq", "gplq or minmax", choices=("gplq", "minmax")),
    Spec("qwt", False, "add QwT block compensation (stage 2)"),
    Spec("rounding", "feedback", "stage 2 rounding of the 4-bit weights: feedback (GPTQ-style) or nearest",
         choices=("feedback", "nearest")),
    Spec("value_alpha", 0.5, "gplq: strength at which each attention projection's input ranges fold into the "
         "value rows (0: none)", (0.0, 1.0)),
    Spec("massive_factor", 16.0, "gplq: input channels above this x their INT8 clipping level stay float (0: none)",
         (0.0, 1e6)),
    Spec("wide_share", 0.5, "gplq: at most this share of the weights gets 7-bit codes, where measured to pay "
         "(0: all 4-bit)", (0.0, 1.0)),
    Spec("head_rotation", True, "gplq: rotate each head's output (a Hadamard folded into the weights) in the blocks "
         "where that halves the projection's W4A8 error"),
    Spec("device", "auto", "where calibration runs: auto (cuda when torch sees a GPU, else cpu), cpu or cuda",
         choices=DEVICES),
    Spec("out", "artifact", "artifact folder to write"),
    Spec("force", False, "replace an existing artifact folder"),
    Spec("bag", "", "read frames from this rosbag2 instead of the topic", path="model"),
    Spec("bag_topic", "", "image topic in `bag` (empty: the camera topic)"),
    Spec("compressed", False, "subscribe image/compressed (CompressedImage) instead of image"),
    Spec("diagnostics_period", 1.0, "seconds between /diagnostics messages", (0.05, 60.0)),
)


class CalibrationNode(AutostartNode):
    PARAMETERS = PARAMETERS

    def __init__(self, **kwargs) -> None:
        super().__init__("calibration_node", **kwargs)
        self.frames: list = []
        self.bad = 0
        self.phase = "unconfigured"
        self.step = ("", 0, 0)
        self.result = ""
        self.done = threading.Event()
        self._skip = 0
        self._subs: list = []
        self._worker: threading.Thread | None = None
        self.start()

    def configure(self, p: dict) -> None:
        from ..quant.job import CalibrationJob

        self.job = CalibrationJob(model=p["model"] or None, size=p["size"], frames=p["frames"], holdout=p["holdout"],
                                  method=p["method"], qwt=p["qwt"], rounding=p["rounding"],
                                  value_alpha=p["value_alpha"], massive_factor=p["massive_factor"],
                                  wide_share=p["wide_share"],
                                  head_rotation=p["head_rotation"], device=p["device"], out=p["out"],
                                  force=p["force"], source=p["bag"] or self.resolve_topic_name("image"),
                                  topic=p["bag_topic"] or None)
        self.job.check_output()
        self.phase = "configured"

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        p = self.params
        if p["bag"]:
            self._start(lambda: self._bag_frames(p))
        elif p["compressed"]:
            self._subs = [self.create_subscription(CompressedImage, "image/compressed",
                                                   lambda m: self._collect(lambda: decode_compressed(m)), SENSOR_QOS)]
        else:
            self._subs = [self.create_subscription(Image, "image", lambda m: self._collect(lambda: decode_image(m)),
                                                   SENSOR_QOS)]
        self.phase = "collecting" if not p["bag"] else self.phase
        return super().on_activate(state)

    def _bag_frames(self, p: dict) -> tuple:
        """The bag's frames, and its ground truth for them (the report scores the heads with it)."""
        from ..quant.job import read_calibration_frames

        return read_calibration_frames(p["bag"], None, p["bag_topic"] or None, self.job)

    def _collect(self, decode) -> None:
        if self.phase != "collecting":
            return
        self._skip = (self._skip + 1) % self.params["every"]
        if self._skip != 1 % self.params["every"]:
            return
        try:
            self.frames.append(decode())
        except BadFrame as exc:
            self.bad += 1
            self.get_logger().warning(f"bad frame skipped ({exc})", throttle_duration_sec=5.0)
            return
        if len(self.frames) >= self.job.frames + self.job.holdout:
            frames, self.frames = self.frames, []
            for sub in self._subs:
                self.destroy_subscription(sub)
            self._subs = []
            self._start(lambda: (frames, None))

    def _start(self, read) -> None:
        self.phase = "calibrating"
        self._worker = threading.Thread(target=self._calibrate, args=(read,), daemon=True)
        self._worker.start()

    def _calibrate(self, read) -> None:
        from ..quant.job import run_calibration

        try:
            frames, truth = read()
            report = run_calibration(self.job, frames, progress=False, truth=truth,
                                     on_step=lambda stage, i, n: setattr(self, "step", (stage, i, n)))
        except SpatialqError as exc:
            self.phase, self.result = "failed", str(exc)
            self.get_logger().error(f"calibration failed: {exc}")
        else:
            fid = report.get("fidelity", {}).get(self.job.method, {})
            self.phase = "done"
            self.result = f"wrote {self.job.out}" + (f", held-out patch cosine {fid['patch_cosine']:.4f}" if fid else "")
            self.get_logger().info(self.result)
        self.done.set()

    def publish_diagnostics(self) -> None:
        stage, i, n = self.step
        values = {"state": self.state, "phase": self.phase,
                  "frames_collected": str(len(self.frames)),
                  "frames_needed": str(self.job.frames + self.job.holdout) if hasattr(self, "job") else "",
                  "bad_frames": str(self.bad), "stage": stage, "stage_progress": f"{i}/{n}" if n else ""}
        level, message = DiagnosticStatus.OK, self.phase
        if self.configure_error or self.phase == "failed":
            level, message = DiagnosticStatus.ERROR, self.configure_error or self.result
        elif self.result:
            message = self.result
        msg = DiagnosticArray()
        msg.header.stamp = self.get_clock().now().to_msg()
        msg.status = [DiagnosticStatus(level=level, name=self.get_fully_qualified_name(), hardware_id="spatialq_ros",
                                       message=message, values=[KeyValue(key=k, value=v) for k, v in values.items()])]
        self.diagnostics_pub.publish(msg)


def main(argv: list[str] | None = None) -> int:
    from .bringup import run_nodes

    return run_nodes([CalibrationNode], argv, "calibration_node")


if __name__ == "__main__":
    sys.exit(main())
