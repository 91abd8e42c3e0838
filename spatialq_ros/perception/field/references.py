"""Reference views for fitting a field head: (token grid, mask) pairs -> per-patch tokens and field fractions.

The mask may be at any resolution (the original frame or the resized one); each patch gets the fraction
of its area that is field, which is what a patch cell (14x14 px on DINOv2, 16x16 on DINOv3) of a border
actually contains.
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from ...errors import SpatialqError

Reference = tuple[np.ndarray, np.ndarray]  # (tokens (h, w, C), mask (H, W) bool or 0/255)


def patch_fractions(mask: np.ndarray, grid: tuple[int, int], what: str = "mask") -> np.ndarray:
    """(H, W) mask -> (h, w) float32 fraction of each patch cell inside the mask (area average)."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise SpatialqError(f"{what}: expected a single-channel (H, W) mask, got shape {mask.shape}")
    h, w = grid
    if mask.shape[0] < h or mask.shape[1] < w:
        raise SpatialqError(f"{what}: {mask.shape[1]}x{mask.shape[0]} is smaller than the {w}x{h} patch grid")
    if abs(mask.shape[1] / mask.shape[0] - w / h) > 0.05 * (w / h):
        raise SpatialqError(
            f"{what}: aspect {mask.shape[1]}x{mask.shape[0]} does not match the {w}x{h} patch grid"
        )
    inside = (mask > 0).astype(np.float32)
    return cv2.resize(inside, (w, h), interpolation=cv2.INTER_AREA)


def gather_references(references: Sequence[Reference]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validate reference pairs -> (N, C) float32 tokens, (N,) field fractions and (N,) reference index."""
    if len(references) == 0:
        raise SpatialqError("field head: no reference (tokens, mask) pairs given")
    tokens_all, fractions_all, index_all = [], [], []
    dim = None
    for i, (tokens, mask) in enumerate(references):
        tokens = np.asarray(tokens)
        if tokens.ndim != 3:
            raise SpatialqError(f"reference {i}: expected a (h, w, C) token grid, got shape {tokens.shape}")
        if dim is not None and tokens.shape[2] != dim:
            raise SpatialqError(f"reference {i}: tokens have C={tokens.shape[2]}, reference 0 has C={dim}")
        dim = tokens.shape[2]
        fractions = patch_fractions(mask, tokens.shape[:2], what=f"reference {i} mask")
        if not fractions.any():
            raise SpatialqError(f"reference {i} mask is empty: mark the field with nonzero pixels")
        tokens_all.append(tokens.reshape(-1, dim).astype(np.float32))
        fractions_all.append(fractions.reshape(-1))
        index_all.append(np.full(fractions.size, i))
    features, fractions = np.concatenate(tokens_all), np.concatenate(fractions_all)
    if not np.isfinite(features).all():
        raise SpatialqError("field head: reference tokens contain NaN or inf")
    if (fractions >= 0.5).sum() == 0:
        raise SpatialqError("field head: no patch is at least half inside the reference masks (field too small)")
    if (fractions < 0.5).sum() == 0:
        raise SpatialqError("field head: reference masks cover every patch; need some background too")
    return features, fractions, np.concatenate(index_all)
