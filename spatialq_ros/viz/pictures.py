"""Picture helpers shared by every command that writes PNGs: upscaling, side-by-side, the UNTRAINED stamp."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ..atomic import check_writable_parent, write_atomic
from ..errors import SpatialqError


def upscale_nearest(grid_rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w, 3) -> (H, W, 3) with hard cell edges, so one patch stays one visible square."""
    width, height = size
    return cv2.resize(grid_rgb, (width, height), interpolation=cv2.INTER_NEAREST)


def side_by_side(*images: np.ndarray, gap: int = 4) -> np.ndarray:
    height = max(im.shape[0] for im in images)
    parts = []
    for i, im in enumerate(images):
        if im.ndim == 2:
            im = np.repeat(im[:, :, None], 3, axis=2)
        pad = np.zeros((height - im.shape[0], im.shape[1], 3), np.uint8)
        parts.append(np.vstack([im, pad]))
        if i < len(images) - 1:
            parts.append(np.full((height, gap, 3), 255, np.uint8))
    return np.hstack(parts)


def stamp_untrained(rgb: np.ndarray) -> np.ndarray:
    """Write a red UNTRAINED band across the top of a picture made from random weights."""
    out = rgb.copy()
    text = "UNTRAINED WEIGHTS - NOT MEANINGFUL"
    band = int(np.clip(out.shape[1] // 25, 16, 44))
    scale = band / 30.0
    width = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 2)[0][0]
    scale *= min(1.0, 0.95 * out.shape[1] / max(width, 1))
    out[:band] = (200, 0, 0)
    cv2.putText(out, text, (6, int(band * 0.75)), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                max(1, int(round(scale * 2))), cv2.LINE_AA)
    return out


def write_png(path: str | Path, rgb: np.ndarray) -> None:
    """Atomic PNG write (temp file in the same folder, then rename)."""
    path = check_writable_parent(path)
    ok, data = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise SpatialqError(f"{path}: could not encode PNG")
    write_atomic(path, data.tobytes())
