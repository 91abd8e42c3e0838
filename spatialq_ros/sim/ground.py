"""The flat ground of the world: crop fields, grass margins, dirt tracks and farmyards, as one picture.

Field texture is a function of position: the distance across rows (at the field's own angle, with a
little meander) gives rows, tramlines and swaths; near the border the distance to the border takes its
place, so rows turn parallel to the edge as they do on a headland.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .crops import FieldCrops, assign_crops
from .layout import TRACK, Layout, rectangle
from .noise import fractal_noise, smooth_noise

FIELD, GRASS, DIRT, YARD = 1, 2, 3, 4  # ground classes
GRASS_RGB = np.array([108, 138, 70], np.float32)
DRY_GRASS_RGB = np.array([156, 150, 104], np.float32)
DIRT_RGB = np.array([160, 142, 116], np.float32)
YARD_RGB = np.array([150, 147, 138], np.float32)
RUT_OFFSET_M, RUT_HALF_WIDTH_M = 0.85, 0.28


@dataclass
class Ground:
    rgb: np.ndarray  # (H, W, 3) float32
    kind: np.ndarray  # (H, W) uint8 ground class


def paint_ground(rng: np.random.Generator, layout: Layout, metres_per_px: float) -> Ground:
    n = layout.size_px
    field_id = np.zeros((n, n), np.int32)
    for i, polygon in enumerate(layout.fields):
        cv2.fillPoly(field_id, [np.round(polygon).astype(np.int32)], i + 1)
    kind = np.full((n, n), FIELD, np.uint8)
    centrelines = np.zeros((n, n), np.uint8)
    for b in sorted(layout.boundaries, key=lambda b: b.kind == TRACK):  # tracks drawn over margins
        a, e = tuple(np.round(b.start).astype(int)), tuple(np.round(b.end).astype(int))
        cv2.line(kind, a, e, DIRT if b.kind == TRACK else GRASS, max(1, int(round(b.width_px))), cv2.LINE_8)
        if b.kind == TRACK:
            cv2.line(centrelines, a, e, 1, 1)
    for farm in layout.farmsteads:
        cv2.fillPoly(kind, [np.round(rectangle(farm.centre, farm.size_px, farm.angle)).astype(np.int32)], YARD)
    field_id[kind != FIELD] = 0

    crops = assign_crops(rng, len(layout.fields))
    rgb = np.empty((n, n, 3), np.float32)
    inside = kind == FIELD
    rgb[inside] = _fields(rng, field_id, crops, metres_per_px)[inside]
    for cls, painter in ((GRASS, _grass), (DIRT, _dirt), (YARD, _yard)):
        where = kind == cls
        rgb[where] = painter(rng, kind, centrelines, metres_per_px)[where]
    rgb *= (1 + 0.06 * smooth_noise(rng, (n, n), 60 / metres_per_px))[..., None]  # soil moisture, light haze
    return Ground(rgb, kind)


def _fields(rng: np.random.Generator, field_id: np.ndarray, crops: FieldCrops, mpp: float) -> np.ndarray:
    n = field_id.shape[0]
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) * mpp
    angle = crops.angle[field_id]
    meander = 0.25 * smooth_noise(rng, (n, n), 15 / mpp)
    across = xs * np.cos(angle) + ys * np.sin(angle) + meander  # metres across the rows
    del xs, ys, angle
    border_m = cv2.distanceTransform((field_id > 0).astype(np.uint8), cv2.DIST_L2, 5) * mpp
    headland = crops.headland_m[field_id]
    on_headland = border_m < headland
    rows_at = np.where(on_headland, border_m + meander, across)
    spacing = crops.spacing_m[field_id]
    rows = 0.5 + 0.5 * np.cos(2 * np.pi * rows_at / spacing)

    cover = crops.cover[field_id] + crops.row_contrast[field_id] * (rows - 0.5)  # a pure sinusoid: no aliasing
    cover *= 1 - 0.35 * np.clip(fractal_noise(rng, (n, n), 25 / mpp), 0, 1)  # thin patches
    tram = crops.tramline_m[field_id]
    wheel = np.where(on_headland, np.abs(border_m - headland / 2),
                     np.abs(np.mod(across, np.maximum(tram, 1)) - tram / 2))  # metres from a tramline's middle
    on_tramline = (tram > 0) & (np.abs(wheel - RUT_OFFSET_M) < RUT_HALF_WIDTH_M)
    cover = np.where(on_tramline, 0.15 * cover, cover)
    cover = np.clip(cover, 0, 1)[..., None]
    rgb = crops.soil[field_id] + cover * (crops.plant[field_id] - crops.soil[field_id])

    swath = np.where(crops.swaths[field_id] & ~on_headland, 0.07 * np.tanh(6 * (rows - 0.5)), 0)
    light = crops.tone[field_id] * (1 + swath + 0.05 * fractal_noise(rng, (n, n), 30 / mpp)
                                    + 0.04 * smooth_noise(rng, (n, n), 0.6 / mpp))
    return rgb * light[..., None]


def _grass(rng: np.random.Generator, kind: np.ndarray, centrelines: np.ndarray, mpp: float) -> np.ndarray:
    n = kind.shape[0]
    dryness = np.clip(0.5 + 0.6 * fractal_noise(rng, (n, n), 8 / mpp), 0, 1)[..., None]
    rgb = GRASS_RGB + dryness * (DRY_GRASS_RGB - GRASS_RGB)
    return rgb * (1 + 0.08 * smooth_noise(rng, (n, n), 0.5 / mpp))[..., None]


def _dirt(rng: np.random.Generator, kind: np.ndarray, centrelines: np.ndarray, mpp: float) -> np.ndarray:
    """Dirt with two darker wheel ruts, a patchy grass strip between them, grassy verges."""
    n = kind.shape[0]
    from_centre = cv2.distanceTransform(1 - centrelines, cv2.DIST_L2, 5) * mpp
    from_verge = cv2.distanceTransform((kind == DIRT).astype(np.uint8), cv2.DIST_L2, 5) * mpp
    grass = np.clip(0.7 - from_centre / 0.4, 0, 1) * np.clip(0.5 + fractal_noise(rng, (n, n), 3 / mpp), 0, 1)
    grass = np.maximum(grass, np.clip(1 - from_verge / 0.5, 0, 1) * 0.8)[..., None]
    rut = np.abs(from_centre - RUT_OFFSET_M) < RUT_HALF_WIDTH_M
    dirt = DIRT_RGB * (1 - 0.12 * rut[..., None]) * (1 + 0.07 * fractal_noise(rng, (n, n), 2 / mpp))[..., None]
    return dirt + grass * (GRASS_RGB - dirt)


def _yard(rng: np.random.Generator, kind: np.ndarray, centrelines: np.ndarray, mpp: float) -> np.ndarray:
    n = kind.shape[0]
    stains = np.clip(fractal_noise(rng, (n, n), 6 / mpp), 0, 1)
    return YARD_RGB * (1 - 0.2 * stains + 0.04 * smooth_noise(rng, (n, n), 0.5 / mpp))[..., None]

