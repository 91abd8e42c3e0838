"""A procedural farmland, drawn once as a top-down orthophoto with a field mask.

Fields are jittered quads on a grid with their own crop (colour, row spacing and orientation), separated
by dirt tracks; some borders carry hedges; tree patches sit on tracks and in field corners. Frames are
later cut out of this one picture, so revisits see exactly the same ground.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

METRES_PER_PX = 0.25
CROPS = np.array([  # RGB base colours: young wheat, ripe wheat, maize, bare soil, rapeseed, grass
    [96, 140, 60], [196, 170, 96], [70, 120, 50], [130, 100, 70], [200, 190, 60], [110, 160, 80],
], np.float32)
TRACK = np.array([150, 135, 115], np.float32)
HEDGE = np.array([40, 70, 35], np.float32)
TREE = np.array([30, 60, 30], np.float32)


@dataclass
class World:
    rgb: np.ndarray  # (H, W, 3) uint8 orthophoto
    field_mask: np.ndarray  # (H, W) uint8, 255 inside a cultivated field
    metres_per_px: float = METRES_PER_PX

    @property
    def size_m(self) -> tuple[float, float]:
        return self.rgb.shape[1] * self.metres_per_px, self.rgb.shape[0] * self.metres_per_px


def make_world(seed: int, size_px: int = 2400, cells: int = 6) -> World:
    rng = np.random.default_rng(seed)
    labels = np.zeros((size_px, size_px), np.int32)  # 0 = track, i + 1 = field i
    cell = size_px / cells
    jitter = cell * 0.12
    corners = np.stack(np.meshgrid(np.arange(cells + 1) * cell, np.arange(cells + 1) * cell), -1)
    corners[1:-1, 1:-1] += rng.uniform(-jitter, jitter, corners[1:-1, 1:-1].shape)
    track_px = 5.0 / METRES_PER_PX / 2
    borders = []
    for iy in range(cells):
        for ix in range(cells):
            quad = np.array([corners[iy, ix], corners[iy, ix + 1], corners[iy + 1, ix + 1], corners[iy + 1, ix]])
            centre = quad.mean(axis=0)
            shrunk = centre + (quad - centre) * (1 - 2 * track_px / cell)
            cv2.fillPoly(labels, [np.round(shrunk).astype(np.int32)], iy * cells + ix + 1)
            borders.append(quad)
    n_fields = cells * cells
    crop = rng.integers(0, len(CROPS), n_fields + 1)
    angle = rng.uniform(0, np.pi, n_fields + 1)
    spacing = rng.uniform(6, 16, n_fields + 1)  # px between crop rows (1.5-4 m)
    tone = rng.uniform(0.85, 1.15, n_fields + 1)

    ys, xs = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    along = xs * np.cos(angle)[labels].astype(np.float32) + ys * np.sin(angle)[labels].astype(np.float32)
    rows = 0.5 + 0.5 * np.sin(2 * np.pi * along / spacing[labels].astype(np.float32))
    base = CROPS[crop[labels]] * tone[labels, None].astype(np.float32)
    rgb = base * (0.75 + 0.35 * rows[..., None])
    inside = labels > 0
    rgb[~inside] = TRACK
    rgb *= _low_frequency_noise(rng, size_px, scale=64, amplitude=0.12)[..., None]

    mask = np.where(inside, 255, 0).astype(np.uint8)
    occluders = np.zeros((size_px, size_px), np.uint8)
    for quad in borders:  # hedges along about a third of the field edges
        for a, b in zip(quad, np.roll(quad, -1, axis=0)):
            if rng.random() < 0.3:
                pts = np.linspace(a, b, 24) + rng.normal(0, 2.0, (24, 2))
                cv2.polylines(occluders, [np.round(pts).astype(np.int32)], False, 1, thickness=int(rng.integers(8, 16)))
    for _ in range(cells * 3):  # tree patches: clusters of crowns
        centre = rng.uniform(0, size_px, 2)
        for _ in range(int(rng.integers(4, 14))):
            c = np.round(centre + rng.normal(0, 18, 2)).astype(int)
            cv2.circle(occluders, (int(c[0]), int(c[1])), int(rng.integers(6, 14)), 2, -1)
    for value, colour in ((1, HEDGE), (2, TREE)):
        where = occluders == value
        rgb[where] = colour * rng.uniform(0.8, 1.2, (int(where.sum()), 1)).astype(np.float32)
    mask[occluders > 0] = 0
    shade = cv2.GaussianBlur((occluders > 0).astype(np.float32), (0, 0), 6)  # soft shadow to the south-east
    shade = np.roll(shade, (10, 10), axis=(0, 1))
    rgb *= (1 - 0.35 * np.clip(shade, 0, 1))[..., None]
    rgb += rng.normal(0, 4, rgb.shape).astype(np.float32)
    return World(np.clip(rgb, 0, 255).astype(np.uint8), mask)


def _low_frequency_noise(rng: np.random.Generator, size: int, scale: int, amplitude: float) -> np.ndarray:
    coarse = rng.normal(0, 1, (size // scale + 2, size // scale + 2)).astype(np.float32)
    smooth = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    return 1 + amplitude * smooth / max(float(np.abs(smooth).max()), 1e-6)
