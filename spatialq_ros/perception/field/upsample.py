"""Patch logits (h, w) -> field probability and mask at frame resolution, the RGB frame placing the border.

A patch grid (14 px cells on DINOv2, 16 on DINOv3) puts a border anywhere inside a cell, so bilinear
logits miss it by up to half a cell. Both edge-aware upsamplers let the frame's colour edges place it: the
guided filter (He et al.; O(N) box filters, local linear model q = a I + b) refines the bilinearly
upsampled probability, and joint bilateral upsampling (Kopf et al.) weighs each pixel's nearby cells by
distance and by how close the cell's mean colour is to the pixel's. Both work on probabilities, not raw
logits: a far-off, very confident patch must not outvote the colour evidence at the border.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.special import expit

from ...errors import SpatialqError

METHODS = ("guided", "joint_bilateral", "bilinear")


def resize(x: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to (H, W), cell centres aligned with pixel centres."""
    return cv2.resize(x, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def box(planes: list[np.ndarray], radius: int) -> list[np.ndarray]:
    """Mean of each (H, W) plane over a (2r+1)^2 window."""
    size = (2 * radius + 1, 2 * radius + 1)
    return [cv2.boxFilter(p, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT) for p in planes]


def guided_coefficients(guide: list[np.ndarray], src: np.ndarray, radius: int, eps: float
                        ) -> tuple[list[np.ndarray], np.ndarray]:
    """Window-averaged a (one plane per guide channel) and b of q = a . I + b; 1 or 3 guide channels.

    eps is the guide variance (guide values in [0, 1]) below which a window counts as flat and is smoothed.
    """
    if len(guide) == 1:
        (g,) = guide
        mean_g, mean_p, mean_gg, mean_gp = box([g, src, g * g, g * src], radius)
        a = (mean_gp - mean_g * mean_p) / (mean_gg - mean_g * mean_g + eps)
        mean_a, mean_b = box([a, mean_p - a * mean_g], radius)
        return [mean_a], mean_b
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    means = box([*guide, src, *(g * src for g in guide), *(guide[i] * guide[j] for i, j in pairs)], radius)
    mean_g, mean_p, mean_gp = means[:3], means[3], means[4:7]
    cov = [mean_gp[k] - mean_g[k] * mean_p for k in range(3)]
    s = {pair: means[7 + k] - mean_g[pair[0]] * mean_g[pair[1]] + (eps if pair[0] == pair[1] else 0.0)
         for k, pair in enumerate(pairs)}
    # a = (Sigma + eps I)^-1 cov per pixel: the symmetric 3x3 inverse written out as adjugate / det
    i00 = s[1, 1] * s[2, 2] - s[1, 2] * s[1, 2]
    i01 = s[0, 2] * s[1, 2] - s[0, 1] * s[2, 2]
    i02 = s[0, 1] * s[1, 2] - s[0, 2] * s[1, 1]
    i11 = s[0, 0] * s[2, 2] - s[0, 2] * s[0, 2]
    i12 = s[0, 2] * s[0, 1] - s[0, 0] * s[1, 2]
    i22 = s[0, 0] * s[1, 1] - s[0, 1] * s[0, 1]
    inv_det = 1.0 / (s[0, 0] * i00 + s[0, 1] * i01 + s[0, 2] * i02)
    a = [(i00 * cov[0] + i01 * cov[1] + i02 * cov[2]) * inv_det,
         (i01 * cov[0] + i11 * cov[1] + i12 * cov[2]) * inv_det,
         (i02 * cov[0] + i12 * cov[1] + i22 * cov[2]) * inv_det]
    b = mean_p - a[0] * mean_g[0] - a[1] * mean_g[1] - a[2] * mean_g[2]
    *mean_a, mean_b = box([*a, b], radius)
    return mean_a, mean_b


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float, subsample: int = 1) -> np.ndarray:
    """He et al.'s guided filter of src (H, W) by guide (H, W) or (H, W, 3), values in [0, 1].

    subsample > 1 is the fast guided filter: coefficients from a reduced guide and source (they are
    smooth), applied to the full-resolution guide, so edges stay sharp at about 1/subsample^2 of the cost.
    """
    shape = src.shape
    full = [guide] if guide.ndim == 2 else [np.ascontiguousarray(guide[..., k]) for k in range(3)]
    small_shape = (max(1, round(shape[0] / subsample)), max(1, round(shape[1] / subsample)))
    small = full if subsample == 1 else [cv2.resize(g, small_shape[::-1], interpolation=cv2.INTER_AREA) for g in full]
    small_src = src if subsample == 1 else cv2.resize(src, small_shape[::-1], interpolation=cv2.INTER_AREA)
    mean_a, mean_b = guided_coefficients(small, small_src, max(1, round(radius / subsample)), eps)
    if subsample != 1:
        mean_a, mean_b = [resize(a, shape) for a in mean_a], resize(mean_b, shape)
    out = mean_b
    for a, g in zip(mean_a, full):
        out = out + a * g
    return out


