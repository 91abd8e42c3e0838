"""Visual place recognition Recall@K: is a true neighbour (a map place within a distance) among the top K?"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.spatial import cKDTree


def recall_at_k(query_positions: np.ndarray, db_positions: np.ndarray, retrieved_indices: np.ndarray,
                ks: Sequence[int] = (1, 5), threshold_m: float = 25.0) -> dict[int, float]:
    """query_positions (Q, P), db_positions (N, P): P = 2 for ground distance, 3 to count altitude too.
    retrieved_indices (Q, R): database rows, best first; -1 pads (FAISS does when R > N).

    Queries with no map place within the threshold cannot be recalled and are left out (they measure
    map coverage, not retrieval); with none left, every recall is NaN."""
    queries = np.asarray(query_positions, np.float64)
    places = np.asarray(db_positions, np.float64)
    retrieved = np.asarray(retrieved_indices, np.int64)
    if queries.ndim != 2 or places.ndim != 2 or queries.shape[1] != places.shape[1]:
        raise ValueError(f"positions must be (Q, P) and (N, P), got {queries.shape} and {places.shape}")
    if retrieved.ndim != 2 or len(retrieved) != len(queries) or (retrieved >= len(places)).any():
        raise ValueError(f"retrieved_indices must be (Q={len(queries)}, R) rows of a {len(places)}-place map")
    if len(places) == 0 or len(queries) == 0:
        return {int(k): float("nan") for k in ks}
    answerable = cKDTree(places).query(queries, k=1)[0] <= threshold_m
    if not answerable.any():
        return {int(k): float("nan") for k in ks}
    gap = np.linalg.norm(places[np.maximum(retrieved, 0)] - queries[:, None, :], axis=2)  # (Q, R)
    hit = (gap <= threshold_m) & (retrieved >= 0)
    first_hit = np.where(hit.any(axis=1), hit.argmax(axis=1), np.iinfo(np.int64).max)  # rank of the first true one
    return {int(k): float(np.mean(first_hit[answerable] < k)) for k in ks}
