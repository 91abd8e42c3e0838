"""A procedural farmland, drawn once as a top-down orthophoto with its field mask.

Frames are later cut out of this one picture, so a revisit sees exactly the same ground. The picture
is built in layers: layout (field polygons and what separates them) -> flat ground (crops, margins,
tracks, yards) -> relief (hedges, trees, buildings) lit by a low sun. A pyramid of the picture lets
small frames sample a level close to their own ground resolution instead of aliasing the crop rows.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from .ground import FIELD, paint_ground
from .layout import make_layout
from .relief import light, raise_relief

METRES_PER_PX = 0.2
SIZE_PX = 3000  # 600 m square


@dataclass(frozen=True)
class World:
    pyramid: list[np.ndarray]  # (H, W, 3) uint8 orthophoto (north up, row 0 at the northern edge), then halves
    field_mask: np.ndarray  # (H, W) uint8, 255 inside a cultivated field
    metres_per_px: float

    @property
    def rgb(self) -> np.ndarray:
        return self.pyramid[0]

    @property
    def size_m(self) -> tuple[float, float]:
        return self.rgb.shape[1] * self.metres_per_px, self.rgb.shape[0] * self.metres_per_px


@lru_cache(maxsize=2)
def make_world(seed: int, size_px: int = SIZE_PX, metres_per_px: float = METRES_PER_PX) -> World:
    """The world of a seed. Cached (read-only arrays): the demo and the tests fly over one world several times,
    and drawing it takes seconds."""
    rng = np.random.default_rng((seed, 0))
    layout = make_layout(rng, size_px, metres_per_px)
    ground = paint_ground(rng, layout, metres_per_px)
    relief = raise_relief(rng, layout, metres_per_px)
    rgb = np.clip(light(ground.rgb, relief, metres_per_px), 0, 255).astype(np.uint8)
    mask = np.where((ground.kind == FIELD) & (relief.height_m <= 0), 255, 0).astype(np.uint8)
    pyramid = [rgb]
    while min(pyramid[-1].shape[:2]) > 256:
        pyramid.append(cv2.pyrDown(pyramid[-1]))
    for array in (mask, *pyramid):
        array.flags.writeable = False
    return World(pyramid, mask, metres_per_px)
