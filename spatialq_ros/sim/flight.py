"""The camera's path: a figure-eight flown 1.35 times, so the flight revisits ground in two ways.

* At the crossing of the eight, the same ground is seen twice on the first lap, with headings about
  60 degrees apart.
* The last third of a lap re-flies the start on a parallel line 6 m to the side, 8 m higher and with the
  camera yawed 15 degrees, later in the exposure cycle: same ground, nearby but different pose.

The path is scaled to the number of frames (short flights fly faster), so every flight revisits.
`hover` frames, from a third of the way in, hold still with centimetre jitter (a hovering drone).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ALTITUDE_M = 80.0
FOOTPRINT_M = 90.0  # ground width seen across the frame at ALTITUDE_M: fixes the focal length
LAPS = 1.35
REVISIT_OFFSET_M, REVISIT_CLIMB_M, REVISIT_YAW = 6.0, 8.0, np.deg2rad(15.0)
PLACE_CELL_M = 25.0


@dataclass(frozen=True)
class Pose:
    x: float  # metres east in `map`
    y: float  # metres north in `map`
    z: float  # metres above ground
    yaw: float  # radians, counter-clockwise from east; the image's up direction

    @property
    def quaternion(self) -> tuple[float, float, float, float]:
        return (0.0, 0.0, float(np.sin(self.yaw / 2)), float(np.cos(self.yaw / 2)))


def focal_px(width: int) -> float:
    """Focal length in pixels of a camera whose frame is `width` px wide (square pixels)."""
    return width * ALTITUDE_M / FOOTPRINT_M


def flight_path(frames: int, world_size_m: tuple[float, float], hover: int = 0, seed: int = 0) -> list[Pose]:
    rng = np.random.default_rng((seed, 1))  # one stream per purpose and seed
    w, h = world_size_m
    centre = np.array([w / 2, h / 2])
    radii = np.array([0.34 * w, 0.3 * h])
    start = rng.uniform(0, 2 * np.pi)
    turn = float(rng.choice([-1.0, 1.0]))  # which way round the eight is flown
    moving = max(1, frames - hover)
    hover_start = min(frames // 3, frames - hover)
    poses, step = [], 0
    for i in range(frames):
        hovering = hover_start <= i < hover_start + hover
        lap = LAPS * step / moving
        t = start + 2 * np.pi * lap
        point = centre + radii * np.array([np.sin(t), turn * np.sin(2 * t)])
        tangent = radii * np.array([np.cos(t), 2 * turn * np.cos(2 * t)])
        heading = float(np.arctan2(tangent[1], tangent[0]))
        revisit = _smoothstep(0.85, 1.0, lap)  # glide onto the revisit line at the end of the first lap
        left = np.array([-np.sin(heading), np.cos(heading)])
        x, y = point + left * REVISIT_OFFSET_M * revisit
        z = ALTITUDE_M + 4 * np.sin(3 * t) + REVISIT_CLIMB_M * revisit
        yaw = heading + 0.05 * np.sin(5 * t) + REVISIT_YAW * revisit
        if hovering:
            x, y, z = np.array([x, y, z]) + rng.normal(0, 0.03, 3)
            yaw += rng.normal(0, 0.002)
        else:
            step += 1
        poses.append(Pose(float(x), float(y), float(z), float(np.arctan2(np.sin(yaw), np.cos(yaw)))))
    return poses


def place_id(pose: Pose) -> int:
    """Cell of a 25 m grid under the camera: revisits of the same ground share an id."""
    return int(pose.x // PLACE_CELL_M) + 1000 * int(pose.y // PLACE_CELL_M)


def _smoothstep(low: float, high: float, x: float) -> float:
    s = min(max((x - low) / (high - low), 0.0), 1.0)
    return s * s * (3 - 2 * s)
