"""Keypoint repeatability under a known homography (frame A -> frame B)."""

from __future__ import annotations

import numpy as np


def repeatability(uv_a: np.ndarray, uv_b: np.ndarray, homography: np.ndarray, size_b: tuple[int, int],
                  size_a: tuple[int, int] | None = None, eps: float = 3.0) -> float:
    """Share of A's keypoints, among those that land inside B, with a B keypoint within `eps` px;
    symmetric: B's keypoints mapped back into A count too."""
    size_a = size_a or size_b

    def hits(src: np.ndarray, dst: np.ndarray, h: np.ndarray, size: tuple[int, int]) -> tuple[int, int]:
        if len(src) == 0:
            return 0, 0
        p = np.c_[src, np.ones(len(src))] @ h.T
        p = p[:, :2] / p[:, 2:3]
        w, hgt = size
        inside = (p[:, 0] >= 0) & (p[:, 0] < w) & (p[:, 1] >= 0) & (p[:, 1] < hgt)
        p = p[inside]
        if len(p) == 0 or len(dst) == 0:
            return 0, len(p)
        d = np.sqrt(((p[:, None, :] - dst[None, :, :]) ** 2).sum(-1)).min(axis=1)
        return int((d <= eps).sum()), len(p)

    hit_ab, n_ab = hits(uv_a, uv_b, homography, size_b)
    hit_ba, n_ba = hits(uv_b, uv_a, np.linalg.inv(homography), size_a)
    total = n_ab + n_ba
    return (hit_ab + hit_ba) / total if total else 0.0
