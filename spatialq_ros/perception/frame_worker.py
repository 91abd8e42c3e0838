"""Two pipeline stages on two threads of their own, so that the slow stage never waits for the rest.

A node's per-frame work is one slow stage (the backbone; ONNX Runtime releases the GIL while it runs)
and a few milliseconds of Python around it (heads, messages, publishing). Run one after the other, the
backbone idles through that tail; here frame N's `then` overlaps frame N+1's `first`:

    submit(frame) -> [one slot, latest frame wins] -> first(frame) -> [one slot] -> then(frame, output)

`submit` never blocks: a frame still waiting in the slot is replaced, and `on_drop` hears of it (frames
that arrive while the worker is busy are dropped, not queued). `first` hands its output on and takes the
next frame at once; it waits only while `then` has not yet taken the previous output (so when `then`
is the slower stage, it sets the pace, and frames drop at the slot). An exception from either stage goes
to `on_error` with its frame, and the worker goes on. `stop` lets the frames already in a stage finish,
drops the one waiting in the slot, and joins both threads.

No ROS here: the node gives the stages, and this is tested without DDS.
"""

from __future__ import annotations

import threading
import traceback
from typing import Any, Callable

_EMPTY = object()


class FrameWorker:
    def __init__(self, first: Callable[[Any], Any], then: Callable[[Any, Any], None], *,
                 on_drop: Callable[[Any], None], on_error: Callable[[Any, Exception], None],
                 name: str = "frames") -> None:
        self._first, self._then, self._on_drop, self._on_error = first, then, on_drop, on_error
        self._changed = threading.Condition()
        self._waiting: Any = _EMPTY  # the next frame for `first`
        self._handoff: Any = _EMPTY  # (frame, output) of `first`, for `then`
        self._busy = 0  # frames inside a stage or between the stages
        self._stopping = False
        self._first_done = False
        self._threads = [threading.Thread(target=self._run_first, name=f"{name}-first", daemon=True),
                         threading.Thread(target=self._run_then, name=f"{name}-then", daemon=True)]
        for thread in self._threads:
            thread.start()

    def submit(self, frame: Any) -> None:
        """Hand `frame` to the first stage without waiting; a frame still waiting there is dropped for it.
        After `stop`, `frame` itself is dropped."""
        with self._changed:
            if self._stopping:
                dropped = frame
            else:
                dropped, self._waiting = self._waiting, frame
                self._changed.notify_all()
        if dropped is not _EMPTY:
            self._on_drop(dropped)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no frame is waiting or inside a stage; False on timeout."""
        with self._changed:
            return self._changed.wait_for(lambda: self._waiting is _EMPTY and self._busy == 0, timeout)

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Finish the frames inside the stages, drop the waiting one, join both threads (idempotent).
        False if a stage did not finish within `timeout` (its threads are daemons: they cannot hold up exit)."""
        with self._changed:
            self._stopping = True
            dropped, self._waiting = self._waiting, _EMPTY
            self._changed.notify_all()
        if dropped is not _EMPTY:
            self._on_drop(dropped)
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout)
        return not any(thread.is_alive() for thread in self._threads)

    def _run_first(self) -> None:
        try:
            while True:
                with self._changed:
                    self._changed.wait_for(lambda: self._stopping or self._waiting is not _EMPTY)
                    if self._stopping:
                        return
                    frame, self._waiting = self._waiting, _EMPTY
                    self._busy += 1
                try:
                    output = self._first(frame)
                except Exception as exc:  # noqa: BLE001 - the stage's caller decides; the worker goes on
                    self._failed(frame, exc)
                    continue
                with self._changed:
                    self._changed.wait_for(lambda: self._handoff is _EMPTY)
                    self._handoff = (frame, output)
                    self._changed.notify_all()
        finally:
            with self._changed:
                self._first_done = True
                self._changed.notify_all()

    def _run_then(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._handoff is not _EMPTY or self._first_done)
                if self._handoff is _EMPTY:
                    return
                (frame, output), self._handoff = self._handoff, _EMPTY
                self._changed.notify_all()
            try:
                self._then(frame, output)
            except Exception as exc:  # noqa: BLE001
                self._failed(frame, exc)
                continue
            self._finished()

    def _failed(self, frame: Any, exc: Exception) -> None:
        try:
            self._on_error(frame, exc)
        except Exception:  # noqa: BLE001 - a broken handler must not stop the worker
            traceback.print_exc()
        self._finished()

    def _finished(self) -> None:
        with self._changed:
            self._busy -= 1
            self._changed.notify_all()
