"""Reading user images: one clear error for anything that is not a decodable picture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .errors import SpatialqError


def read_rgb(path: str | Path) -> np.ndarray:
    """File -> RGB uint8 (H, W, 3). Grey and 16-bit images are converted; alpha is dropped."""
    path = Path(path)
    if not path.is_file():
        raise SpatialqError(f"{path}: no such image file")
    data = np.fromfile(str(path), dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None or image.size == 0:
        raise SpatialqError(f"{path}: not a readable image (corrupt or unsupported format)")
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        raise SpatialqError(f"{path}: unsupported pixel type {image.dtype}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2RGB)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
