"""What every engine gives the heads: one backbone pass per RGB frame, numpy out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass
class Features:
    patch_tokens: np.ndarray  # (h, w, C) final normed
    cls_token: np.ndarray  # (C,)
    value_facet: np.ndarray  # (h, w, C) value facet of the configured block (for VLAD)


class Engine(Protocol):
    size: tuple[int, int]  # (W, H) the frame is resized to, multiples of patch_size
    patch_size: int  # px per token cell, from the backbone (14 for DINOv2, 16 for DINOv3)
    fingerprint: str  # identifies backbone + quantization; maps and heads record it
    trained: bool  # False: outputs come from seeded random weights (UNTRAINED)

    def infer(self, rgb: np.ndarray) -> Features: ...
