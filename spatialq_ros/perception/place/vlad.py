"""Global descriptors from per-patch descriptors: AnyLoc's VLAD, and signed GeM as the cheaper alternative.

AnyLoc's hard VLAD (utilities.py, class VLAD): patch descriptors are L2-normed, each is assigned to the
centre of highest cosine similarity, residuals to the centre as given (AnyLoc's centres are cluster means
of unit vectors, so shorter than 1: see kmeans.py) are summed per centre, each sum is L2-normed
(intra-normalisation; a centre with no patch stays zero) and the flattened vector is L2-normed.
"""

from __future__ import annotations

import numpy as np

from ...errors import SpatialqError

MODES = ("hard", "soft")


def l2n(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Unit vectors along `axis`; zero vectors stay zero."""
    return x / np.maximum(np.linalg.norm(x, axis=axis, keepdims=True), 1e-12)


def vlad(descriptors: np.ndarray, centers: np.ndarray, mode: str = "hard", intra_norm: bool = True,
         temperature: float = 0.01) -> np.ndarray:
    """(N, D) patch descriptors, (K, D) centres -> (K * D,) float32 unit VLAD vector.

    The descriptors are L2-normed here (idempotent when the caller already did), as AnyLoc does twice.
    Soft mode weights every centre by softmax(cosine / temperature) and sums each patch's residual to
    that centre (NetVLAD's soft assignment); temperature -> 0 gives hard mode. AnyLoc's own soft mode
    differs (it multiplies by its temperature and adds residuals to every centre into each slot).
    """
    if mode not in MODES:
        raise ValueError(f"VLAD mode must be one of {MODES}, got {mode!r}")
    x = l2n(np.asarray(descriptors, np.float64))
    c = np.asarray(centers, np.float64)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise SpatialqError(f"VLAD: descriptors {x.shape} and vocabulary {c.shape} differ in dimension "
                            "(was the map built with another backbone layer?)")
    cosine = x @ l2n(c).T  # (N, K)
    if mode == "hard":
        weights = np.zeros_like(cosine)
        weights[np.arange(len(x)), cosine.argmax(axis=1)] = 1.0
    else:
        logits = (cosine - cosine.max(axis=1, keepdims=True)) / temperature
        weights = np.exp(logits)
        weights /= weights.sum(axis=1, keepdims=True)
    residuals = weights.T @ x - weights.sum(axis=0)[:, None] * c  # sum_i w_ik (x_i - c_k), (K, D)
    if intra_norm:
        residuals = l2n(residuals)
    return l2n(residuals.reshape(-1)).astype(np.float32)


def gem(descriptors: np.ndarray, p: float = 3.0) -> np.ndarray:
    """(N, D) -> (D,) float32 unit signed generalised mean: m = mean(sign(x) |x|^p), sign(m) |m|^(1/p).

    For odd integer p this is AnyLoc's signed GeM (x^p, then a real p-th root); signed, because the
    value facet has negative components that plain GeM would fold onto positive ones."""
    x = np.asarray(descriptors, np.float64)
    m = np.mean(_signed_power(x, p), axis=0)
    return l2n(np.sign(m) * np.abs(m) ** (1.0 / p)).astype(np.float32)


def _signed_power(x: np.ndarray, p: float) -> np.ndarray:
    """sign(x) |x|^p; small integer p by multiplication, 20x faster than numpy's float pow."""
    if float(p).is_integer() and 1 <= p <= 8:
        magnitude, powered = np.abs(x), x.copy()  # x = sign(x) |x|
        for _ in range(int(p) - 1):
            powered *= magnitude
        return powered
    return np.sign(x) * np.abs(x) ** p
