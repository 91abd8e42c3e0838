"""Crop types as seen from about 80 m: colours of plants and soil, row geometry, and field practice.

Numbers are rough aerial appearances (sRGB), chosen so neighbouring fields differ in colour, texture
and row direction the way real ones do: row crops show soil between rows, cereals and rapeseed look
uniform but carry tramlines, grass shows mowing swaths, ploughed soil shows furrows.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Crop:
    name: str
    plant: tuple[int, int, int]  # RGB of full cover
    soil: tuple[int, int, int]  # RGB between plants
    row_spacing_m: tuple[float, float]  # >= 0.75 m (4 px): finer rows alias, so cereals use a coarse proxy
    cover: tuple[float, float]  # mean plant fraction range
    row_contrast: float  # 0: rows invisible, 1: plants and bare soil alternate
    tramlines: bool  # pairs of wheel lines every 18-24 m
    swaths: bool  # broad alternating stripes (mowing, harvesting)
    headland: bool  # rows turn parallel to the border near it


CROPS = (
    Crop("young cereal", (92, 132, 58), (128, 104, 78), (0.8, 1.2), (0.55, 0.8), 0.35, True, False, True),
    Crop("ripe wheat", (204, 178, 112), (150, 128, 96), (0.8, 1.2), (0.85, 0.95), 0.12, True, False, True),
    Crop("barley", (186, 176, 120), (140, 120, 92), (0.8, 1.2), (0.85, 0.95), 0.1, True, False, True),
    Crop("maize", (66, 112, 44), (120, 96, 72), (0.75, 0.8), (0.4, 0.7), 0.9, False, False, True),
    Crop("sugar beet", (58, 118, 52), (112, 92, 70), (0.75, 0.8), (0.5, 0.85), 0.7, False, False, True),
    Crop("potatoes", (78, 116, 56), (136, 110, 82), (0.75, 0.9), (0.35, 0.6), 0.95, False, False, True),
    Crop("rapeseed", (214, 200, 66), (96, 128, 60), (0.8, 1.2), (0.8, 0.95), 0.15, True, False, True),
    Crop("grass", (104, 146, 70), (128, 150, 86), (3.0, 6.0), (0.85, 1.0), 0.2, False, True, False),
    Crop("stubble", (196, 176, 128), (150, 132, 100), (5.0, 8.0), (0.7, 0.9), 0.25, False, True, True),
    Crop("ploughed", (104, 82, 62), (142, 116, 90), (0.8, 1.2), (0.4, 0.6), 0.8, False, False, False),
)


@dataclass(frozen=True)
class FieldCrops:
    """Per-field parameters as arrays indexed by field label (label 0, not a field, gets harmless values)."""

    plant: np.ndarray  # (F+1, 3) float32
    soil: np.ndarray
    angle: np.ndarray  # row direction, radians
    spacing_m: np.ndarray
    cover: np.ndarray
    row_contrast: np.ndarray
    tramline_m: np.ndarray  # 0 where none
    swaths: np.ndarray  # bool
    headland_m: np.ndarray  # 0 where none
    tone: np.ndarray  # per-field brightness


def assign_crops(rng: np.random.Generator, n_fields: int) -> FieldCrops:
    chosen = [CROPS[i] for i in rng.integers(0, len(CROPS), n_fields + 1)]

    def column(values: list, dtype=np.float32) -> np.ndarray:
        return np.array(values, dtype)

    def uniform(ranges: list[tuple[float, float]]) -> np.ndarray:
        low, high = np.array(ranges, np.float32).T
        return rng.uniform(low, high).astype(np.float32)

    colour_jitter = rng.uniform(0.92, 1.08, (n_fields + 1, 3)).astype(np.float32)
    return FieldCrops(
        plant=column([c.plant for c in chosen]) * colour_jitter,
        soil=column([c.soil for c in chosen]) * rng.uniform(0.9, 1.1, (n_fields + 1, 1)).astype(np.float32),
        angle=rng.uniform(0, np.pi, n_fields + 1).astype(np.float32),
        spacing_m=uniform([c.row_spacing_m for c in chosen]),
        cover=uniform([c.cover for c in chosen]),
        row_contrast=column([c.row_contrast for c in chosen]),
        tramline_m=np.where(column([c.tramlines for c in chosen], bool), rng.uniform(18, 24, n_fields + 1), 0)
        .astype(np.float32),
        swaths=column([c.swaths for c in chosen], bool),
        headland_m=np.where(column([c.headland for c in chosen], bool), rng.uniform(6, 12, n_fields + 1), 0)
        .astype(np.float32),
        tone=rng.uniform(0.9, 1.1, n_fields + 1).astype(np.float32),
    )
