"""From one frame's value facet to the best map place and its runner-up candidates.

facet (h, w, D) -> per-patch L2 -> VLAD with the map's vocabulary (or signed GeM) -> the map's
PCA-whitening -> nearest places. The map's config says how: aggregation ("vlad" | "gem"), vlad_mode
("hard" | "soft"), temperature (soft mode), size (W, H) of the frames the map was built from and
patch_size, the backbone's (maps that do not record it were all built on DINOv2, patch 14).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SpatialqError
from ...runtime.factory import UNRECORDED_PATCH
from .database import PlaceDatabase
from .vlad import gem, l2n, vlad


@dataclass(frozen=True)
class PlaceMatch:
    indices: np.ndarray  # (k,) map places, best first
    similarities: np.ndarray  # (k,) cosine similarities
    poses: np.ndarray  # (k, 7) x y z qx qy qz qw
    stamps: np.ndarray  # (k,) int64 ns

    @property
    def best_pose(self) -> np.ndarray:
        return self.poses[0]


def global_descriptor(facet: np.ndarray, vocabulary: np.ndarray, method: str = "vlad", vlad_mode: str = "hard",
                      temperature: float = 0.01) -> np.ndarray:
    """(h, w, D) or (N, D) patch descriptors -> the pre-PCA global descriptor (VLAD: K * D values, GeM: D)."""
    facet = np.asarray(facet)
    patches = l2n(facet.reshape(-1, facet.shape[-1]).astype(np.float32))
    if method == "gem":
        return gem(patches)
    if method != "vlad":
        raise SpatialqError(f"place aggregation must be vlad or gem, got {method!r}")
    return vlad(patches, vocabulary, mode=vlad_mode, temperature=temperature)


class PlaceRecognizer:
    """Matches frames of one backbone (its fingerprint is checked here, once) against one map."""

    def __init__(self, database: PlaceDatabase, fingerprint: str, top_k: int = 5) -> None:
        database.require_backbone(fingerprint)
        self.database = database
        self.fingerprint = fingerprint
        self.top_k = top_k

    def describe(self, facet: np.ndarray) -> np.ndarray:
        """The frame's pre-PCA global descriptor, made the way the map's places were."""
        config = self.database.config
        facet = np.asarray(facet)
        size, patch = config.get("size"), int(config.get("patch_size", UNRECORDED_PATCH))
        if facet.ndim != 3:
            raise SpatialqError(f"place recognition expects a (h, w, D) value facet, got shape {facet.shape}")
        if size is not None and facet.shape[:2] != (size[1] // patch, size[0] // patch):
            raise SpatialqError(f"{self.database.name} was built from {size[0]}x{size[1]} frames "
                                f"({size[0] // patch}x{size[1] // patch} patches of {patch} px), "
                                f"this facet has {facet.shape[1]}x{facet.shape[0]} patches")
        return global_descriptor(facet, self.database.vocabulary, config.get("aggregation", "vlad"),
                                 config.get("vlad_mode", "hard"), float(config.get("temperature", 0.01)))

    def match(self, facet: np.ndarray) -> PlaceMatch:
        indices, similarities = self.database.query(self.describe(facet), self.top_k, self.fingerprint)
        return PlaceMatch(indices, similarities, self.database.poses[indices], self.database.stamps[indices])

    def add_place(self, facet: np.ndarray, pose: np.ndarray, stamp_ns: int) -> None:
        """Extend the map with this frame (a map-building run); its whitening stays until `refit_pca`."""
        self.database.add(self.describe(facet), pose, stamp_ns)