def guided_upsample(logits: np.ndarray, rgb: np.ndarray, radius: int | None = None, eps: float = 1e-3,
                    colour: bool = True, subsample: int = 2) -> np.ndarray:
    """Bilinear probability refined by the guided filter, the frame (colour, or its grey) as guide.

    radius defaults to one patch cell in pixels: windows must reach across the half cell a patch mask
    can be off by.
    """
    shape = rgb.shape[:2]
    radius = round(shape[0] / logits.shape[0]) if radius is None else radius
    guide = unit_image(rgb)
    if not colour:
        guide = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY)
    probability = resize(expit(logits).astype(np.float32), shape)
    return np.clip(guided_filter(guide, probability, radius, eps, subsample), 0.0, 1.0)


def joint_bilateral_upsample(logits: np.ndarray, rgb: np.ndarray, sigma_spatial: float = 1.0,
                             sigma_range: float = 0.1, reach: int = 1) -> np.ndarray:
    """Each pixel averages the probabilities of the cells within `reach` of its own cell, weighted by a
    Gaussian of the distance to the cell centre (sigma in cells) times a Gaussian of the colour distance
    to the cell's mean colour (sigma in [0, 1] RGB units)."""
    probability = expit(logits).astype(np.float32)
    h, w = probability.shape
    big_h, big_w = rgb.shape[:2]
    image = unit_image(rgb)
    cells = [probability, *cv2.split(cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA))]
    planes = cv2.split(image)
    rows = (np.arange(big_h, dtype=np.float32) + 0.5) * h / big_h - 0.5  # pixel centres in cell units
    cols = (np.arange(big_w, dtype=np.float32) + 0.5) * w / big_w - 0.5
    home_row = np.clip(np.rint(rows), 0, h - 1).astype(np.intp)
    home_col = np.clip(np.rint(cols), 0, w - 1).astype(np.intp)
    total = np.zeros((big_h, big_w), np.float32)
    weight_sum = np.zeros((big_h, big_w), np.float32)
    for dy in range(-reach, reach + 1):
        cell_row = np.clip(home_row + dy, 0, h - 1)
        row_term = ((rows - cell_row) ** 2 / (2 * sigma_spatial**2))[:, None]
        for dx in range(-reach, reach + 1):
            cell_col = np.clip(home_col + dx, 0, w - 1)
            col_term = ((cols - cell_col) ** 2 / (2 * sigma_spatial**2))[None, :]
            value, *colour = (spread(c, cell_row, cell_col) for c in cells)
            distance = sum((p - c) ** 2 for p, c in zip(planes, colour))
            weight = np.exp(-(row_term + col_term) - distance * (0.5 / sigma_range**2))
            total += weight * value
            weight_sum += weight
    return total / np.maximum(weight_sum, 1e-12)


def spread(cells: np.ndarray, cell_row: np.ndarray, cell_col: np.ndarray) -> np.ndarray:
    """cells[cell_row][:, cell_col] for non-decreasing index arrays, as run-length repeats (fast)."""
    rows = np.repeat(cells, np.bincount(cell_row, minlength=cells.shape[0]), axis=0)
    return np.repeat(rows, np.bincount(cell_col, minlength=cells.shape[1]), axis=1)


def upsample(logits: np.ndarray, rgb: np.ndarray, method: str = "guided") -> np.ndarray:
    """(h, w) patch logits + (H, W, 3) uint8 RGB frame -> (H, W) float32 field probability."""
    logits = np.asarray(logits, np.float32)
    if logits.ndim != 2:
        raise SpatialqError(f"patch logits: expected an (h, w) grid, got shape {logits.shape}")
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise SpatialqError(f"guide frame: expected RGB uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    if rgb.shape[0] < logits.shape[0] or rgb.shape[1] < logits.shape[1]:
        raise SpatialqError(f"guide frame {rgb.shape[1]}x{rgb.shape[0]} is smaller than the "
                            f"{logits.shape[1]}x{logits.shape[0]} patch grid")
    if method == "guided":
        return guided_upsample(logits, rgb)
    if method == "joint_bilateral":
        return joint_bilateral_upsample(logits, rgb)
    if method == "bilinear":
        return expit(resize(logits, rgb.shape[:2]))
    raise SpatialqError(f"upsampling method {method!r}: expected one of {', '.join(METHODS)}")


def field_mask(logits: np.ndarray, rgb: np.ndarray, method: str = "guided") -> np.ndarray:
    """Patch logits -> (H, W) uint8 mask, 255 = field (mono8 on the wire)."""
    return np.where(upsample(logits, rgb, method) > 0.5, 255, 0).astype(np.uint8)


def unit_image(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) * (1.0 / 255.0)
