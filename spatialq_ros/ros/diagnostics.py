"""Frame accounting for /diagnostics: fps, latency from header stamps, processed, dropped, bad per reason."""

from __future__ import annotations

import threading
import time
from collections import Counter, deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue


class FrameStats:
    def __init__(self, window: int = 100) -> None:
        self._lock = threading.Lock()
        self.received = 0
        self.processed = 0
        self.bad: Counter[str] = Counter()
        self._latency_ms: deque[float] = deque(maxlen=window)
        self._done_at: deque[float] = deque(maxlen=window)

    def frame_received(self) -> None:
        with self._lock:
            self.received += 1

    def frame_processed(self, latency_ms: float) -> None:
        with self._lock:
            self.processed += 1
            self._latency_ms.append(latency_ms)
            self._done_at.append(time.monotonic())

    def frame_bad(self, reason: str) -> None:
        with self._lock:
            self.bad[reason] += 1

    @property
    def dropped(self) -> int:
        """Frames the middleware delivered that were neither processed nor rejected (skipped while busy)."""
        return max(0, self.received - self.processed - sum(self.bad.values()))

    def to_message(self, stamp, name: str, hardware_id: str) -> DiagnosticArray:
        with self._lock:
            lat = np.array(self._latency_ms) if self._latency_ms else np.zeros(1)
            span = self._done_at[-1] - self._done_at[0] if len(self._done_at) > 1 else 0.0
            fps = (len(self._done_at) - 1) / span if span > 0 else 0.0
            values = {"fps": f"{fps:.2f}", "latency_p50_ms": f"{np.percentile(lat, 50):.1f}",
                      "latency_p95_ms": f"{np.percentile(lat, 95):.1f}", "received": str(self.received),
                      "processed": str(self.processed), "dropped": str(self.dropped),
                      "bad_frames": str(sum(self.bad.values()))}
            values.update({f"bad_frames.{k}": str(v) for k, v in sorted(self.bad.items())})
            level = DiagnosticStatus.WARN if self.bad or self.dropped else DiagnosticStatus.OK
        status = DiagnosticStatus(level=level, name=name, hardware_id=hardware_id,
                                  message="bad frames" if self.bad else "ok",
                                  values=[KeyValue(key=k, value=v) for k, v in values.items()])
        msg = DiagnosticArray()
        msg.header.stamp = stamp
        msg.status = [status]
        return msg
