"""What stands up from the ground: hedges, tree copses, avenues and farm buildings, as a height map.

Heights matter twice: slopes shade crowns and roofs (lit side brighter), and a fixed low sun casts
shadows across fields and tracks, which is most of what makes an aerial picture read as 3-D.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .layout import HEDGE, TRACK, Boundary, Farmstead, Layout, rectangle
from .noise import fractal_noise

SUN_AZIMUTH = np.deg2rad(200.0)  # direction towards the sun, clockwise from north (south-south-west)
SUN_ELEVATION = np.deg2rad(48.0)
SKYLIGHT = np.array([0.55, 0.6, 0.7], np.float32)  # what is left in a shadow: bluish sky light
CROWN_RGB = np.array([[52, 82, 42], [62, 92, 46], [44, 70, 40], [74, 100, 54], [60, 76, 44]], np.float32)
ROOF_RGB = np.array([[150, 72, 56], [84, 84, 90], [172, 172, 176], [118, 88, 70]], np.float32)


@dataclass
class Relief:
    height_m: np.ndarray  # (H, W) float32, 0 on the ground
    albedo: np.ndarray  # (H, W, 3) float32 colour where height > 0
    is_tree: np.ndarray  # (H, W) bool


def raise_relief(rng: np.random.Generator, layout: Layout, metres_per_px: float) -> Relief:
    n = layout.size_px
    relief = Relief(np.zeros((n, n), np.float32), np.zeros((n, n, 3), np.float32), np.zeros((n, n), bool))
    px = 1 / metres_per_px
    for boundary in layout.boundaries:
        if boundary.kind == HEDGE:
            _hedge(rng, relief, boundary, px)
        elif boundary.kind == TRACK and rng.random() < 0.25:
            _avenue(rng, relief, boundary, px)
    for _ in range(int(rng.integers(10, 18))):
        _copse(rng, relief, rng.uniform(0, n, 2), px)
    for farm in layout.farmsteads:
        _farm_buildings(rng, relief, farm, px)
    lumps = 0.5 * fractal_noise(rng, (n, n), 1.2 * px)  # leaf clumps: bumps that the shading picks up
    relief.height_m = np.where(relief.is_tree, np.maximum(relief.height_m + lumps, 0.3), relief.height_m)
    relief.albedo *= np.where(relief.is_tree, 1 + 0.5 * lumps, 1)[..., None]
    return relief


def light(ground_rgb: np.ndarray, relief: Relief, metres_per_px: float) -> np.ndarray:
    """Ground and relief under the sun: slopes shaded by their angle to the sun, cast shadows in sky light."""
    raised = relief.height_m > 0
    rgb = np.where(raised[..., None], relief.albedo, ground_rgb)
    # slopes of the surface only: the drop from a crown's rim to the ground is not a slope the sun sees
    surface = np.where(raised, relief.height_m, cv2.dilate(relief.height_m, np.ones((3, 3), np.uint8)))
    gy, gx = np.gradient(surface, metres_per_px)
    sun = _towards_sun()
    facing = (-gx * sun[0] - gy * sun[1] + sun[2]) / np.sqrt(gx * gx + gy * gy + 1) / sun[2]
    shade = np.where(raised, 0.55 + 0.45 * np.clip(facing, 0, 1.5), 1.0).astype(np.float32)
    shadow = cast_shadow(relief.height_m, metres_per_px)[..., None]
    return rgb * shade[..., None] * (1 - shadow * (1 - SKYLIGHT))


def cast_shadow(height_m: np.ndarray, metres_per_px: float, factor: int = 2) -> np.ndarray:
    """Soft 0..1 shadow: a point is dark when something towards the sun rises above the sun's ray through it.

    Marched at 1/`factor` resolution (max-pooled heights keep thin hedges) and upsampled, which also gives
    the penumbra a soft edge.
    """
    n = height_m.shape[0] // factor * factor
    coarse = height_m[:n, :n].reshape(n // factor, factor, n // factor, factor).max(axis=(1, 3))
    step_m = metres_per_px * factor
    sun = _towards_sun()
    direction = sun[:2] / np.linalg.norm(sun[:2])
    drop_per_step = step_m * np.tan(SUN_ELEVATION)
    steps = int(np.ceil(coarse.max() / drop_per_step)) + 1
    padded = np.pad(coarse, steps + 1)
    h, w = coarse.shape
    dark = np.zeros(coarse.shape, bool)
    for k in range(1, steps + 1):
        dx, dy = np.round(k * direction).astype(int)
        caster = padded[steps + 1 + dy: steps + 1 + dy + h, steps + 1 + dx: steps + 1 + dx + w]
        dark |= caster - k * drop_per_step > coarse + 0.2
    soft = cv2.resize(dark.astype(np.float32), (n, n), interpolation=cv2.INTER_LINEAR)
    out = np.zeros(height_m.shape, np.float32)
    out[:n, :n] = soft
    return out


def _towards_sun() -> np.ndarray:
    """Unit vector to the sun in world-pixel axes (x east, y south, z up)."""
    east, north = np.sin(SUN_AZIMUTH), np.cos(SUN_AZIMUTH)
    return np.array([np.cos(SUN_ELEVATION) * east, -np.cos(SUN_ELEVATION) * north, np.sin(SUN_ELEVATION)])


def _crown(relief: Relief, centre: np.ndarray, radius_m: float, top_m: float, colour: np.ndarray,
           px: float, flatness: float = 0.5) -> None:
    """A paraboloid crown (edge slope 2 x `flatness`), merged with what is there by taking the higher surface."""
    n = relief.height_m.shape[0]
    radius_px = radius_m * px
    x0, y0 = (np.floor(centre - radius_px)).astype(int)
    x1, y1 = (np.ceil(centre + radius_px)).astype(int) + 1
    xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x1, n), min(y1, n)
    if xa >= xb or ya >= yb:
        return
    yy, xx = np.mgrid[ya:yb, xa:xb]
    r2 = ((xx - centre[0]) ** 2 + (yy - centre[1]) ** 2) / radius_px**2
    depth = min(0.5 * top_m, flatness * radius_m)
    dome = np.where(r2 < 1, top_m - depth * r2, 0).astype(np.float32)
    patch = relief.height_m[ya:yb, xa:xb]
    higher = dome > patch
    patch[higher] = dome[higher]
    relief.albedo[ya:yb, xa:xb][higher] = colour
    relief.is_tree[ya:yb, xa:xb][higher] = True


def _crown_colour(rng: np.random.Generator) -> np.ndarray:
    return CROWN_RGB[rng.integers(len(CROWN_RGB))] * rng.uniform(0.85, 1.15)


def _hedge(rng: np.random.Generator, relief: Relief, boundary: Boundary, px: float) -> None:
    """A row of small overlapping crowns along the boundary, with gaps and the odd standard tree."""
    a, b = boundary.start, boundary.end
    length_m = np.linalg.norm(b - a) / px
    along = (b - a) / np.linalg.norm(b - a)
    side = np.array([-along[1], along[0]])
    height = rng.uniform(2.5, 4.5)
    colour = _crown_colour(rng)
    gap = rng.uniform(0, length_m, 2) if rng.random() < 0.4 else np.array([0.0, 0.0])
    gap_len = rng.uniform(5, 15)
    t = 0.0
    while t < length_m:
        if not (gap[0] < t < gap[0] + gap_len):
            centre = a + (t * along + rng.normal(0, 0.4) * side) * px
            if rng.random() < 0.04:
                _crown(relief, centre, rng.uniform(3, 5), rng.uniform(9, 15), _crown_colour(rng), px)
            else:
                _crown(relief, centre, rng.uniform(1.5, 2.5), height + rng.normal(0, 0.3),
                       colour * rng.uniform(0.95, 1.05), px, flatness=0.3)
        t += rng.uniform(0.6, 1.0)


def _avenue(rng: np.random.Generator, relief: Relief, boundary: Boundary, px: float) -> None:
    """Evenly spaced trees beside a track, on one or both sides."""
    a, b = boundary.start, boundary.end
    length_m = np.linalg.norm(b - a) / px
    along = (b - a) / np.linalg.norm(b - a)
    side = np.array([-along[1], along[0]])
    offset_m = boundary.width_px / px / 2 + rng.uniform(1.5, 3)
    sides = (-1, 1) if rng.random() < 0.5 else (int(rng.choice([-1, 1])),)
    spacing = rng.uniform(8, 14)
    for t in np.arange(rng.uniform(2, spacing), length_m, spacing):
        for s in sides:
            centre = a + (t * along + s * offset_m * side + rng.normal(0, 0.3, 2)) * px
            _crown(relief, centre, rng.uniform(2.5, 4), rng.uniform(8, 14), _crown_colour(rng), px)


def _copse(rng: np.random.Generator, relief: Relief, centre: np.ndarray, px: float) -> None:
    spread_m = rng.uniform(4, 14)
    for _ in range(int(rng.integers(3, 12) * spread_m / 4)):  # dense enough for a closed canopy
        at = centre + rng.normal(0, spread_m, 2) * px
        _crown(relief, at, rng.uniform(3, 5.5), rng.uniform(10, 20), _crown_colour(rng), px)


def _farm_buildings(rng: np.random.Generator, relief: Relief, farm: Farmstead, px: float) -> None:
    """Two to four gable-roofed buildings inside the yard, aligned with it."""
    u = np.array([np.cos(farm.angle), np.sin(farm.angle)])
    v = np.array([-u[1], u[0]])
    n = relief.height_m.shape[0]
    for _ in range(int(rng.integers(2, 5))):
        length, width = rng.uniform(12, 30) * px, rng.uniform(8, 14) * px
        centre = (farm.centre + rng.uniform(-0.3, 0.3) * farm.size_px[0] * u
                  + rng.uniform(-0.25, 0.25) * farm.size_px[1] * v)
        angle = farm.angle + (np.pi / 2 if rng.random() < 0.3 else 0.0)
        corners = rectangle(centre, (length, width), angle)
        x0, y0 = np.maximum(np.floor(corners.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(axis=0)).astype(int) + 1, n)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        du, dv = np.array([np.cos(angle), np.sin(angle)]), np.array([-np.sin(angle), np.cos(angle)])
        along = (xx - centre[0]) * du[0] + (yy - centre[1]) * du[1]
        across = (xx - centre[0]) * dv[0] + (yy - centre[1]) * dv[1]
        inside = (np.abs(along) <= length / 2) & (np.abs(across) <= width / 2)
        eave, ridge = rng.uniform(3.5, 5), rng.uniform(6.5, 9.5)
        roof = (eave + (ridge - eave) * (1 - np.abs(across) / (width / 2))).astype(np.float32)
        patch = relief.height_m[y0:y1, x0:x1]
        higher = inside & (roof > patch)
        patch[higher] = roof[higher]
        relief.albedo[y0:y1, x0:x1][higher] = ROOF_RGB[rng.integers(len(ROOF_RGB))] * rng.uniform(0.9, 1.1)
        relief.is_tree[y0:y1, x0:x1][higher] = False
