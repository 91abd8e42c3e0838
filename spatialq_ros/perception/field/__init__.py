"""Field boundaries from one backbone pass: patch tokens -> head logits -> edge-aware mask -> polygons.

numpy, scipy and cv2 only (the deploy path never imports torch).
"""

from .head import FieldHead
from .head_io import load_head, save_head
from .linear_head import fit_linear_head
from .polygons import Polygon, mask_polygons
from .prototype_head import fit_prototype_head
from .upsample import field_mask, upsample

__all__ = [
    "FieldHead",
    "Polygon",
    "field_mask",
    "fit_linear_head",
    "fit_prototype_head",
    "load_head",
    "mask_polygons",
    "save_head",
    "upsample",
]
