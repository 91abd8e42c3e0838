"""The deploy process as it runs on the robot: `perception_node` in its own interpreter on the ONNX engine,
fed frames over DDS. Measures its peak memory (VmHWM) and end-to-end latency, and checks that the
process never loaded torch.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from sensor_msgs.msg import Image, PointCloud2

from ..bench.rss import loads_torch, process_mb
from ..errors import SpatialqError
from .environment import environment
from .messages import byte_array
from .qos import OUTPUT_QOS, SENSOR_QOS


# Frames over ~512 KB (448x448 rgb8 is 602 KB) do not fit Fast DDS's default shared-memory segment and go
# over UDP, where best-effort fragments get lost on a busy host: every such frame vanishes. LARGE_DATA
# sends user data over shared memory / TCP instead. Both processes must use it (see README).
LARGE_FRAMES = {"FASTDDS_BUILTIN_TRANSPORTS": "LARGE_DATA"}


def measure_node(artifact: str, size: tuple[int, int], frames: list[np.ndarray], timeout: float = 120.0) -> dict:
    """Run perception_node on `artifact` (keypoints only, no frame cache) over `frames`; return its figures."""
    ns = f"/bench_{uuid.uuid4().hex[:8]}"
    cmd = [sys.executable, "-m", "spatialq_ros.ros.perception_node", "--ros-args", "-r", f"__ns:={ns}",
           "-p", f"model:={artifact}", "-p", f"size:={size[0]}x{size[1]}", "-p", "frame_cache_threshold:=0.0",
           "--log-level", "warn"]
    env = {**os.environ, **LARGE_FRAMES}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    with environment(LARGE_FRAMES):  # the feeder's DDS participant reads it when it is made
        context = rclpy.Context()
        rclpy.init(context=context)
        node = rclpy.create_node("bench_feeder", context=context)
    arrivals: dict[int, float] = {}  # frame (header stamp sec) -> when its keypoints arrived
    node.create_subscription(PointCloud2, f"{ns}/keypoints",
                             lambda m: arrivals.setdefault(m.header.stamp.sec, time.perf_counter()), OUTPUT_QOS)
    publisher = node.create_publisher(Image, f"{ns}/image", SENSOR_QOS)
    diagnostics: dict[str, str] = {}
    node.create_subscription(DiagnosticArray, "/diagnostics", lambda m: diagnostics.update(
        {kv.key: kv.value for st in m.status if st.name == f"{ns}/perception_node" for kv in st.values}), 10)
    executor = rclpy.executors.SingleThreadedExecutor(context=context)
    executor.add_node(node)
    latencies = []
    try:
        _spin_until(executor, proc, lambda: publisher.get_subscription_count() > 0, timeout, "start")
        for i, rgb in enumerate(frames):
            msg = _frame(rgb, i)
            deadline = time.monotonic() + timeout
            while i not in arrivals:  # best effort, depth 1: resend until this frame's output arrives
                if time.monotonic() > deadline:
                    raise SpatialqError(f"perception_node gave no output for frame {i} within {timeout:.0f} s")
                sent = time.perf_counter()
                publisher.publish(msg)
                _spin_until(executor, proc, lambda: i in arrivals, timeout, f"frame {i}", quiet=True)
            latencies.append(1000.0 * (arrivals[i] - sent))
        latency = float(np.percentile(latencies[1:] or latencies, 50))
        overload = _overload(executor, proc, publisher, frames, arrivals, latency, diagnostics)
        return {"rss_mb": process_mb(proc.pid, "VmHWM"), "torch_loaded": loads_torch(proc.pid),
                "latency_p50_ms": latency,
                "frames": len(frames), **overload}
    finally:
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)


def _overload(executor, proc, publisher, frames, arrivals: dict, latency_ms: float, diagnostics: dict) -> dict:
    """Frames at twice the rate the node can take, for a few seconds: the throughput it sustains, against
    the limit its backbone alone sets (1 / backbone p50 from its /diagnostics)."""
    period = latency_ms / 2000.0
    duration = max(4.0, 20 * latency_ms / 1000.0)
    first = 1000
    start = time.perf_counter()
    k = 0
    while time.perf_counter() - start < duration:
        publisher.publish(_frame(frames[k % len(frames)], first + k))
        k += 1
        _spin_until(executor, proc, lambda: False, period, "overload", quiet=True, seconds=period)
    done = [t for s, t in arrivals.items() if s >= first and t - start <= duration]
    _spin_until(executor, proc, lambda: "stage.backbone_p50_ms" in diagnostics, 5.0, "report diagnostics",
                quiet=True, seconds=3.0)
    fps = len(done) / duration
    backbone = float(diagnostics.get("stage.backbone_p50_ms", "nan"))
    return {"overload_published": k, "sustained_fps": fps, "backbone_p50_ms": backbone,
            "fps_vs_backbone_limit": fps * backbone / 1000.0}


def _frame(rgb: np.ndarray, sec: int) -> Image:
    """An rgb8 camera frame stamped `sec` s: the stamp names the frame its outputs answer."""
    msg = Image(height=rgb.shape[0], width=rgb.shape[1], encoding="rgb8", step=rgb.shape[1] * 3)
    msg.header.stamp.sec, msg.header.frame_id = sec, "camera"
    msg.data = byte_array(rgb)
    return msg


def _spin_until(executor, proc, condition, timeout: float, what: str, quiet: bool = False,
                seconds: float = 10.0) -> None:
    """Spin until `condition`; raise after `timeout` (quiet: just return after `seconds`) or if the node died."""
    end = time.monotonic() + (seconds if quiet else timeout)
    while time.monotonic() < end and not condition():
        if proc.poll() is not None:
            tail = (proc.stderr.read() or "").strip().splitlines()
            raise SpatialqError(f"perception_node exited ({proc.returncode}) at {what}: {tail[-1] if tail else ''}")
        executor.spin_once(timeout_sec=0.02)
    if not quiet and not condition():
        raise SpatialqError(f"perception_node did not {what} within {timeout:.0f} s")
