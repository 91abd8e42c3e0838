"""ERQA (edge restoration quality, MSU): F1 of Canny edges after global shift compensation.

Same algorithm and defaults as the `erqa` package, pinned to version 1.1 (each ground-truth edge pixel
matches at most once): find the shift in [-3, 3]^2 with the least MSE and crop both images to it,
Canny(100, 200) on each, then greedily match edge pixels within +-1 px, zero offset first. Inputs are
3-channel uint8 (the package expects BGR; Canny's multi-channel gradient is channel-order agnostic).
One deliberate difference: when nothing matches at all the package divides 0 by 0; this returns 0.0.
"""

from __future__ import annotations

import cv2
import numpy as np

SHIFT_RANGE = 3
OFFSETS = (0, -1, 1)  # zero first, as the reference orders them


def erqa(distorted: np.ndarray, reference: np.ndarray, version: str = "1.1") -> float:
    if version not in ("1.0", "1.1"):
        raise ValueError(f"ERQA version must be 1.0 or 1.1, got {version!r}")
    if distorted.shape != reference.shape or distorted.ndim != 3 or distorted.shape[2] != 3:
        raise ValueError(f"ERQA needs two (H, W, 3) images of one shape, got {distorted.shape} and {reference.shape}")
    img, ref = _best_shift(distorted, reference)
    edges = (cv2.Canny(img, 100, 200) // 255).astype(np.uint8)
    ref_edges = (cv2.Canny(ref, 100, 200) // 255).astype(np.uint8)
    matched, missed = _match(edges, ref_edges, once=version == "1.1")
    tp = int(matched.sum())
    fp = int(edges.sum()) - tp
    fn = int(missed.sum())
    if tp == 0:
        return 0.0
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return 2 * precision * recall / (precision + recall)


def _crop(img: np.ndarray, ref: np.ndarray, shift: int, axis: int) -> tuple[np.ndarray, np.ndarray]:
    n = img.shape[axis]
    a, b = (slice(shift, n), slice(0, n - shift)) if shift >= 0 else (slice(0, n + shift), slice(-shift, n))
    index = [slice(None)] * img.ndim
    index[axis] = a
    img = img[tuple(index)]
    index[axis] = b
    return img, ref[tuple(index)]


def _shifted(img: np.ndarray, ref: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    img, ref = _crop(img, ref, dy, 0)
    return _crop(img, ref, dx, 1)


def _best_shift(img: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    best, best_mse = (0, 0), np.inf
    for dy in range(-SHIFT_RANGE, SHIFT_RANGE + 1):
        for dx in range(-SHIFT_RANGE, SHIFT_RANGE + 1):
            a, b = _shifted(img, ref, dy, dx)
            mse = np.mean((a.astype(float) - b.astype(float)) ** 2)
            if mse < best_mse:  # strict: the first minimum in scan order wins, as in the reference
                best, best_mse = (dy, dx), mse
    return _shifted(img, ref, *best)


def _match(edges: np.ndarray, ref_edges: np.ndarray, once: bool) -> tuple[np.ndarray, np.ndarray]:
    """Greedy matching over the 3x3 offsets (np.roll wraps, as the reference does)."""
    matched = np.zeros_like(edges, dtype=bool)
    unmatched_ref = ref_edges.astype(bool)
    for dy in OFFSETS:
        for dx in OFFSETS:
            candidates = np.roll(unmatched_ref, (dy, dx), axis=(0, 1)) & edges.astype(bool) & ~matched
            matched |= candidates
            if once:
                unmatched_ref &= ~np.roll(candidates, (-dy, -dx), axis=(0, 1))
    if not once:
        unmatched_ref = ref_edges.astype(bool) & ~matched
    return matched, unmatched_ref
