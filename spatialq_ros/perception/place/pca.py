"""PCA-whitening of global descriptors, fitted on the map's own database descriptors (AnyLoc: to 512 dims).

Whitening equalises the variance of every kept direction, so the few directions every aerial frame
shares (sky, ground colour) stop dominating the cosine; the result is L2-normed for cosine search.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SpatialqError
from .vlad import l2n

RELATIVE_RANK_TOL = 1e-9  # eigenvalues below this share of the largest are null directions, never whitened


@dataclass(frozen=True)
class PCAWhitening:
    mean: np.ndarray  # (D,) float32
    components: np.ndarray  # (d, D) float32: principal directions, each divided by its standard deviation

    @property
    def dims(self) -> int:
        return int(self.components.shape[0])

    @classmethod
    def fit(cls, descriptors: np.ndarray, dims: int) -> PCAWhitening:
        """(N, D) -> up to `dims` directions; fewer when the data has lower rank (N places span at most N - 1)."""
        x = np.asarray(descriptors, np.float64)
        if x.ndim != 2 or len(x) < 2 or dims < 1:
            raise SpatialqError(f"PCA-whitening needs at least 2 descriptors and dims >= 1, got {x.shape}, dims={dims}")
        mean = x.mean(axis=0)
        _, singular, directions = np.linalg.svd(x - mean, full_matrices=False)
        variance = singular**2 / (len(x) - 1)
        rank = int(np.sum(variance > RELATIVE_RANK_TOL * variance[0])) if variance[0] > 0 else 0
        if rank == 0:
            raise SpatialqError("PCA-whitening: all descriptors are identical, there is no variance to whiten")
        keep = min(dims, rank)
        whitened = directions[:keep] / np.sqrt(variance[:keep])[:, None]
        return cls(mean.astype(np.float32), whitened.astype(np.float32))

    def transform(self, descriptors: np.ndarray) -> np.ndarray:
        """(N, D) or (D,) -> (N, d) float32 unit rows."""
        x = np.atleast_2d(np.asarray(descriptors, np.float32))
        if x.shape[1] != self.mean.shape[0]:
            raise SpatialqError(f"PCA-whitening expects {self.mean.shape[0]}-dim descriptors, got {x.shape[1]}")
        return l2n((x - self.mean) @ self.components.T)
