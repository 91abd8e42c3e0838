"""Grid-aligned keypoints (DINO-VO style): one candidate per 14x14 patch cell, described by its token.

Grey -> Gaussian blur -> Sobel magnitude -> the strongest pixel of each cell -> NMS -> threshold ->
top-K. Every keypoint lies inside exactly one cell, so its descriptor is that cell's DINOv2 token
(optionally bilinearly sampled at the sub-patch position).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import SpatialqError

PATCH = 14


@dataclass(frozen=True)
class KeypointConfig:
    max_keypoints: int = 512
    nms_radius: float = 14.0  # pixels; 0 disables
    threshold: float = 0.0  # minimum smoothed-gradient score
    blur_sigma: float = 1.0
    subpixel_descriptors: bool = False


@dataclass
class Keypoints:
    u: np.ndarray  # (K,) float32, pixel column in the frame given to the backbone
    v: np.ndarray  # (K,) float32, pixel row
    score: np.ndarray  # (K,) float32
    row: np.ndarray  # (K,) int32 cell row
    col: np.ndarray  # (K,) int32 cell column
    descriptors: np.ndarray  # (K, D) float32, L2-normed

    def __len__(self) -> int:
        return len(self.u)


def gradient_score(rgb: np.ndarray, sigma: float) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    if sigma > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    gx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    return cv2.magnitude(gx, gy)


def detect(rgb: np.ndarray, tokens: np.ndarray, config: KeypointConfig = KeypointConfig()) -> Keypoints:
    """rgb (H, W, 3) at backbone size; tokens (H/14, W/14, D) from the same pass."""
    h, w = rgb.shape[0] // PATCH, rgb.shape[1] // PATCH
    if rgb.shape[0] % PATCH or rgb.shape[1] % PATCH or tokens.shape[:2] != (h, w):
        raise SpatialqError(f"frame {rgb.shape[1]}x{rgb.shape[0]} and token grid {tokens.shape[:2]} do not match "
                            f"(expected {h}x{w} cells of {PATCH} px)")
    score = gradient_score(rgb, config.blur_sigma)
    cells = score.reshape(h, PATCH, w, PATCH).transpose(0, 2, 1, 3).reshape(h, w, PATCH * PATCH)
    best = cells.argmax(axis=2)
    best_score = np.take_along_axis(cells, best[..., None], axis=2)[..., 0]
    rows, cols = np.mgrid[0:h, 0:w]
    v = (rows * PATCH + best // PATCH).astype(np.float32).ravel()
    u = (cols * PATCH + best % PATCH).astype(np.float32).ravel()
    s = best_score.ravel()
    keep = np.flatnonzero(s > config.threshold)
    # Ties broken by cell index, on scores rounded to 1e-3: cv2's threaded filters can differ in the last
    # bit between calls, which must not reorder equally strong cells.
    idx = keep[np.lexsort((keep, -np.round(s[keep], 3)))]
    if config.nms_radius > 0:
        idx = _nms(u, v, idx, config.nms_radius, config.max_keypoints)
    idx = idx[: config.max_keypoints]
    r, c = rows.ravel()[idx].astype(np.int32), cols.ravel()[idx].astype(np.int32)
    if config.subpixel_descriptors:
        desc = _bilinear(tokens, (u[idx] + 0.5) / PATCH - 0.5, (v[idx] + 0.5) / PATCH - 0.5)
    else:
        desc = tokens[r, c]
    desc = desc.astype(np.float64)  # normalise in float64: float32 SIMD sums vary with alignment
    desc = (desc / np.maximum(np.linalg.norm(desc, axis=1, keepdims=True), 1e-12)).astype(np.float32)
    return Keypoints(u[idx], v[idx], s[idx].astype(np.float32), r, c, desc)


def _nms(u: np.ndarray, v: np.ndarray, order: np.ndarray, radius: float, limit: int) -> np.ndarray:
    """Greedy suppression in score order; candidates are at most one per cell, so this is cheap."""
    kept: list[int] = []
    taken = np.zeros(0, dtype=np.float32).reshape(0, 2)
    r2 = radius * radius
    for i in order:
        if len(kept) >= limit:
            break
        p = np.array([u[i], v[i]], np.float32)
        if len(taken) and (((taken - p) ** 2).sum(axis=1) < r2).any():
            continue
        kept.append(int(i))
        taken = np.vstack([taken, p])
    return np.array(kept, dtype=np.int64)


def _bilinear(grid: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    h, w, _ = grid.shape
    x = np.clip(x, 0, w - 1)
    y = np.clip(y, 0, h - 1)
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
    fx, fy = (x - x0)[:, None], (y - y0)[:, None]
    return ((1 - fx) * (1 - fy) * grid[y0, x0] + fx * (1 - fy) * grid[y0, x1]
            + (1 - fx) * fy * grid[y1, x0] + fx * fy * grid[y1, x1]).astype(np.float32)


def quantize_descriptors(desc: np.ndarray) -> tuple[np.ndarray, float]:
    """Per-frame symmetric int8 for the wire: desc ~= codes * scale."""
    scale = float(np.abs(desc).max()) / 127.0 if desc.size else 1.0
    scale = scale or 1.0
    return np.clip(np.round(desc / scale), -127, 127).astype(np.int8), scale


def dequantize_descriptors(codes: np.ndarray, scale: float) -> np.ndarray:
    return codes.astype(np.float32) * scale
