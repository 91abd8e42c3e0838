"""A trained field head: patch tokens of one backbone pass -> patch logits (> 0 means field).

Both kinds score a token linearly: the linear head with its weight vector (trained in log-odds), the
prototype head with the cosine to its nearest unit prototype, scaled on each side of its threshold
(see prototype_head.py). Either way a typical patch scores a few units from 0, so the edge-aware
upsampler can weigh a confident patch against a doubtful one. The head remembers the backbone
(fingerprint) and frame size it was fitted at: tokens of another backbone or resolution do not compare.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import SpatialqError

KINDS = ("prototype", "linear")


@dataclass(frozen=True, eq=False)
class FieldHead:
    kind: str  # "prototype" or "linear"
    weights: np.ndarray  # prototype: (K, C) unit prototypes; linear: (1, C) weight vector
    bias: float  # added to the linear score (0 for prototypes)
    threshold: float  # prototype: tau on the cosine; linear: 0 on the logit
    scale_above: float  # logit = scale_above * (score - threshold) where the score passes the threshold,
    scale_below: float  # and scale_below * (score - threshold) where it does not
    fingerprint: str  # backbone + quantization the tokens came from
    size: tuple[int, int]  # (W, H) frame size the backbone saw when the head was fitted
    name: str = "field head"  # how errors refer to it (the file it was loaded from)

    @property
    def dim(self) -> int:
        return int(self.weights.shape[1])

    def require_backbone(self, fingerprint: str, size: tuple[int, int]) -> None:
        """Tokens of another backbone, quantization or resolution would be scored against the wrong basis."""
        if fingerprint != self.fingerprint:
            raise SpatialqError(f"{self.name} was fitted on backbone {self.fingerprint!r}, not {fingerprint!r}")
        if tuple(size) != tuple(self.size):
            raise SpatialqError(f"{self.name} was fitted at {self.size[0]}x{self.size[1]}, not {size[0]}x{size[1]}")

    def logits(self, tokens: np.ndarray) -> np.ndarray:
        """(h, w, C) float tokens -> (h, w) float32 logits; > 0 is field."""
        tokens = np.asarray(tokens)
        if tokens.ndim != 3:
            raise SpatialqError(f"{self.name} expects a (h, w, C) token grid, got shape {tokens.shape}")
        if tokens.shape[2] != self.dim:
            raise SpatialqError(f"{self.name} expects C={self.dim} tokens, got C={tokens.shape[2]}")
        flat = tokens.reshape(-1, self.dim).astype(np.float32, copy=False)
        if self.kind == "prototype":
            score = (unit_rows(flat) @ self.weights.T).max(axis=1)
        else:
            score = flat @ self.weights[0] + self.bias
        margin = score - self.threshold
        logits = margin * np.where(margin > 0, self.scale_above, self.scale_below)
        return logits.reshape(tokens.shape[:2]).astype(np.float32)


def unit_rows(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)
