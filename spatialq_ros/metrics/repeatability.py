"""Keypoint repeatability under a known homography from frame A to frame B.

The share of A's keypoints that B detects again: A's keypoints are warped into B and count as repeated
when a B keypoint lies within `eps` px. Only what both frames see counts: A's keypoints that warp outside
B, and B's keypoints that warp back outside A, are left out (they could not be repeated).
"""

from __future__ import annotations

import numpy as np

WARP_DEG, WARP_SHIFT = 6.0, (9.0, -5.0)  # the known homography `spatialq eval` and the calibration report use


def known_homography(size: tuple[int, int]) -> np.ndarray:
    """(3, 3): rotate WARP_DEG about the centre of a (W, H) frame, then shift by WARP_SHIFT px."""
    angle = np.deg2rad(WARP_DEG)
    c, s = np.cos(angle), np.sin(angle)
    cx, cy = size[0] / 2, size[1] / 2
    # OpenCV's getRotationMatrix2D convention: positive angles turn the picture counter-clockwise
    return np.array([[c, s, (1 - c) * cx - s * cy + WARP_SHIFT[0]],
                     [-s, c, s * cx + (1 - c) * cy + WARP_SHIFT[1]],
                     [0.0, 0.0, 1.0]])


def repeatability(uv_a: np.ndarray, uv_b: np.ndarray, homography: np.ndarray, size_b: tuple[int, int],
                  size_a: tuple[int, int] | None = None, eps: float = 3.0) -> float:
    """uv_a (N, 2), uv_b (M, 2) pixel (u, v); homography (3, 3) maps A pixels to B; sizes are (W, H).

    Returns NaN when none of A's keypoints is visible in B: there is nothing to repeat."""
    homography = np.asarray(homography, np.float64)
    if homography.shape != (3, 3) or homography[2, 2] == 0:
        raise ValueError(f"homography must be 3x3 with H[2, 2] != 0, got {homography.tolist()}")
    homography = homography / homography[2, 2]  # fixes the sign, so visible points have w > 0
    a_in_b = _warp(uv_a, homography)
    b_in_a = _warp(uv_b, np.linalg.inv(homography))
    visible_a = a_in_b[_inside(a_in_b, size_b)]
    visible_b = np.asarray(uv_b, np.float64).reshape(-1, 2)[_inside(b_in_a, size_a or size_b)]
    if len(visible_a) == 0:
        return float("nan")
    if len(visible_b) == 0:
        return 0.0
    nearest = np.sqrt(((visible_a[:, None, :] - visible_b[None, :, :]) ** 2).sum(axis=2)).min(axis=1)
    return float(np.mean(nearest <= eps))


def matching_accuracy(uv_a: np.ndarray, desc_a: np.ndarray, uv_b: np.ndarray, desc_b: np.ndarray,
                      homography: np.ndarray, size_b: tuple[int, int], eps: float = 3.0) -> float:
    """The share of mutual nearest-neighbour descriptor matches (unit rows, by dot product) between A's
    visible keypoints and B's that land within `eps` px of where the homography puts them: what the
    descriptors, not the detector, get right. NaN when there is no match to judge."""
    homography = np.asarray(homography, np.float64) / homography[2, 2]
    a_in_b = _warp(uv_a, homography)
    visible = _inside(a_in_b, size_b)
    if not visible.any() or len(uv_b) == 0:
        return float("nan")
    similarity = np.asarray(desc_a, np.float32)[visible] @ np.asarray(desc_b, np.float32).T
    best_b, best_a = similarity.argmax(axis=1), similarity.argmax(axis=0)
    mutual = best_a[best_b] == np.arange(len(best_b))
    if not mutual.any():
        return float("nan")
    gap = np.linalg.norm(a_in_b[visible][mutual] - np.asarray(uv_b, np.float64)[best_b[mutual]], axis=1)
    return float(np.mean(gap <= eps))


def _warp(uv: np.ndarray, homography: np.ndarray) -> np.ndarray:
    uv = np.asarray(uv, np.float64).reshape(-1, 2)
    p = np.c_[uv, np.ones(len(uv))] @ homography.T
    w = np.where(p[:, 2:3] > 0, p[:, 2:3], np.nan)  # w <= 0: the point maps to infinity, not into the frame
    return p[:, :2] / w


def _inside(uv: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    width, height = size
    u, v = uv[:, 0] + 0.5, uv[:, 1] + 0.5  # pixel (u, v) covers [u - 0.5, u + 0.5)
    return (u >= 0) & (u < width) & (v >= 0) & (v < height)
