"""FrameWorker: two stages overlap, the latest frame wins the slot, errors and stop leave nothing hanging."""

from __future__ import annotations

import threading
import time

import pytest

from spatialq_ros.perception.frame_worker import FrameWorker

WAIT = 10.0  # s; a stage that waits longer means the test failed


class Recorder:
    """Stages whose frames can be held at the first stage (`hold`), and a log of what happened."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.events: list[tuple] = []
        self.hold: dict = {}  # frame -> Event the first stage waits for
        self.started: dict = {}  # frame -> Event set when the first stage begins it

    def log(self, *event) -> None:
        with self.lock:
            self.events.append(event)

    def of(self, kind: str) -> list:
        with self.lock:
            return [e[1] for e in self.events if e[0] == kind]

    def first(self, frame):
        self.started.setdefault(frame, threading.Event()).set()
        if frame in self.hold:
            assert self.hold[frame].wait(WAIT)
        if frame == "bad-first":
            raise ValueError("first failed")
        self.log("first", frame)
        return f"out-{frame}"

    def then(self, frame, output) -> None:
        assert output == f"out-{frame}"
        if frame == "bad-then":
            raise KeyError("then failed")
        self.log("then", frame)

    def worker(self, **kwargs) -> FrameWorker:
        return FrameWorker(self.first, self.then, on_drop=lambda f: self.log("drop", f),
                           on_error=lambda f, exc: self.log("error", f, type(exc).__name__), **kwargs)


def started(rec: Recorder, frame) -> bool:
    return rec.started.setdefault(frame, threading.Event()).wait(WAIT)


def test_the_second_stage_of_one_frame_overlaps_the_first_stage_of_the_next():
    next_began = threading.Event()
    overlapped = []

    def first(frame):
        if frame == 1:
            next_began.set()
        return frame

    def then(frame, output):
        if frame == 0:  # run one after the other, frame 1's first stage could not begin before this returns
            overlapped.append(next_began.wait(WAIT))

    worker = FrameWorker(first, then, on_drop=lambda f: None, on_error=lambda f, e: None)
    try:
        worker.submit(0)
        time.sleep(0.05)  # frame 0 has left the slot
        worker.submit(1)
        assert worker.wait_idle(WAIT)
    finally:
        assert worker.stop()
    assert overlapped == [True]


def test_frames_that_arrive_while_busy_are_dropped_and_the_latest_wins():
    rec = Recorder()
    rec.hold[0] = threading.Event()
    worker = rec.worker()
    try:
        worker.submit(0)
        assert started(rec, 0)
        for frame in (1, 2, 3):
            worker.submit(frame)
        assert rec.of("drop") == [1, 2]
        rec.hold[0].set()
        assert worker.wait_idle(WAIT)
    finally:
        assert worker.stop()
    assert rec.of("first") == [0, 3] and rec.of("then") == [0, 3]


def test_a_slow_second_stage_sets_the_pace_without_queueing_outputs():
    rec = Recorder()
    release = threading.Event()
    then = rec.then
    rec.then = lambda frame, output: (release.wait(WAIT) if frame == 0 else None, then(frame, output))
    worker = rec.worker()
    try:
        worker.submit(0)
        assert started(rec, 0)
        worker.submit(1)
        assert started(rec, 1)
        deadline = time.monotonic() + WAIT
        while rec.of("first") != [0, 1] and time.monotonic() < deadline:
            time.sleep(0.01)
        worker.submit(2)  # the first stage is done with 1 but holds it until the second takes it
        worker.submit(3)
        assert rec.of("drop") == [2] and 2 not in rec.started
        release.set()
        assert worker.wait_idle(WAIT)
    finally:
        assert worker.stop()
    assert rec.of("then") == [0, 1, 3]


def test_a_failing_frame_is_reported_and_the_worker_goes_on():
    rec = Recorder()
    worker = rec.worker()
    try:
        for frame in ("bad-first", "ok-1", "bad-then", "ok-2"):
            worker.submit(frame)
            assert worker.wait_idle(WAIT)
    finally:
        assert worker.stop()
    assert rec.of("error") == ["bad-first", "bad-then"]
    assert [e[2] for e in rec.events if e[0] == "error"] == ["ValueError", "KeyError"]
    assert rec.of("then") == ["ok-1", "ok-2"]


def test_a_broken_error_handler_does_not_stop_the_worker(capsys):
    done = []

    def first(frame):
        if frame == "bad":
            raise ValueError("bad frame")
        return frame

    def on_error(frame, exc):
        raise RuntimeError("handler bug")

    worker = FrameWorker(first, lambda f, o: done.append(f), on_drop=lambda f: None, on_error=on_error)
    try:
        worker.submit("bad")
        assert worker.wait_idle(WAIT)
        worker.submit("good")
        assert worker.wait_idle(WAIT)
    finally:
        assert worker.stop()
    assert done == ["good"] and "handler bug" in capsys.readouterr().err


def test_stop_finishes_the_frame_in_flight_drops_the_waiting_one_and_joins():
    rec = Recorder()
    rec.hold[0] = threading.Event()
    worker = rec.worker(name="test-worker")
    worker.submit(0)
    assert started(rec, 0)
    worker.submit(1)
    stopper = threading.Thread(target=worker.stop)
    stopper.start()
    time.sleep(0.1)
    assert stopper.is_alive()  # waits for frame 0
    rec.hold[0].set()
    stopper.join(WAIT)
    assert not stopper.is_alive()
    assert rec.of("then") == [0] and rec.of("drop") == [1]
    assert not any(t.name.startswith("test-worker") for t in threading.enumerate())
    worker.submit(2)  # after stop: dropped, never run
    assert worker.stop() and rec.of("drop") == [1, 2] and rec.of("first") == [0]


@pytest.mark.parametrize("frames", [0, 1, 50])
def test_every_submitted_frame_is_run_or_dropped_exactly_once(frames):
    rec = Recorder()
    worker = rec.worker()
    for frame in range(frames):
        worker.submit(frame)
        if frame % 7 == 0:
            time.sleep(0.002)
    assert worker.stop()
    assert sorted(rec.of("then") + rec.of("drop")) == list(range(frames))
    assert rec.of("then") == sorted(rec.of("then"))  # in order
