"""Swiss-DINO style field head: cached unit prototype(s) and an adaptive cosine threshold.

No training: the prototype is the renormalised mean of the unit patch tokens inside the reference
mask, and tau = max(P95 cosine on background patches, P5 cosine on field patches), i.e. the threshold
rejects 95 % of the background and, when the classes separate, keeps 95 % of the field. One scalar
is fitted: the slope that turns cos - tau into a calibrated logit (Platt scaling, zero kept at tau).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import minimize_scalar
from scipy.special import log_expit

from .head import FieldHead, unit_rows
from .references import Reference, gather_references

FIELD_FRACTION = 0.5  # a patch counts as field when at least half of it is inside the mask


def fit_prototype_head(
    references: Sequence[Reference],
    fingerprint: str,
    size: tuple[int, int],
    per_reference: bool = False,
) -> FieldHead:
    """One prototype from all references, or one per reference (views that differ in light or season)."""
    features, fractions, index = gather_references(references)
    unit = unit_rows(features)
    field = fractions >= FIELD_FRACTION
    groups = range(len(references)) if per_reference else [None]
    prototypes = []
    for group in groups:
        inside = field if group is None else field & (index == group)
        if inside.any():
            prototypes.append(unit[inside].mean(axis=0))
    prototypes = unit_rows(np.stack(prototypes)).astype(np.float32)
    cosine = (unit @ prototypes.T).max(axis=1)
    tau = max(np.percentile(cosine[~field], 95), np.percentile(cosine[field], 5))
    margin = (cosine - tau).astype(np.float64)
    return FieldHead("prototype", prototypes, 0.0, float(tau), platt_slope(margin, fractions), fingerprint,
                     tuple(size))


def platt_slope(margin: np.ndarray, targets: np.ndarray) -> float:
    """Slope s minimising the class-balanced cross-entropy of sigmoid(s * margin) against soft targets."""
    y = targets.astype(np.float64)
    share = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    w_field, w_back = 0.5 / share, 0.5 / (1 - share)

    def loss(log_slope: float) -> float:
        z = np.exp(log_slope) * margin
        return float(-(w_field * y * log_expit(z) + w_back * (1 - y) * log_expit(-z)).mean())

    best = minimize_scalar(loss, bounds=(np.log(0.1), np.log(1e4)), method="bounded")
    return float(np.exp(best.x))
