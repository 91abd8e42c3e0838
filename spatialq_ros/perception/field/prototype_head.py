"""Swiss-DINO style field head: cached unit prototype(s) and an adaptive cosine threshold.

No training: the prototype is the renormalised mean of the unit patch tokens inside the reference
mask, and tau = max(P95 cosine on background patches, P5 cosine on field patches), i.e. the threshold
rejects 95 % of the background and, when the classes separate, keeps 95 % of the field.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

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
    return FieldHead("prototype", prototypes, 0.0, float(tau), fingerprint, tuple(size))
