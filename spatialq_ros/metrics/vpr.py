"""Visual place recognition Recall@K: is a true neighbour (within a distance) among the top K?"""

from __future__ import annotations

import numpy as np


def recall_at_k(query_xy: np.ndarray, db_xy: np.ndarray, retrieved: np.ndarray, ks=(1, 5),
                threshold_m: float = 25.0) -> dict[int, float]:
    """query_xy (Q, 2), db_xy (N, 2), retrieved (Q, >=max(ks)) database indices best first.
    Queries with no database place within the threshold are skipped (they cannot be recalled)."""
    dist = np.linalg.norm(query_xy[:, None, :2] - db_xy[None, :, :2], axis=-1)
    answerable = (dist <= threshold_m).any(axis=1)
    out = {}
    for k in ks:
        hits = [(dist[q, retrieved[q, :k]] <= threshold_m).any() for q in np.flatnonzero(answerable)]
        out[k] = float(np.mean(hits)) if hits else 0.0
    return out
