"""The classic DINOv2 feature picture: the first three principal components of the patch tokens as RGB."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PcaProjection:
    """Token -> colour mapping: centre, three principal directions, and each component's 1st-99th percentile
    range, which is stretched to 0..255 (robust to high-norm tokens).

    Pictures that are compared must share one mapping, fitted on the reference tokens: a picture that
    centred and stretched itself would amplify noise along a flat component into edges and re-colour
    itself when a few high-norm tokens move, so a metric between pictures would measure the renderer.
    """

    mean: np.ndarray  # (C,)
    basis: np.ndarray  # (3, C)
    lo: np.ndarray  # (3,)
    hi: np.ndarray  # (3,)

    @classmethod
    def fit(cls, tokens: np.ndarray) -> PcaProjection:
        """Fitted on a token set (..., C): all reference frames together, so they share one colour scale."""
        flat = tokens.reshape(-1, tokens.shape[-1]).astype(np.float64)
        mean = flat.mean(axis=0)
        basis = pca_basis(flat)
        components = (flat - mean) @ basis.T
        return cls(mean, basis, np.percentile(components, 1, axis=0), np.percentile(components, 99, axis=0))


def pca_rgb(tokens: np.ndarray, projection: PcaProjection | None = None) -> np.ndarray:
    """(h, w, C) tokens -> (h, w, 3) uint8, with `projection` or, without one, a projection fitted on `tokens`."""
    if projection is None:
        projection = PcaProjection.fit(tokens)
    h, w, c = tokens.shape
    components = (tokens.reshape(-1, c).astype(np.float64) - projection.mean) @ projection.basis.T
    scaled = (components - projection.lo) / np.maximum(projection.hi - projection.lo, 1e-12)
    return (np.clip(scaled, 0, 1) * 255).round().astype(np.uint8).reshape(h, w, 3)


def pca_basis(tokens: np.ndarray) -> np.ndarray:
    """First three principal directions (3, C) of a token set (..., C), signs fixed for stable colours."""
    flat = tokens.reshape(-1, tokens.shape[-1]).astype(np.float64)
    centred = flat - flat.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    basis = vt[:3]
    signs = np.sign(basis[np.arange(len(basis)), np.abs(basis).argmax(axis=1)])
    return basis * signs[:, None]
