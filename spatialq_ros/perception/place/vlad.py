"""VLAD aggregation of per-patch descriptors, as AnyLoc computes it, and GeM as a cheaper alternative."""

from __future__ import annotations

import numpy as np


def l2n(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def vlad(descriptors: np.ndarray, centers: np.ndarray, mode: str = "hard", intra_norm: bool = True,
         temperature: float = 0.01) -> np.ndarray:
    """(N, D) patch descriptors, (K, D) centres -> (K * D,) global descriptor.

    Descriptors and centres are L2-normed here (AnyLoc normalises both). Hard mode assigns each patch to
    its most cosine-similar centre; soft mode weights every centre by a softmax of similarity / temperature.
    Residuals are summed per centre, each centre's sum is L2-normed (intra-normalisation), then the whole.
    """
    x = l2n(descriptors.astype(np.float64))
    c = l2n(centers.astype(np.float64))
    sims = x @ c.T
    if mode == "hard":
        weights = np.zeros_like(sims)
        weights[np.arange(len(x)), sims.argmax(axis=1)] = 1.0
    elif mode == "soft":
        z = (sims - sims.max(axis=1, keepdims=True)) / temperature
        weights = np.exp(z)
        weights /= weights.sum(axis=1, keepdims=True)
    else:
        raise ValueError(f"VLAD mode must be hard or soft, got {mode!r}")
    # sum_i w_ik (x_i - c_k) = W^T X - (sum_i w_ik) c_k
    residuals = weights.T @ x - weights.sum(axis=0)[:, None] * c
    if intra_norm:
        residuals = l2n(residuals)
    return l2n(residuals.reshape(-1)).astype(np.float32)


def gem(descriptors: np.ndarray, p: float = 3.0) -> np.ndarray:
    """Signed generalised-mean pooling: sign(m) |m|^(1/p) with m = mean(sign(x) |x|^p); then L2."""
    x = descriptors.astype(np.float64)
    m = np.mean(np.sign(x) * np.abs(x) ** p, axis=0)
    return l2n(np.sign(m) * np.abs(m) ** (1.0 / p)).astype(np.float32)
