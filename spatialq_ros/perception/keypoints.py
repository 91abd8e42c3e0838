"""Grid keypoints at patch granularity (DINO-VO style): at most one per backbone cell (14x14 px on DINOv2,
16x16 on DINOv3; the cell is the frame's size over the token grid's, so it follows the backbone).

grey -> Gaussian blur -> Sobel magnitude -> max-pool with kernel = stride = the patch (each candidate is the
strongest smoothed-gradient pixel of its cell) -> NMS -> score threshold -> top-K. A keypoint's
descriptor is its cell's patch token (optionally bilinearly sampled at the keypoint), so matching costs
no extra network. Descriptors go on the wire as int8 codes with one symmetric scale per frame.
Vectorised numpy + cv2: about 1 ms for a 448x448 frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import SpatialqError


@dataclass(frozen=True)
class KeypointConfig:
    max_keypoints: int = 512
    nms_radius: float | None = None  # px (0: off); None: half a cell, closer candidates describe nearly the same pixels
    threshold: float = 10.0  # least smoothed Sobel magnitude (grey 0..255): a 4-level step passes, noise of std 1 not
    blur_sigma: float = 1.0  # px; keeps single-pixel noise from winning a cell (0: off)
    subpixel_descriptors: bool = False  # sample the token grid bilinearly at the keypoint


@dataclass(frozen=True)
class Keypoints:
    """K keypoints, strongest first; u, v are pixels of the frame the backbone saw."""

    u: np.ndarray  # (K,) float32 column
    v: np.ndarray  # (K,) float32 row
    score: np.ndarray  # (K,) float32 smoothed Sobel magnitude
    row: np.ndarray  # (K,) int32 cell row in the token grid
    col: np.ndarray  # (K,) int32 cell column in the token grid
    descriptors: np.ndarray  # (K, D) float32, unit rows

    def __len__(self) -> int:
        return int(self.u.shape[0])

    @property
    def uv(self) -> np.ndarray:
        return np.stack([self.u, self.v], axis=1)


def detect(image: np.ndarray, tokens: np.ndarray, config: KeypointConfig = KeypointConfig()) -> Keypoints:
    """image: the (H, W, 3) RGB or (H, W) grey uint8 frame fed to the backbone; tokens: its (H/P, W/P, D) grid,
    P the backbone's patch."""
    grey = _grey(image)
    rows, cols, patch = _check_grid(grey.shape, tokens)
    score, offset = _cell_maxima(_smoothed_gradient(grey, config.blur_sigma), rows, cols, patch)
    cell_v, cell_u = np.divmod(offset, patch)
    grid_r, grid_c = np.indices((rows, cols))
    v = grid_r * patch + cell_v
    u = grid_c * patch + cell_u

    alive = score > config.threshold
    radius = patch / 2 if config.nms_radius is None else config.nms_radius
    if radius > 0:
        alive = _greedy_nms(u, v, score, alive, radius, patch)
    index = np.flatnonzero(alive)
    flat_score = score.ravel()
    index = index[np.lexsort((index, -flat_score[index]))][: config.max_keypoints]  # strongest first; ties: lower cell
    row, col = (index // cols).astype(np.int32), (index % cols).astype(np.int32)
    u = u.ravel()[index].astype(np.float32)
    v = v.ravel()[index].astype(np.float32)
    grid = np.asarray(tokens)
    descriptors = (_sample_bilinear(grid, u, v, patch) if config.subpixel_descriptors
                   else grid[row, col].astype(np.float64))
    # float64 for the norm: float32 SIMD sums depend on memory alignment, and the output must be bit-reproducible
    norms = np.maximum(np.linalg.norm(descriptors, axis=1, keepdims=True), 1e-12)
    descriptors = (descriptors / norms).astype(np.float32)
    return Keypoints(u, v, flat_score[index].astype(np.float32), row, col, descriptors)


def quantize_descriptors(descriptors: np.ndarray) -> tuple[np.ndarray, float]:
    """(K, D) float -> (int8 codes in [-127, 127], scale) with descriptors ~= codes * scale; 4x less on the wire."""
    descriptors = np.asarray(descriptors, np.float32)
    peak = float(np.abs(descriptors).max()) if descriptors.size else 0.0
    scale = peak / 127.0 if peak > 0 else 1.0
    return np.clip(np.rint(descriptors / np.float32(scale)), -127, 127).astype(np.int8), scale


def dequantize_descriptors(codes: np.ndarray, scale: float) -> np.ndarray:
    return np.asarray(codes, np.float32) * np.float32(scale)


def _grey(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise SpatialqError(f"keypoints need an RGB (H, W, 3) or grey (H, W) uint8 frame, "
                            f"got {image.dtype} {image.shape}")
    return (cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if image.ndim == 3 else image).astype(np.float32)


def _check_grid(shape: tuple[int, ...], tokens: np.ndarray) -> tuple[int, int, int]:
    """(rows, cols, patch): the token grid must tile the frame with square cells of whole pixels."""
    height, width = shape
    if np.ndim(tokens) != 3 or 0 in np.shape(tokens)[:2]:
        raise SpatialqError(f"keypoints: expected an (h, w, D) token grid, got shape {tuple(np.shape(tokens))}")
    rows, cols = np.shape(tokens)[:2]
    patch = width // cols
    if patch == 0 or (rows * patch, cols * patch) != (height, width):
        raise SpatialqError(f"keypoints: frame {width}x{height} and token grid {tuple(np.shape(tokens))} do not match "
                            "(the frame must be the grid times the backbone's patch, across and down)")
    return rows, cols, patch


def _smoothed_gradient(grey: np.ndarray, sigma: float) -> np.ndarray:
    if sigma > 0:
        grey = cv2.GaussianBlur(grey, (0, 0), sigma)
    dx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3)
    dy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3)
    # not cv2.magnitude: its SIMD and scalar paths differ in the last bit with the buffer's alignment,
    # which would reorder equally strong cells between calls; numpy's sqrt is correctly rounded on both
    return np.sqrt(dx * dx + dy * dy)


