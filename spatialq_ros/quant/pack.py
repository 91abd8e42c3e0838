"""Two signed 4-bit codes per byte, low nibble first (the ONNX INT4 layout)."""

from __future__ import annotations

import numpy as np


def pack_int4(codes: np.ndarray) -> np.ndarray:
    """int8 codes in [-8, 7], any shape -> flat uint8 of ceil(n / 2) bytes."""
    flat = codes.astype(np.int8).reshape(-1)
    if flat.size % 2:
        flat = np.concatenate([flat, np.zeros(1, np.int8)])
    nibbles = flat.view(np.uint8) & 0x0F
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    low = (packed & 0x0F).astype(np.int8)
    high = (packed >> 4).astype(np.int8)
    flat = np.stack([low, high], axis=1).reshape(-1)[:count]
    return np.where(flat > 7, flat - 16, flat).astype(np.int8)
