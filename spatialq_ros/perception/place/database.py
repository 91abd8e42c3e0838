"""The map database: one versioned .npz per map (atomic writes), refusing queries from another backbone."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...headed_npz import load_headed_npz, save_headed_npz
from ...errors import SpatialqError
from .pca import PCAWhitening
from .search import PlaceIndex

FORMAT = "spatialq-place-map"
FORMAT_VERSION = 1


@dataclass
class PlaceDatabase:
    vocabulary: np.ndarray  # (K, D)
    fingerprint: str  # backbone + quantization that produced the descriptors
    config: dict  # facet layer, VLAD mode, size, PCA dims
    poses: np.ndarray = field(default_factory=lambda: np.zeros((0, 7), np.float64))  # x y z qx qy qz qw
    stamps: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # ns
    vlad: np.ndarray | None = None  # (N, K*D) raw global descriptors, kept to refit PCA when extended
    pca: PCAWhitening | None = None

    def __len__(self) -> int:
        return len(self.stamps)

    def add(self, vlad: np.ndarray, pose: np.ndarray, stamp_ns: int) -> None:
        self.vlad = vlad[None] if self.vlad is None else np.vstack([self.vlad, vlad[None]])
        self.poses = np.vstack([self.poses, np.asarray(pose, np.float64)[None]])
        self.stamps = np.append(self.stamps, np.int64(stamp_ns))
        self._index = None

    def refit_pca(self) -> None:
        dims = int(self.config.get("pca_dims", 0))
        self.pca = PCAWhitening.fit(self.vlad, dims) if dims and len(self) > 2 else None
        self._index = None

    def project(self, vlad: np.ndarray) -> np.ndarray:
        return self.pca.transform(vlad) if self.pca is not None else np.atleast_2d(vlad).astype(np.float32)

    def query(self, vlad: np.ndarray, k: int, fingerprint: str) -> tuple[np.ndarray, np.ndarray]:
        """Top-k (indices, cosine similarities) for one raw VLAD descriptor."""
        if fingerprint != self.fingerprint:
            raise SpatialqError(f"map was built with backbone {self.fingerprint[:16]}, "
                                f"queried with {fingerprint[:16]}: rebuild the map with this model")
        if len(self) == 0:
            raise SpatialqError("the map has no places")
        if getattr(self, "_index", None) is None:
            self._index = PlaceIndex(self.project(self.vlad))
        idx, sims = self._index.search(self.project(vlad), k)
        return idx[0], sims[0]

    def save(self, path: str | Path) -> None:
        header = {"format": FORMAT, "format_version": FORMAT_VERSION, "fingerprint": self.fingerprint,
                  "config": self.config, "places": len(self)}
        arrays = {"vocabulary": self.vocabulary, "poses": self.poses,
                  "stamps": self.stamps, "vlad": self.vlad if self.vlad is not None else np.zeros((0, 0), np.float32)}
        if self.pca is not None:
            arrays["pca_mean"], arrays["pca_components"] = self.pca.mean, self.pca.components
        save_headed_npz(path, header, **arrays)

    @classmethod
    def load(cls, path: str | Path) -> "PlaceDatabase":
        header, arrays = load_headed_npz(path, "map", FORMAT, FORMAT_VERSION)
        db = cls(arrays["vocabulary"], header["fingerprint"], header["config"], arrays["poses"], arrays["stamps"],
                 arrays["vlad"] if arrays["vlad"].size else None)
        if "pca_mean" in arrays:
            db.pca = PCAWhitening(arrays["pca_mean"], arrays["pca_components"])
        return db