def _cell_maxima(strength: np.ndarray, rows: int, cols: int, patch: int) -> tuple[np.ndarray, np.ndarray]:
    """Max-pool with kernel = stride = patch: per cell its peak and the peak's row-major offset (first peak wins)."""
    cells = strength.reshape(rows, patch, cols, patch).transpose(0, 2, 1, 3).reshape(rows, cols, -1)
    offset = cells.argmax(axis=2)
    return np.take_along_axis(cells, offset[..., None], axis=2)[..., 0], offset


def _greedy_nms(u: np.ndarray, v: np.ndarray, score: np.ndarray, alive: np.ndarray, radius: float,
                patch: int) -> np.ndarray:
    """Greedy NMS (strongest first; a candidate within `radius` px of a kept stronger one is dropped), in rounds.

    Each round keeps every live candidate with no stronger live neighbour (greedy would keep it: all its
    stronger neighbours are already dropped), then drops the neighbours of those just kept. Candidates are
    one per cell, and d cells apart they are at least (d - 1) * patch + 1 px apart, so only `reach` cells around
    need checking. Equal scores: the lower cell index counts as stronger, as in the final order."""
    rows, cols = score.shape
    reach = int((radius - 1) // patch) + 1
    index = np.arange(rows * cols).reshape(rows, cols)
    pads = [np.pad(a, reach, constant_values=fill) for a, fill in ((u, 0), (v, 0), (score, -np.inf), (index, -1))]
    neighbours = []  # (window, close, close and stronger) per offset
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            if dr or dc:
                window = (slice(reach + dr, reach + dr + rows), slice(reach + dc, reach + dc + cols))
                nu, nv, ns, ni = (p[window] for p in pads)
                close = (ni >= 0) & ((nu - u) ** 2 + (nv - v) ** 2 <= radius * radius)
                neighbours.append((window, close, close & ((ns > score) | ((ns == score) & (ni < index)))))
    kept = np.zeros_like(alive)
    while alive.any():
        live = np.pad(alive, reach)
        blocked = np.zeros_like(alive)
        for window, _, close_stronger in neighbours:
            blocked |= close_stronger & live[window]
        new = alive & ~blocked
        kept |= new
        alive &= ~new
        fresh = np.pad(new, reach)
        for window, close, _ in neighbours:
            alive &= ~(close & fresh[window])
    return kept.ravel()


def _sample_bilinear(tokens: np.ndarray, u: np.ndarray, v: np.ndarray, patch: int) -> np.ndarray:
    """The token grid at pixel (u, v); token (r, c) sits at its cell's centre, pixel ((c + 0.5) * patch - 0.5)."""
    rows, cols = tokens.shape[:2]
    gx = np.clip((u + 0.5) / patch - 0.5, 0, cols - 1).astype(np.float32)
    gy = np.clip((v + 0.5) / patch - 0.5, 0, rows - 1).astype(np.float32)
    fx, fy = (gx - np.floor(gx))[:, None], (gy - np.floor(gy))[:, None]  # float32: mixed types are slow
    x0, y0 = np.floor(gx).astype(np.int64), np.floor(gy).astype(np.int64)
    x1, y1 = np.minimum(x0 + 1, cols - 1), np.minimum(y0 + 1, rows - 1)
    grid = np.asarray(tokens, np.float32)
    top = grid[y0, x0] * (1 - fx) + grid[y0, x1] * fx
    bottom = grid[y1, x0] * (1 - fx) + grid[y1, x1] * fx
    return (top * (1 - fy) + bottom * fy).astype(np.float64)
