"""Settings that ROS 2 and Fast DDS read from the environment once, when a context or participant is made:
set them for that moment only, so they reach the graph meant and no other made later in the process."""

from __future__ import annotations

import os
from contextlib import contextmanager


@contextmanager
def environment(values: dict[str, str]):
    """`values` in os.environ for the block; then each variable is as it was before (or unset again)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
