"""Smooth random fields: the irregularity that keeps procedural textures from looking stamped."""

from __future__ import annotations

import cv2
import numpy as np


def smooth_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float) -> np.ndarray:
    """Zero-mean, unit-ish noise whose blobs are about `scale_px` wide (bicubic upsampled white noise)."""
    h, w = shape
    coarse = rng.standard_normal((int(h / scale_px) + 3, int(w / scale_px) + 3), dtype=np.float32)
    big = cv2.resize(coarse, (int(coarse.shape[1] * scale_px), int(coarse.shape[0] * scale_px)),
                     interpolation=cv2.INTER_CUBIC)
    return big[:h, :w]


def fractal_noise(rng: np.random.Generator, shape: tuple[int, int], scale_px: float, octaves: int = 3,
                  persistence: float = 0.5) -> np.ndarray:
    """Sum of `octaves` smooth noises, each half the size and `persistence` times the weight of the last."""
    total = np.zeros(shape, np.float32)
    weight, norm = 1.0, 0.0
    for octave in range(octaves):
        total += weight * smooth_noise(rng, shape, max(scale_px / 2**octave, 1.0))
        norm += weight
        weight *= persistence
    return total / norm
