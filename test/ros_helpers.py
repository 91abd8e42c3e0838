"""Driving nodes over real DDS from a test: spin until something happens, and deliver a best-effort frame."""

from __future__ import annotations

import time


def spin_until(executor, condition, timeout=60.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not condition():
        executor.spin_once(timeout_sec=0.05)
    assert condition(), "timed out"


def send(executor, publisher, node, msg, done=False):
    """Publish until `node` has received it: best effort, depth 1, so a frame can be lost on the way.
    done: then wait until the node is done with every frame it received (a node that works on its own
    threads drops a frame that arrives while it is busy)."""
    before = node.stats.received
    while node.stats.received == before:
        publisher.publish(msg)
        end = time.monotonic() + 2.0  # a resend that crosses a slow delivery would arrive twice
        while time.monotonic() < end and node.stats.received == before:
            executor.spin_once(timeout_sec=0.05)
    if done:
        spin_until(executor, lambda: node.stats.finished >= node.stats.received)
