"""Nearest places by cosine: exact numpy for small maps, a FAISS inner-product index for large ones."""

from __future__ import annotations

import numpy as np

FAISS_FROM = 20_000  # database size from which FAISS is used


class PlaceIndex:
    def __init__(self, descriptors: np.ndarray, use_faiss: bool | None = None) -> None:
        self.descriptors = np.ascontiguousarray(descriptors, dtype=np.float32)
        self.use_faiss = len(descriptors) >= FAISS_FROM if use_faiss is None else use_faiss
        self._faiss = None
        if self.use_faiss:
            import faiss

            self._faiss = faiss.IndexFlatIP(self.descriptors.shape[1])
            self._faiss.add(self.descriptors)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(Q, D) unit queries -> (indices (Q, k), similarities (Q, k)), best first."""
        q = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        k = min(k, len(self.descriptors))
        if self._faiss is not None:
            sims, idx = self._faiss.search(q, k)
            return idx.astype(np.int64), sims
        sims = q @ self.descriptors.T
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1)
