"""Cosine k-means for the VLAD vocabulary (fitted on the map's own frames: a domain vocabulary)."""

from __future__ import annotations

import numpy as np

from ...errors import SpatialqError
from .vlad import l2n


def fit_vocabulary(descriptors: np.ndarray, k: int = 32, iters: int = 30, seed: int = 0,
                   max_samples: int = 100_000) -> np.ndarray:
    """(N, D) -> (k, D) unit centres; k-means++ seeding, deterministic per seed."""
    if len(descriptors) < k:
        raise SpatialqError(f"need at least {k} descriptors for {k} clusters, got {len(descriptors)}")
    rng = np.random.default_rng(seed)
    x = l2n(descriptors.astype(np.float32))
    if len(x) > max_samples:
        x = x[rng.choice(len(x), max_samples, replace=False)]
    centers = [x[rng.integers(len(x))]]
    closest = 1 - x @ centers[0]
    for _ in range(1, k):
        probs = np.maximum(closest, 0)
        probs = probs / probs.sum() if probs.sum() > 0 else np.full(len(x), 1 / len(x))
        centers.append(x[rng.choice(len(x), p=probs)])
        closest = np.minimum(closest, 1 - x @ centers[-1])
    c = np.stack(centers)
    for _ in range(iters):
        assign = (x @ c.T).argmax(axis=1)
        sums = np.zeros_like(c)
        np.add.at(sums, assign, x)
        empty = np.bincount(assign, minlength=k) == 0
        sums[empty] = x[rng.choice(len(x), int(empty.sum()), replace=False)]
        new = l2n(sums)
        if np.allclose(new, c, atol=1e-6):
            break
        c = new
    return c.astype(np.float32)
