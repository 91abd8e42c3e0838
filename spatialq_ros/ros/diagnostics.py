"""Frame accounting for /diagnostics: fps, latency from header stamps, per-stage times, processed, dropped, bad,
and how long the camera has been silent."""

from __future__ import annotations

import threading
import time
from collections import Counter, defaultdict, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class FrameStats:
    def __init__(self, window: int = 100) -> None:
        self._changed = threading.Condition()
        self.received = 0
        self.processed = 0
        self.cached = 0
        self.skipped = 0  # dropped unprocessed: a newer frame took its place while the node was busy
        self.bad: Counter[str] = Counter()
        self._window = window
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._stage_ms: dict[str, deque[float]] = defaultdict(lambda: deque(maxlen=self._window))
        self._done_at: deque[float] = deque(maxlen=window)
        self._heard_at = time.monotonic()  # the last frame, or when the node started waiting for frames
        self._bad_reported = 0  # bad frames counted by the last message: WARN tells of new ones only

    def frame_received(self) -> None:
        with self._changed:
            self.received += 1
            self._heard_at = time.monotonic()

    def expect_frames(self) -> None:
        """Start the silence clock now (at activation): a node that was inactive was not waiting for frames."""
        with self._changed:
            self._heard_at = time.monotonic()

    def silent_s(self) -> float:
        """Seconds since the last frame arrived (or since `expect_frames`), on the monotonic clock."""
        with self._changed:
            return max(0.0, time.monotonic() - self._heard_at)

    def frame_processed(self, latency_ms: float, stages_ms: dict[str, float] | None = None,
                        cached: bool = False) -> None:
        with self._changed:
            self.processed += 1
            self.cached += int(cached)
            self._latency_ms.append(latency_ms)
            for stage, ms in (stages_ms or {}).items():
                self._stage_ms[stage].append(ms)
            self._done_at.append(time.monotonic())
            self._changed.notify_all()

    def frame_dropped(self) -> None:
        """A received frame given up unprocessed (a newer one replaced it while the node was busy)."""
        with self._changed:
            self.skipped += 1
            self._changed.notify_all()

    def frame_bad(self, reason: str) -> None:
        with self._changed:
            self.bad[reason] += 1
            self._changed.notify_all()

    @property
    def finished(self) -> int:
        """Frames the node is done with: processed, rejected or dropped."""
        return self.processed + sum(self.bad.values()) + self.skipped

    def wait_finished(self, count: int, timeout: float) -> bool:
        """Block until the node is done with `count` frames (lockstep replay); False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self.finished >= count, timeout)

    @property
    def dropped(self) -> int:
        """Frames the middleware delivered that were neither processed nor rejected (skipped while busy)."""
        return max(0, self.received - self.processed - sum(self.bad.values()))

    def to_message(self, stamp, name: str, hardware_id: str, extra: dict[str, str] | None = None,
                   stale_after: float | None = None) -> DiagnosticArray:
        """stale_after: WARN "no frames for N s" once the camera has been silent longer (None: not waiting)."""
        silent = self.silent_s()
        with self._changed:
            lat = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            span = self._done_at[-1] - self._done_at[0] if len(self._done_at) > 1 else 0.0
            fps = (len(self._done_at) - 1) / span if span > 0 else 0.0
            values = {"fps": f"{fps:.2f}", "latency_p50_ms": f"{np.percentile(lat, 50):.1f}",
                      "latency_p95_ms": f"{np.percentile(lat, 95):.1f}", "received": str(self.received),
                      "processed": str(self.processed), "dropped": str(self.dropped),
                      "frame_cache_reused": str(self.cached), "bad_frames": str(sum(self.bad.values()))}
            for stage, times in self._stage_ms.items():
                values[f"stage.{stage}_p50_ms"] = f"{np.percentile(times, 50):.1f}"
                values[f"stage.{stage}_p95_ms"] = f"{np.percentile(times, 95):.1f}"
            values.update({f"bad_frames.{k}": str(v) for k, v in sorted(self.bad.items())})
            values.update(extra or {})
            # WARN for bad frames since the last message, not for ever after one; skipped frames are counted but
            # normal (a camera faster than the backbone: stale frames drop while inference runs)
            new_bad, self._bad_reported = sum(self.bad.values()) - self._bad_reported, sum(self.bad.values())
            level = DiagnosticStatus.WARN if new_bad else DiagnosticStatus.OK
            message = f"{new_bad} bad frames since the last report" if new_bad else "ok"
        if stale_after is not None:
            values["seconds_since_last_frame"] = f"{silent:.1f}"
            if silent > stale_after:
                level, message = DiagnosticStatus.WARN, f"no frames for {silent:.0f} s"
        if "configure_error" in values:
            level, message = DiagnosticStatus.ERROR, values["configure_error"]
        status = DiagnosticStatus(level=level, name=name, hardware_id=hardware_id, message=message,
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray()
        msg.header.stamp = stamp
        msg.status = [status]
        return msg
