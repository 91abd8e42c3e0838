"""Swiss-DINO style field head: cached unit prototype(s) and an adaptive cosine threshold.

No training: the prototype is the renormalised mean of the unit patch tokens inside the reference
mask, and tau = max(P95 cosine on background patches, P5 cosine on field patches), i.e. the threshold
rejects 95 % of the background and, when the classes separate, keeps 95 % of the field.

tau sits at the lower tail of the field cosines, far from the background ones, so cos - tau is lopsided
(field patches barely above 0, background far below). Each side gets its own scale so that the median
reference field patch scores +CONFIDENT and the median background patch -CONFIDENT: the sign (and tau)
is untouched, but the upsampler's local averages no longer let the background side outvote the field.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ...errors import SpatialqError
from .head import FieldHead, unit_rows
from .references import Reference, gather_references

FIELD_FRACTION = 0.5  # a patch counts as field when at least half of it is inside the mask
CONFIDENT = 4.0  # logit of a typical patch (sigmoid 0.98)


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
    tau = float(max(np.percentile(cosine[~field], 95), np.percentile(cosine[field], 5)))
    margin = cosine - tau
    field_above, background_below = margin[field & (margin > 0)], -margin[~field & (margin < 0)]
    if field_above.size == 0 or background_below.size == 0:
        raise SpatialqError("prototype field head: reference field and background patches look alike "
                            "(no cosine threshold separates them)")
    scale_above = CONFIDENT / float(np.median(field_above))
    scale_below = CONFIDENT / float(np.median(background_below))
    return FieldHead("prototype", prototypes, 0.0, tau, scale_above, scale_below, fingerprint, tuple(size))
