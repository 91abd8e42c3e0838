"""Field mask -> simplified polygons with holes (a pond or a farmyard inside a field), largest first.

RETR_CCOMP gives a two-level hierarchy: outer borders, and the holes inside each; an island inside a
hole comes back as an outer border of its own. Coordinates are (x, y) pixel centres of the mask's
border pixels, so a polygon's area is about half a perimeter smaller than its pixel count.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from ...errors import SpatialqError


@dataclass(frozen=True, eq=False)
class Polygon:
    exterior: np.ndarray  # (N, 2) float64 x, y pixel coordinates, N >= 3
    holes: list[np.ndarray] = field(default_factory=list)  # each (M, 2), M >= 3

    @property
    def area(self) -> float:
        """Exterior area minus the holes' areas, in square pixels."""
        return ring_area(self.exterior) - sum(ring_area(h) for h in self.holes)


def ring_area(ring: np.ndarray) -> float:
    return float(cv2.contourArea(ring.astype(np.float32)))


def simplify(contour: np.ndarray, epsilon: float) -> np.ndarray:
    ring = cv2.approxPolyDP(contour, epsilon, True) if epsilon > 0 else contour
    return ring.reshape(-1, 2).astype(np.float64)


def mask_polygons(mask: np.ndarray, epsilon: float = 1.5, min_area: float = 50.0) -> list[Polygon]:
    """(H, W) mask (nonzero = field) -> polygons sorted by area, largest first.

    epsilon: Douglas-Peucker tolerance in pixels (0 keeps every border pixel); min_area: fields (net of
    their holes) and holes smaller than this many square pixels are dropped (noise specks, pinholes).
    """
    mask = np.asarray(mask)
    if mask.ndim != 2 or mask.size == 0:
        raise SpatialqError(f"field mask: expected a non-empty (H, W) array, got shape {mask.shape}")
    if epsilon < 0 or min_area < 0:
        raise SpatialqError(f"polygons: epsilon ({epsilon}) and min_area ({min_area}) must be >= 0")
    contours, hierarchy = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    if hierarchy is None:
        return []
    links = hierarchy[0]  # per contour: next, previous, first child, parent
    polygons = []
    for i, contour in enumerate(contours):
        if links[i][3] != -1:
            continue
        exterior = simplify(contour, epsilon)
        if len(exterior) < 3:
            continue
        holes = []
        child = links[i][2]
        while child != -1:
            hole = simplify(contours[child], epsilon)
            if len(hole) >= 3 and ring_area(hole) >= min_area:
                holes.append(hole)
            child = links[child][0]
        polygon = Polygon(exterior, sorted(holes, key=ring_area, reverse=True))
        if polygon.area >= min_area:
            polygons.append(polygon)
    return sorted(polygons, key=lambda p: p.area, reverse=True)
