"""The camera's path: an elliptical survey loop flown about 1.35 times, so the last quarter revisits the
first from a slightly wider line, at a different time of the exposure cycle; optionally a hover."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALTITUDE_M = 80.0
FOOTPRINT_M = 90.0  # ground width seen by the camera
LAPS = 1.35
PLACE_CELL_M = 25.0


@dataclass(frozen=True)
class Pose:
    x: float  # metres east in `map`
    y: float  # metres north in `map`
    z: float
    yaw: float  # radians, counter-clockwise from east; the image's up direction

    @property
    def quaternion(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, float(np.sin(self.yaw / 2)), float(np.cos(self.yaw / 2)))


def flight_path(frames: int, world_size_m: tuple[float, float], hover: int = 0, seed: int = 0) -> list[Pose]:
    """`frames` poses; `hover` of them (from a third of the way) hold still with centimetre jitter."""
    rng = np.random.default_rng(seed + 1)
    w, h = world_size_m
    cx, cy = w / 2, h / 2
    rx, ry = 0.33 * w, 0.25 * h
    moving = max(1, frames - hover)
    hover_start = frames // 3 if hover else frames
    poses = []
    step = 0
    for i in range(frames):
        hovering = hover_start <= i < hover_start + hover
        t = LAPS * 2 * np.pi * step / moving
        lap = t / (2 * np.pi)
        widen = 1.0 + 0.025 * np.floor(lap)  # the second pass flies a slightly wider line
        x, y = cx + rx * widen * np.cos(t), cy + ry * widen * np.sin(t)
        yaw = float(np.arctan2(ry * np.cos(t), -rx * np.sin(t)))  # along the path
        if hovering:
            x, y = x + rng.normal(0, 0.03), y + rng.normal(0, 0.03)
        else:
            step += 1
        poses.append(Pose(float(x), float(y), ALTITUDE_M, yaw))
    return poses


def place_id(pose: Pose) -> int:
    """Cell of a 25 m grid: revisits of the same ground share an id."""
    return int(pose.x // PLACE_CELL_M) + 1000 * int(pose.y // PLACE_CELL_M)
