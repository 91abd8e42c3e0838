"""Frame -> backbone input. numpy and cv2 only: this runs on the deploy path, where torch is not loaded."""

from __future__ import annotations

import re

import cv2
import numpy as np

from ..errors import SpatialqError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def parse_size(text: str) -> tuple[int, int]:
    """'448x336' -> (448, 336) as (W, H), both positive. Whether they fit the backbone's patch is
    `check_size`'s question, asked where the model is known."""
    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", str(text))
    if not match:
        raise SpatialqError(f"size {text!r}: expected WxH, e.g. 448x448")
    width, height = int(match.group(1)), int(match.group(2))
    if width <= 0 or height <= 0:
        raise SpatialqError(f"size {text}: width and height must be positive")
    return width, height


def check_size(size: tuple[int, int], patch: int, backbone: str) -> tuple[int, int]:
    """size unchanged when both sides are multiples of the backbone's patch (14 px for DINOv2, 16 for
    DINOv3); else one line that names the patch and whose it is."""
    width, height = size
    if width % patch or height % patch:
        raise SpatialqError(f"size {width}x{height}: sides must be multiples of {patch}, the patch of {backbone}")
    return size


def resize_rgb(rgb: np.ndarray, size: tuple[int, int] | None) -> np.ndarray:
    """Resize to (W, H) unless already there (area filter down, linear up)."""
    if size is None or (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    shrinking = size[0] * size[1] < rgb.shape[0] * rgb.shape[1]
    return cv2.resize(rgb, tuple(size), interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def preprocess(rgb: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (1, 3, H', W'): resized if asked, RGB/255, ImageNet mean/std.
    The backbone checks that the sides fit its patch."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise SpatialqError(f"expected an RGB uint8 image (H, W, 3), got {rgb.dtype} {rgb.shape}")
    rgb = resize_rgb(rgb, size)
    x = (rgb.astype(np.float32) * (1.0 / 255.0) - IMAGENET_MEAN) / IMAGENET_STD
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])
