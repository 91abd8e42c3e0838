"""Corner preservation: how much of the reference's Harris corner response survives in a distorted picture."""

from __future__ import annotations

import cv2
import numpy as np

TOP_K = 50


def harris(rgb: np.ndarray) -> np.ndarray:
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    return np.clip(cv2.cornerHarris(grey, 2, 3, 0.04), 0, None)


def corner_preservation(distorted: np.ndarray, reference: np.ndarray, top_k: int = TOP_K) -> float:
    """Harris response of `distorted` at the reference's strongest `top_k` corners / the reference's own.

    1.0: the corners are as strong as in the reference; near 0: washed out."""
    ref = harris(reference)
    out = harris(distorted)
    idx = np.argsort(ref.reshape(-1))[-top_k:]
    total = float(ref.reshape(-1)[idx].sum())
    return float(out.reshape(-1)[idx].sum() / total) if total > 0 else 1.0
