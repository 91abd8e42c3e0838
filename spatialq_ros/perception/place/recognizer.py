"""From one frame's value facet to the best map place and its candidates."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .database import PlaceDatabase
from .vlad import gem, l2n, vlad


@dataclass
class PlaceMatch:
    indices: np.ndarray  # (k,) database rows, best first
    similarities: np.ndarray  # (k,)
    poses: np.ndarray  # (k, 7)
    stamps: np.ndarray  # (k,)

    @property
    def best_pose(self) -> np.ndarray:
        return self.poses[0]


def global_descriptor(facet: np.ndarray, vocabulary: np.ndarray, method: str = "vlad") -> np.ndarray:
    """(h, w, D) value facet -> per-patch L2 -> VLAD (hard, intra-normalised) or signed GeM."""
    patches = l2n(facet.reshape(-1, facet.shape[-1]).astype(np.float32))
    return gem(patches) if method == "gem" else vlad(patches, vocabulary)


class PlaceRecognizer:
    def __init__(self, database: PlaceDatabase, fingerprint: str, top_k: int = 5) -> None:
        self.database = database
        self.fingerprint = fingerprint
        self.top_k = top_k

    def match(self, facet: np.ndarray) -> PlaceMatch:
        method = self.database.config.get("aggregation", "vlad")
        desc = global_descriptor(facet, self.database.vocabulary, method)
        idx, sims = self.database.query(desc, self.top_k, self.fingerprint)
        return PlaceMatch(idx, sims, self.database.poses[idx], self.database.stamps[idx])
