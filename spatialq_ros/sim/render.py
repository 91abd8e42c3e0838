"""Cutting one camera frame (and its ground-truth mask) out of the world orthophoto."""

from __future__ import annotations

import cv2
import numpy as np

from .flight import FOOTPRINT_M, Pose
from .world import World

CLOUD_DOWNSCALE = 8


def frame_to_world(pose: Pose, size: tuple[int, int], world: World) -> np.ndarray:
    """2x3 affine from frame pixels (u, v) to world pixels (X, Y); world Y grows southwards."""
    width, height = size
    gsd = FOOTPRINT_M / width  # metres per frame pixel
    up = np.array([np.cos(pose.yaw), np.sin(pose.yaw)])
    right = np.array([np.sin(pose.yaw), -np.cos(pose.yaw)])
    mpp = world.metres_per_px
    world_h = world.rgb.shape[0]
    # map metres -> world px: X = x / mpp, Y = world_h - y / mpp
    to_px = np.array([[1 / mpp, 0], [0, -1 / mpp]])
    a = to_px @ np.column_stack([right * gsd, -up * gsd])
    centre = to_px @ np.array([pose.x, pose.y]) + np.array([0, world_h])
    offset = centre - a @ np.array([width / 2, height / 2])
    return np.column_stack([a, offset])


def render_frame(world: World, clouds: np.ndarray, pose: Pose, size: tuple[int, int], gain: float,
                 drift_px: tuple[float, float], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """RGB uint8 frame and mono8 field mask for one pose; exposure `gain`, cloud shadows drifting by `drift_px`."""
    affine = frame_to_world(pose, size, world)
    flags = cv2.WARP_INVERSE_MAP
    rgb = cv2.warpAffine(world.rgb, affine, size, flags=cv2.INTER_LINEAR | flags, borderMode=cv2.BORDER_REFLECT)
    mask = cv2.warpAffine(world.field_mask, affine, size, flags=cv2.INTER_NEAREST | flags,
                          borderMode=cv2.BORDER_REFLECT)
    cloud_affine = affine.copy()
    cloud_affine[:, 2] += drift_px
    cloud_affine /= CLOUD_DOWNSCALE
    shadow = cv2.warpAffine(clouds, cloud_affine, size, flags=cv2.INTER_LINEAR | flags, borderMode=cv2.BORDER_WRAP)
    light = gain * (1.0 - 0.35 * shadow)
    noisy = rgb.astype(np.float32) * light[..., None] + rng.normal(0, 2.0, rgb.shape).astype(np.float32)
    return np.clip(noisy, 0, 255).astype(np.uint8), mask


def make_clouds(world: World, seed: int) -> np.ndarray:
    """Soft cloud-shadow coverage in [0, 1] over the world, at 1/8 resolution."""
    rng = np.random.default_rng(seed + 2)
    n = world.rgb.shape[0] // CLOUD_DOWNSCALE
    coarse = rng.normal(0, 1, (n // 16 + 2, n // 16 + 2)).astype(np.float32)
    field = cv2.resize(coarse, (n, n), interpolation=cv2.INTER_CUBIC)
    return np.clip((field - 0.6) * 1.5, 0, 1)
