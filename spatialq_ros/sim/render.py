"""Cutting one camera frame (and its ground-truth mask) out of the world orthophoto.

A nadir camera over flat ground is an affine map from frame pixels to world pixels (rotation by yaw,
scale by altitude), so a frame is one warpAffine of the pyramid level nearest its ground resolution.
The camera then adds what a real one adds: exposure gain and white balance that drift, moving cloud
shadows, vignetting and sensor noise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import cv2
import numpy as np

from .flight import Pose, flight_path, focal_px
from .noise import fractal_noise
from .world import World, make_world

CLOUD_DOWNSCALE = 8
WIND_PX_PER_FRAME = np.array([0.9, 0.35])  # cloud drift in world pixels per frame


@dataclass(frozen=True)
class Exposure:
    gain: float
    white_balance: tuple[float, float, float]


def frame_to_world(pose: Pose, size: tuple[int, int], world: World, level: int = 0) -> np.ndarray:
    """2x3 affine from frame pixels (u right, v down) to pixels of pyramid `level` (X east, Y south).

    Pixel centres are integers at every level: world pixel X covers [X, X+1) * metres_per_px, and
    cv2.pyrDown puts level k+1 pixel i at level k pixel 2i.
    """
    width, height = size
    gsd = pose.z / focal_px(width)  # metres per frame pixel
    up = np.array([np.cos(pose.yaw), np.sin(pose.yaw)])  # map axes, metres
    right = np.array([np.sin(pose.yaw), -np.cos(pose.yaw)])
    mpp = world.metres_per_px
    to_px = np.array([[1 / mpp, 0.0], [0.0, -1 / mpp]]) / 2**level
    linear = to_px @ np.column_stack([right * gsd, -up * gsd])
    centre_px = (np.array([pose.x / mpp, world.rgb.shape[0] - pose.y / mpp]) - 0.5) / 2**level
    offset = centre_px - linear @ np.array([(width - 1) / 2, (height - 1) / 2])
    return np.column_stack([linear, offset])


def pyramid_level(pose: Pose, width: int, world: World) -> int:
    """Coarsest level whose pixels are no larger than a frame pixel (a warp from it skips no more than every
    other pixel, so crop rows do not alias)."""
    ratio = pose.z / focal_px(width) / world.metres_per_px
    return int(np.clip(np.floor(np.log2(max(ratio, 1.0))), 0, len(world.pyramid) - 1))


def render_frame(world: World, clouds: np.ndarray, vignette: np.ndarray, pose: Pose, index: int,
                 exposure: Exposure, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frame and mono8 field mask (same geometry) for one pose."""
    height, width = vignette.shape
    size = (width, height)
    level = pyramid_level(pose, width, world)
    inverse = cv2.WARP_INVERSE_MAP
    rgb = cv2.warpAffine(world.pyramid[level], frame_to_world(pose, size, world, level), size,
                         flags=cv2.INTER_LINEAR | inverse, borderMode=cv2.BORDER_REFLECT)
    to_world = frame_to_world(pose, size, world)
    mask = cv2.warpAffine(world.field_mask, to_world, size, flags=cv2.INTER_NEAREST | inverse,
                          borderMode=cv2.BORDER_REFLECT)
    to_clouds = to_world.copy()
    to_clouds[:, 2] += WIND_PX_PER_FRAME * index
    shadow = cv2.warpAffine(clouds, to_clouds / CLOUD_DOWNSCALE, size, flags=cv2.INTER_LINEAR | inverse,
                            borderMode=cv2.BORDER_WRAP)
    light = exposure.gain * vignette * (1.0 - 0.4 * shadow)
    frame = rgb.astype(np.float32) * light[..., None] * np.float32(exposure.white_balance)
    frame += 2.0 * rng.standard_normal(frame.shape, dtype=np.float32)
    return np.clip(frame + 0.5, 0, 255).astype(np.uint8), mask


def exposure_at(index: int, rng: np.random.Generator) -> Exposure:
    """Auto-exposure hunting around a slow cycle (14 s), white balance drifting over a slower one."""
    gain = 1.0 + 0.16 * np.sin(2 * np.pi * index / 140.0) + rng.normal(0, 0.015)
    warm = 0.03 * np.sin(2 * np.pi * index / 230.0 + 1.0)
    return Exposure(float(gain), (1.0 + warm, 1.0, 1.0 - warm))


def make_vignette(size: tuple[int, int]) -> np.ndarray:
    """Brightness falloff towards the corners (cos^4-like), 1 in the centre, about 0.8 in the corners."""
    width, height = size
    v, u = np.mgrid[0:height, 0:width].astype(np.float32)
    r2 = ((u - (width - 1) / 2) ** 2 + (v - (height - 1) / 2) ** 2) / ((width / 2) ** 2 + (height / 2) ** 2)
    return (1.0 - 0.2 * r2).astype(np.float32)


def make_clouds(world: World, seed: int) -> np.ndarray:
    """Soft cloud-shadow cover in [0, 1] over the world at 1/8 resolution: scattered cumulus, mostly clear."""
    rng = np.random.default_rng((seed, 2))
    n = world.rgb.shape[0] // CLOUD_DOWNSCALE
    cover = fractal_noise(rng, (n, n), 120 / world.metres_per_px / CLOUD_DOWNSCALE, octaves=3)
    return np.clip((cover - 0.45) * 2.5, 0, 1)


def render_flight(frames: int, size: tuple[int, int], hover: int = 0,
                  seed: int = 0) -> tuple[list[Pose], Iterator[tuple[np.ndarray, np.ndarray]]]:
    """A seeded flight: its poses, and its frames as (RGB, field mask), rendered one by one as they are
    taken. `spatialq sim` writes them into a bag; a machine without rosbags renders the same flight."""
    world = make_world(seed)
    clouds = make_clouds(world, seed)
    vignette = make_vignette(size)
    poses = flight_path(frames, world.size_m, hover, seed)
    rng = np.random.default_rng((seed, 3))
    return poses, (render_frame(world, clouds, vignette, pose, i, exposure_at(i, rng), rng)
                   for i, pose in enumerate(poses))
