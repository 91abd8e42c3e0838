"""Patch logits (h, w) -> a mask at frame resolution, with the RGB frame deciding where the border runs.

A 14 px patch grid puts a border anywhere inside a cell, so bilinear logits miss it by up to half a cell.
Both upsamplers here let the frame's colour edges place it: the guided filter (He et al.; O(N) box filters,
local linear model q = a I + b) refines bilinear logits, and joint bilateral upsampling (Kopf et al.)
weights each pixel's nearby cells by distance and by how close the cell's mean colour is to the pixel's.
"""

from __future__ import annotations

import cv2
import numpy as np

from ...errors import SpatialqError

METHODS = ("guided", "joint_bilateral", "bilinear")


def bilinear(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """(h, w) -> (H, W) float32, cell centres aligned with pixel centres."""
    return cv2.resize(np.asarray(logits, np.float32), (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)


def box(x: np.ndarray, radius: int) -> np.ndarray:
    """Mean over a (2r+1)^2 window of each (H, W) plane of x (..., H, W)."""
    planes = x.reshape(-1, *x.shape[-2:])
    size = (2 * radius + 1, 2 * radius + 1)
    out = [cv2.boxFilter(p, cv2.CV_32F, size, borderType=cv2.BORDER_REFLECT) for p in planes]
    return np.stack(out).reshape(x.shape)


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """He et al.'s guided filter of src (H, W) by guide (H, W) grey or (H, W, 3) colour, values in [0, 1].

    eps is the variance (in guide units squared) below which a window counts as flat and is smoothed.
    """
    src = src.astype(np.float32)
    if guide.ndim == 2:
        g = guide.astype(np.float32)
        mean_g, mean_p, mean_gg, mean_gp = box(np.stack([g, src, g * g, g * src]), radius)
        a = (mean_gp - mean_g * mean_p) / (mean_gg - mean_g * mean_g + eps)
        b = mean_p - a * mean_g
        mean_a, mean_b = box(np.stack([a, b]), radius)
        return mean_a * g + mean_b
    g = np.ascontiguousarray(guide.astype(np.float32).transpose(2, 0, 1))  # (3, H, W)
    pairs = [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2), (2, 2)]
    means = box(np.concatenate([g, src[None], g * src, np.stack([g[i] * g[j] for i, j in pairs])]), radius)
    mean_g, mean_p, mean_gp, mean_gg = means[:3], means[3], means[4:7], means[7:]
    cov_gp = mean_gp - mean_g * mean_p
    s = {pair: mean_gg[k] - mean_g[pair[0]] * mean_g[pair[1]] + (eps if pair[0] == pair[1] else 0.0)
         for k, pair in enumerate(pairs)}
    # a = (Sigma + eps I)^-1 cov_gp per pixel, with the 3x3 symmetric inverse written out (adjugate / det)
    inv00 = s[1, 1] * s[2, 2] - s[1, 2] * s[1, 2]
    inv01 = s[0, 2] * s[1, 2] - s[0, 1] * s[2, 2]
    inv02 = s[0, 1] * s[1, 2] - s[0, 2] * s[1, 1]
    inv11 = s[0, 0] * s[2, 2] - s[0, 2] * s[0, 2]
    inv12 = s[0, 2] * s[0, 1] - s[0, 0] * s[1, 2]
    inv22 = s[0, 0] * s[1, 1] - s[0, 1] * s[0, 1]
    det = s[0, 0] * inv00 + s[0, 1] * inv01 + s[0, 2] * inv02
    c0, c1, c2 = cov_gp
    a = np.stack([inv00 * c0 + inv01 * c1 + inv02 * c2,
                  inv01 * c0 + inv11 * c1 + inv12 * c2,
                  inv02 * c0 + inv12 * c1 + inv22 * c2]) / det
    b = mean_p - (a * mean_g).sum(axis=0)
    mean_ab = box(np.concatenate([a, b[None]]), radius)
    return (mean_ab[:3] * g).sum(axis=0) + mean_ab[3]


def guided_upsample(logits: np.ndarray, rgb: np.ndarray, radius: int = 8, eps: float = 1e-3,
                    colour: bool = True) -> np.ndarray:
    """Bilinear logits refined by the guided filter with the frame (colour, or its grey) as guide."""
    guide = unit_image(rgb)
    if not colour:
        guide = cv2.cvtColor(guide, cv2.COLOR_RGB2GRAY)
    return guided_filter(guide, bilinear(logits, rgb.shape[:2]), radius, eps)


def joint_bilateral_upsample(logits: np.ndarray, rgb: np.ndarray, sigma_spatial: float = 0.5,
                             sigma_range: float = 0.1, reach: int = 1) -> np.ndarray:
    """Each pixel averages the cells within `reach` of its own cell, weighted by a Gaussian of the distance
    to the cell centre (in cells) times a Gaussian of the colour distance to the cell's mean colour."""
    logits = np.asarray(logits, np.float32)
    h, w = logits.shape
    big_h, big_w = rgb.shape[:2]
    image = unit_image(rgb)
    cell_colour = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    rows = (np.arange(big_h, dtype=np.float32) + 0.5) * h / big_h - 0.5  # pixel centres in cell units
    cols = (np.arange(big_w, dtype=np.float32) + 0.5) * w / big_w - 0.5
    home_row = np.clip(np.rint(rows), 0, h - 1).astype(np.intp)
    home_col = np.clip(np.rint(cols), 0, w - 1).astype(np.intp)
    total = np.zeros((big_h, big_w), np.float32)
    weight_sum = np.zeros((big_h, big_w), np.float32)
    for dy in range(-reach, reach + 1):
        cell_row = np.clip(home_row + dy, 0, h - 1)
        row_weight = np.exp(-((rows - cell_row) ** 2) / (2 * sigma_spatial**2))
        for dx in range(-reach, reach + 1):
            cell_col = np.clip(home_col + dx, 0, w - 1)
            col_weight = np.exp(-((cols - cell_col) ** 2) / (2 * sigma_spatial**2))
            colour = cell_colour[cell_row][:, cell_col]
            distance = ((image - colour) ** 2).sum(axis=2)
            weight = np.outer(row_weight, col_weight) * np.exp(distance * (-0.5 / sigma_range**2))
            total += weight * logits[cell_row][:, cell_col]
            weight_sum += weight
    return total / np.maximum(weight_sum, 1e-12)


def upsample(logits: np.ndarray, rgb: np.ndarray, method: str = "guided") -> np.ndarray:
    """(h, w) logits + (H, W, 3) uint8 RGB frame -> (H, W) float32 logits."""
    logits = np.asarray(logits)
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
        return bilinear(logits, rgb.shape[:2])
    raise SpatialqError(f"upsampling method {method!r}: expected one of {', '.join(METHODS)}")


def field_mask(logits: np.ndarray, rgb: np.ndarray, method: str = "guided") -> np.ndarray:
    """Patch logits -> (H, W) uint8 mask, 255 = field (mono8 on the wire)."""
    return np.where(upsample(logits, rgb, method) > 0, 255, 0).astype(np.uint8)


def unit_image(rgb: np.ndarray) -> np.ndarray:
    return rgb.astype(np.float32) * (1.0 / 255.0)
