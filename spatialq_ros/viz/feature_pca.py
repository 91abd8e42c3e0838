"""The classic DINOv2 feature picture: the first three principal components of the patch tokens as RGB."""

from __future__ import annotations

import numpy as np


def pca_rgb(tokens: np.ndarray, basis: np.ndarray | None = None) -> np.ndarray:
    """(h, w, C) tokens -> (h, w, 3) uint8.

    With `basis` (3, C), several frames share one projection so their colours are comparable.
    Each component is stretched between its 1st and 99th percentile, robust to high-norm tokens.
    """
    h, w, c = tokens.shape
    flat = tokens.reshape(-1, c).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    if basis is None:
        basis = pca_basis(tokens)
    proj = centred @ basis.T
    lo = np.percentile(proj, 1, axis=0)
    hi = np.percentile(proj, 99, axis=0)
    scaled = (proj - lo) / np.maximum(hi - lo, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8).reshape(h, w, 3)


def pca_basis(tokens: np.ndarray) -> np.ndarray:
    """First three principal directions (3, C) of a token set (..., C), signs fixed for stable colours."""
    flat = tokens.reshape(-1, tokens.shape[-1]).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:3]
    signs = np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])
    return basis * signs[:, None]
