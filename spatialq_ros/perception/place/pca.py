"""PCA-whitening of global descriptors, fitted on the map's database descriptors."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .vlad import l2n


@dataclass
class PCAWhitening:
    mean: np.ndarray  # (D,)
    components: np.ndarray  # (d, D), rows scaled by 1 / sqrt(eigenvalue)

    @classmethod
    def fit(cls, x: np.ndarray, dims: int, eps: float = 1e-6) -> "PCAWhitening":
        x = x.astype(np.float64)
        mean = x.mean(axis=0)
        _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
        dims = min(dims, len(s))
        var = s[:dims] ** 2 / max(len(x) - 1, 1)
        return cls(mean.astype(np.float32), (vt[:dims] / np.sqrt(var + eps)[:, None]).astype(np.float32))

    def transform(self, x: np.ndarray) -> np.ndarray:
        return l2n((np.atleast_2d(x) - self.mean) @ self.components.T).astype(np.float32)
