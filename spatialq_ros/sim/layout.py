"""Where things are: field polygons on a jittered, uneven grid, and what separates neighbouring fields.

Field edges come in runs (a track or hedge usually follows a grid line for several fields), some fields are
cut in two by a margin or hedge, and one or two farmsteads sit on field corners. Everything is in world
pixels; `world.py` turns the layout into pictures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

TRACK, HEDGE, MARGIN = "track", "hedge", "margin"
WIDTH_M = {TRACK: (3.5, 5.0), HEDGE: (2.0, 3.0), MARGIN: (1.2, 2.6)}  # ground strip, not the hedge canopy
KIND_WEIGHTS = {TRACK: 0.35, HEDGE: 0.25, MARGIN: 0.40}


@dataclass(frozen=True)
class Boundary:
    start: np.ndarray  # (2,) world px
    end: np.ndarray
    kind: str
    width_px: float


@dataclass(frozen=True)
class Farmstead:
    centre: np.ndarray  # (2,) world px
    angle: float  # radians, orientation of the yard and its buildings
    size_px: tuple[float, float]  # yard length and width


@dataclass
class Layout:
    size_px: int
    fields: list[np.ndarray] = field(default_factory=list)  # (k, 2) float polygons, world px
    boundaries: list[Boundary] = field(default_factory=list)
    farmsteads: list[Farmstead] = field(default_factory=list)


def make_layout(rng: np.random.Generator, size_px: int, metres_per_px: float, cells: int = 6) -> Layout:
    layout = Layout(size_px)
    corners = _jittered_grid(rng, size_px, cells)
    kinds = _edge_kinds(rng, cells)

    def add(a: np.ndarray, b: np.ndarray, kind: str) -> None:
        low, high = WIDTH_M[kind]
        layout.boundaries.append(Boundary(a, b, kind, float(rng.uniform(low, high)) / metres_per_px))

    for (iy, ix, horizontal), kind in kinds.items():
        a = corners[iy, ix]
        add(a, corners[iy, ix + 1] if horizontal else corners[iy + 1, ix], kind)
    for iy in range(cells):
        for ix in range(cells):
            quad = np.array([corners[iy, ix], corners[iy, ix + 1], corners[iy + 1, ix + 1], corners[iy + 1, ix]])
            if rng.random() < 0.35:
                first, second, cut = _split(rng, quad)
                layout.fields += [first, second]
                add(cut[0], cut[1], HEDGE if rng.random() < 0.3 else MARGIN)
            else:
                layout.fields.append(quad)
    for _ in range(int(rng.integers(1, 3))):
        iy, ix = rng.integers(1, cells, 2)
        length = rng.uniform(45, 70) / metres_per_px
        layout.farmsteads.append(Farmstead(corners[iy, ix] + rng.normal(0, 8 / metres_per_px, 2),
                                           float(rng.uniform(0, np.pi)), (length, length * rng.uniform(0.5, 0.8))))
    return layout


def _jittered_grid(rng: np.random.Generator, size_px: int, cells: int) -> np.ndarray:
    """(cells+1, cells+1, 2) corner positions: uneven column widths and row heights, inner corners jittered."""
    def cuts() -> np.ndarray:
        widths = rng.uniform(0.6, 1.4, cells)
        return np.concatenate([[0.0], np.cumsum(widths) / widths.sum() * size_px])

    xs, ys = cuts(), cuts()
    corners = np.stack(np.meshgrid(xs, ys), -1)
    jitter = 0.12 * size_px / cells
    corners[1:-1, 1:-1] += rng.uniform(-jitter, jitter, corners[1:-1, 1:-1].shape)
    return corners


def _edge_kinds(rng: np.random.Generator, cells: int) -> dict[tuple[int, int, bool], str]:
    """Kind of every grid edge, keyed (row, col, horizontal); a kind tends to continue along its grid line."""
    names = list(KIND_WEIGHTS)
    weights = np.array(list(KIND_WEIGHTS.values()))
    kinds: dict[tuple[int, int, bool], str] = {}
    for horizontal in (True, False):
        for line in range(cells + 1):
            kind = names[rng.choice(len(names), p=weights)]
            for step in range(cells):
                if rng.random() < 0.3:
                    kind = names[rng.choice(len(names), p=weights)]
                kinds[(line, step, True) if horizontal else (step, line, False)] = kind
    return kinds


def _split(rng: np.random.Generator, quad: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cut a quad (tl, tr, br, bl) between two opposite edges: two smaller fields and the cut line."""
    s, t = rng.uniform(0.3, 0.7, 2)
    tl, tr, br, bl = quad
    if rng.random() < 0.5:  # top to bottom
        a, b = tl + s * (tr - tl), bl + t * (br - bl)
        return np.array([tl, a, b, bl]), np.array([a, tr, br, b]), np.array([a, b])
    a, b = tl + s * (bl - tl), tr + t * (br - tr)  # left to right
    return np.array([tl, tr, b, a]), np.array([a, b, br, bl]), np.array([a, b])


def rectangle(centre: np.ndarray, size: tuple[float, float], angle: float) -> np.ndarray:
    """(4, 2) corners of a rectangle of (length, width) `size`, its length along `angle`."""
    u = np.array([np.cos(angle), np.sin(angle)])
    v = np.array([-u[1], u[0]])
    half_l, half_w = size[0] / 2, size[1] / 2
    return np.array([centre + sx * half_l * u + sy * half_w * v for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1))])
