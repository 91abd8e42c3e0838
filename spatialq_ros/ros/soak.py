"""The soak: the deploy node through a long run, lifecycle cycles and a camera that vanishes, over real DDS.

perception_node runs in a process of its own, started as `spatialq bringup` starts it (the profile's graph
and parameters, with a namespace and camera topic of its own), so the memory sampled (VmRSS from /proc) is
the deploy process's alone. This process plays a bag's camera frames to it in lockstep (the next frame once
the last one's keypoints arrived), drives its lifecycle through the change_state service as a lifecycle
manager would, and listens to /diagnostics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.executors import MultiThreadedExecutor
from sensor_msgs.msg import Image, PointCloud2

from ..bench.rss import loads_torch, process_mb
from ..errors import SpatialqError
from .qos import OUTPUT_QOS, SENSOR_QOS
from .replay import _spin, cdr_stamp, read_bag_input, restamped

CYCLE = (("deactivate", Transition.TRANSITION_DEACTIVATE, "inactive"),
         ("cleanup", Transition.TRANSITION_CLEANUP, "unconfigured"),
         ("configure", Transition.TRANSITION_CONFIGURE, "inactive"),
         ("activate", Transition.TRANSITION_ACTIVATE, "active"))
LEVELS = {0: "OK", 1: "WARN", 2: "ERROR", 3: "STALE"}


@dataclass
class SoakConfig:
    frames: int = 20000  # the long run
    warmup: int = 1000  # frames before the RSS baseline is taken
    sample_every: int = 100  # frames between RSS samples in the long run
    cycles: int = 50  # lifecycle cycles: deactivate, cleanup, configure, activate
    cycle_frames: int = 5  # frames after each cycle (each must be processed)
    vanish_s: float = 10.0  # the camera publisher is gone this long
    stale_after: float = 2.0  # the node's parameter: WARN after this many seconds without frames
    after_frames: int = 200  # frames at the end: the node still works
    loop_frames: int = 300  # the bag's first frames, played over and over
    frame_timeout: float = 30.0  # no output for a frame this long (resent every 5 s): the soak fails


@dataclass
class SoakResult:
    config: dict
    node_command: list
    rss: list = field(default_factory=list)  # {"frame", "t_s", "mb", "phase"}
    phases: dict = field(default_factory=dict)  # phase -> what happened in it
    diagnostics: list = field(default_factory=list)  # around the vanish: {"t_s", "level", "message"}
    resent: int = 0  # frames sent again after 5 s without output (lost in transport)
    failure: str = ""  # why the soak stopped early ("" when it ran to the end)
    exit_code: int | None = None  # the node process's, after SIGINT at the end
    torch_loaded: bool | None = None
    peak_rss_mb: float | None = None
    final_diagnostics: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def soak(bag: str | Path, node_sets: list[str], config: SoakConfig, log_path: Path, profile_name: str = "drone",
         progress: bool = True) -> SoakResult:
    """Run every phase; a phase that fails stops the soak, and the result says where and why."""
    ns = f"/soak_{uuid.uuid4().hex[:8]}"
    camera = f"{ns}/camera/image_raw"
    command = [sys.executable, "-m", "spatialq_ros.cli", "bringup", profile_name, "--namespace", ns,
               "--image-topic", camera, "--set", "perception_node.frame_cache_threshold=0.0",
               "--set", f"perception_node.stale_after={config.stale_after}", *node_sets]
    result = SoakResult(config=asdict(config), node_command=command[1:])
    source = read_bag_input(bag, frames=config.loop_frames)
    if source.compressed:
        raise SpatialqError(f"{bag}: the soak plays raw sensor_msgs/Image frames; this bag's camera is compressed")
    frames = [raw for _, kind, _, raw, _ in source.messages() if kind == "camera"]
    if not frames:
        raise SpatialqError(f"{bag}: no camera frames")
    with open(log_path, "w") as log:
        proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, text=True)
        context = rclpy.Context()
        rclpy.init(context=context)
        feeder = None
        try:
            feeder = _Feeder(context, ns, camera, frames, proc, log_path, config, result)
            feeder.run_phases(progress)
        except SpatialqError as exc:
            result.failure = str(exc)
        finally:
            if proc.poll() is None:
                result.peak_rss_mb = process_mb(proc.pid, "VmHWM")
                result.torch_loaded = loads_torch(proc.pid)
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.kill(proc.pid, signal.SIGKILL)
                    proc.wait()
            result.exit_code = proc.returncode
            if feeder is not None:
                feeder.close()
            rclpy.try_shutdown(context=context)
    return result


class _Feeder:
    """This process's side of the soak: camera publisher, keypoints and /diagnostics listeners, lifecycle client."""

    def __init__(self, context, ns: str, camera: str, frames: list[bytes], proc, log_path: Path, config: SoakConfig,
                 result: SoakResult) -> None:
        self.node = rclpy.create_node("spatialq_soak", context=context)
        self.ns, self.camera_topic, self.frames, self.proc, self.log_path = ns, camera, frames, proc, log_path
        self.config, self.result = config, result
        self.changed = threading.Condition()
        self.last_output = 0  # the stamp (ns) of the newest keypoints message
        self.outputs = 0
        self.sent = 0
        self.status: tuple[float, str, str, dict] | None = None  # newest (monotonic, level, message, values)
        self.recording: list | None = None  # statuses kept while the vanish is watched
        self.start = time.monotonic()
        self.context = context
        self.camera_node, self.camera = self._camera()
        self.keypoints = self.node.create_subscription(PointCloud2, f"{ns}/keypoints", self._on_keypoints, OUTPUT_QOS,
                                                       raw=True)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, 50)
        self.change_state = self.node.create_client(ChangeState, f"{ns}/perception_node/change_state")
        self.get_state = self.node.create_client(GetState, f"{ns}/perception_node/get_state")
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self.spinner = threading.Thread(target=_spin, args=(self.executor,), daemon=True)
        self.spinner.start()

    def _camera(self):
        """The camera: a node of its own, never spun (a publisher needs no executor), so it can vanish while the
        listeners spin; destroying a publisher under a spinning executor races with its event handlers."""
        node = rclpy.create_node("spatialq_soak_camera", context=self.context)
        return node, node.create_publisher(Image, self.camera_topic, SENSOR_QOS)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        if self.camera_node is not None:
            self.camera_node.destroy_node()

    # listeners ---------------------------------------------------------------------------------------------

    def _on_keypoints(self, raw: bytes) -> None:
        stamp = cdr_stamp(raw, False)
        with self.changed:
            self.outputs += 1
            self.last_output = max(self.last_output, stamp or 0)
            self.changed.notify_all()

    def _on_diagnostics(self, msg: DiagnosticArray) -> None:
        for status in msg.status:
            if status.name != f"{self.ns}/perception_node":
                continue
            level = LEVELS.get(status.level[0] if isinstance(status.level, bytes) else int(status.level), "?")
            entry = (time.monotonic(), level, status.message, {kv.key: kv.value for kv in status.values})
            with self.changed:
                self.status = entry
                if self.recording is not None:
                    self.recording.append(entry)
                self.changed.notify_all()

    # phases ------------------------------------------------------------------------------------------------

    def run_phases(self, progress: bool) -> None:
        from tqdm import tqdm

        c, phases = self.config, self.result.phases
        self._wait(lambda: self.camera.get_subscription_count() > 0 and self.keypoints.get_publisher_count() > 0
                   and self.change_state.service_is_ready(), 180.0, "come up (see the node log)")
        self.sample("start")
        t = time.monotonic()
        with tqdm(total=c.frames, desc="soak: long run", unit="frame", disable=not progress) as bar:
            for i in range(1, c.frames + 1):
                self.send()
                bar.update(1)
                if i % c.sample_every == 0 or i == c.warmup or i == c.frames:
                    self.sample("long run")
        wall = time.monotonic() - t
        phases["long_run"] = {"frames": c.frames, "wall_s": round(wall, 1), "fps": round(c.frames / wall, 2),
                              "outputs": self.outputs}

        before = self.sample("lifecycle")
        t, outputs = time.monotonic(), self.outputs
        for k in tqdm(range(c.cycles), desc="soak: lifecycle cycles", unit="cycle", disable=not progress):
            for name, transition, expected in CYCLE:
                self.transition(name, transition, expected, k + 1)
            # the node made a new camera subscription and new output publishers: match them before frames go
            self._wait(lambda: self.camera.get_subscription_count() > 0 and self.keypoints.get_publisher_count() > 0,
                       30.0, f"reconnect after lifecycle cycle {k + 1}")
            for _ in range(c.cycle_frames):
                self.send()
            self.sample("lifecycle")
        phases["lifecycle"] = {"cycles": c.cycles, "transitions": 4 * c.cycles, "frames": c.cycles * c.cycle_frames,
                               "outputs": self.outputs - outputs, "wall_s": round(time.monotonic() - t, 1),
                               "rss_before_mb": before, "rss_after_mb": self.result.rss[-1]["mb"]}

        phases["vanish"] = self.vanish()
        outputs = self.outputs
        for _ in range(c.after_frames):
            self.send()
        self.sample("after")
        phases["after"] = {"frames": c.after_frames, "outputs": self.outputs - outputs}
        self.result.final_diagnostics = self.final_diagnostics()

    def final_diagnostics(self) -> dict:
        """The first /diagnostics that counts every frame sent, taken while the camera is still live: frames go on,
        closer together than stale_after, until it comes (a silent camera would rightly turn it into a warning)."""
        gap = min(0.2, self.config.stale_after / 2)
        end = time.monotonic() + 10.0
        while True:
            self.send()
            if self._wait(lambda: self.status is not None and int(self.status[3].get("processed", 0)) >= self.sent,
                          gap, "", quiet=True):
                with self.changed:
                    return {"level": self.status[1], "message": self.status[2], **self.status[3]}
            if time.monotonic() > end:
                raise SpatialqError("perception_node did not report every frame processed on /diagnostics within "
                                    "10 s")

    def vanish(self) -> dict:
        """The camera node goes (as when its driver dies) for `vanish_s` and comes back; /diagnostics followed."""
        c = self.config
        with self.changed:
            self.recording = []
        self.camera_node.destroy_node()
        self.camera_node = self.camera = None
        gone = time.monotonic()
        self._wait(lambda: False, c.vanish_s, "", quiet=True)
        self.camera_node, self.camera = self._camera()
        self._wait(lambda: self.camera.get_subscription_count() > 0, 30.0, "hear the camera again")
        back = time.monotonic()
        outputs, sent = self.outputs, 0
        while sent < 10 or not self._ok_since(back):  # frames again until an OK arrives from after their return
            if time.monotonic() - back > 60.0:
                raise SpatialqError("/diagnostics did not go back to OK within 60 s of the frames' return")
            self.send()
            sent += 1
        with self.changed:
            log, self.recording = self.recording, None
        self.result.diagnostics = [{"t_s": round(t - gone, 2), "level": level, "message": message}
                                   for t, level, message, _ in log]
        warnings = [e for e in log if gone < e[0] <= back and e[1] == "WARN" and e[2].startswith("no frames for")]
        ok = next(e for e in log if e[0] > back and e[1] == "OK")
        self.sample("vanish")
        def when(entry) -> dict | None:
            return {"t_s": round(entry[0] - gone, 2), "message": entry[2]} if entry else None

        return {"seconds": c.vanish_s, "stale_after_s": c.stale_after, "warnings": len(warnings),
                "first_warning": when(warnings[0] if warnings else None),
                "last_warning": when(warnings[-1] if warnings else None),
                "ok_after_return_s": round(ok[0] - back, 2), "frames_after_return": sent,
                "outputs_after_return": self.outputs - outputs}

    def _ok_since(self, since: float) -> bool:
        with self.changed:
            return self.recording is not None and any(e[0] > since and e[1] == "OK" for e in self.recording)

    # primitives --------------------------------------------------------------------------------------------

    def send(self) -> None:
        """The next frame, stamped now; returns once its keypoints arrived (resent every 5 s: best effort)."""
        raw = self.frames[self.sent % len(self.frames)]
        self.sent += 1
        stamp = time.time_ns()
        msg = restamped(raw, stamp)
        end = time.monotonic() + self.config.frame_timeout
        while True:
            self.camera.publish(msg)
            if self._wait(lambda: self.last_output >= stamp, 5.0, "", quiet=True):
                return
            if time.monotonic() > end:
                raise SpatialqError(f"no keypoints for frame {self.sent} within {self.config.frame_timeout:.0f} s")
            self.result.resent += 1

    def transition(self, name: str, transition_id: int, expected: str, cycle: int) -> None:
        request = ChangeState.Request()
        request.transition.id = transition_id
        response = self._call(self.change_state, request, f"{name} (cycle {cycle})")
        if not response.success:
            raise SpatialqError(f"lifecycle cycle {cycle}: {name} failed (see the node log)")
        state = self._call(self.get_state, GetState.Request(), "get_state").current_state.label
        if state != expected:
            raise SpatialqError(f"lifecycle cycle {cycle}: after {name} the node is {state!r}, not {expected!r}")

    def _call(self, client, request, what: str, timeout: float = 60.0):
        future = client.call_async(request)
        done = threading.Event()
        future.add_done_callback(lambda _: done.set())
        end = time.monotonic() + timeout
        while not done.wait(0.1):
            self._check_alive(what)
            if time.monotonic() > end:
                raise SpatialqError(f"lifecycle {what}: no answer within {timeout:.0f} s")
        return future.result()

    def sample(self, phase: str) -> float:
        mb = round(process_mb(self.proc.pid), 2)
        self.result.rss.append({"frame": self.sent, "t_s": round(time.monotonic() - self.start, 1), "mb": mb,
                                "phase": phase})
        return mb

    def _wait(self, condition, timeout: float, what: str, quiet: bool = False) -> bool:
        """Until `condition` (re-checked whenever something arrives) or `timeout`; the node must stay alive.
        quiet: False on timeout instead of raising."""
        end = time.monotonic() + timeout
        with self.changed:
            while not condition():
                left = end - time.monotonic()
                if left <= 0:
                    if quiet:
                        return False
                    raise SpatialqError(f"perception_node did not {what} within {timeout:.0f} s")
                self.changed.wait(min(left, 0.25))
                self._check_alive(what or "the soak")
        return True

    def _check_alive(self, what: str) -> None:
        if self.proc.poll() is not None:
            tail = self.log_path.read_text().strip().splitlines()
            raise SpatialqError(f"the node process exited ({self.proc.returncode}) during {what}: "
                                f"{tail[-1] if tail else 'no output'}")

