"""Building a map from frames with poses: shared by `spatialq build-map` and the map_builder node.

A new map needs its VLAD vocabulary first, and the vocabulary needs every frame, so the frames' value
facets are kept (float16) until `build`. Extending a saved map uses that map's vocabulary and adds
places as they come.
"""

from __future__ import annotations

import numpy as np

from ...errors import SpatialqError
from .database import PlaceDatabase
from .kmeans import fit_vocabulary
from .recognizer import PlaceRecognizer, global_descriptor
from .vlad import l2n


class MapBuilder:
    def __init__(self, fingerprint: str, config: dict, existing: PlaceDatabase | None = None,
                 min_distance: float | None = None, every: int = 1) -> None:
        """config: clusters, pca_dims, aggregation, facet_layer, size, patch_size, pose_topic (as build-map
        writes them)."""
        if every < 1 or (min_distance is not None and min_distance < 0):
            raise SpatialqError("keep every N >= 1 frames, and a minimum distance >= 0 m")
        self.fingerprint = fingerprint
        self.config = dict(config)
        self.min_distance = min_distance
        self.every = every
        self.offered = 0
        self._last_xy: np.ndarray | None = None
        self._recognizer = PlaceRecognizer(existing, fingerprint) if existing is not None else None
        self._kept: list[tuple[int, np.ndarray, np.ndarray]] = []  # new map: (stamp, pose, facet float16)

    @property
    def places(self) -> int:
        return len(self._recognizer.database) if self._recognizer else len(self._kept)

    def wants(self, pose: np.ndarray) -> bool:
        """Spacing: keep a frame every `every` offers, or once it is `min_distance` metres from the last kept."""
        self.offered += 1
        if self.min_distance is not None:
            return self._last_xy is None or float(np.linalg.norm(pose[:2] - self._last_xy)) >= self.min_distance
        return (self.offered - 1) % self.every == 0

    def add(self, facet: np.ndarray, pose: np.ndarray, stamp_ns: int) -> None:
        pose = np.asarray(pose, np.float64)
        if pose.shape != (7,):
            raise SpatialqError(f"a place pose is x y z qx qy qz qw, got shape {pose.shape}")
        self._last_xy = pose[:2].copy()
        if self._recognizer is not None:
            self._recognizer.add_place(facet, pose, stamp_ns)
        else:
            self._kept.append((int(stamp_ns), pose, np.asarray(facet, np.float16)))

    def build(self) -> PlaceDatabase:
        """The map so far (PCA refitted); the builder keeps collecting afterwards."""
        if self._recognizer is not None:
            db = self._recognizer.database
            db.refit_pca()
            return db
        if len(self._kept) < 2:
            raise SpatialqError(f"only {len(self._kept)} frames with poses; a map needs at least 2")
        patches = np.concatenate([l2n(f.reshape(-1, f.shape[-1]).astype(np.float32)) for _, _, f in self._kept])
        clusters = min(int(self.config.get("clusters", 32)), len(patches))
        vocabulary = fit_vocabulary(patches, k=clusters)
        config = {**self.config, "clusters": clusters}
        aggregation = config.get("aggregation", "vlad")
        db = PlaceDatabase(vocabulary, self.fingerprint, config)
        for stamp, pose, facet in self._kept:
            db.add(global_descriptor(facet.astype(np.float32), vocabulary, aggregation), pose, stamp)
        db.refit_pca()
        return db
