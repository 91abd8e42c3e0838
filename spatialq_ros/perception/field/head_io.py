"""Field head files: one .npz (no pickle) with the weights and a JSON header, written atomically.

The header carries a format name and version, so an old reader refuses a newer file with a clear
message instead of misreading it, plus the backbone fingerprint and frame size the head was fitted at.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...headed_npz import load_headed_npz, save_headed_npz
from ...errors import SpatialqError
from .head import KINDS, FieldHead

FORMAT = "spatialq-field-head"
VERSION = 1


def save_head(path: str | Path, head: FieldHead) -> None:
    header = {
        "format": FORMAT,
        "version": VERSION,
        "kind": head.kind,
        "dim": head.dim,
        "bias": head.bias,
        "threshold": head.threshold,
        "scale_above": head.scale_above,
        "scale_below": head.scale_below,
        "fingerprint": head.fingerprint,
        "size": list(head.size),
    }
    save_headed_npz(path, header, weights=head.weights.astype(np.float32))


def load_head(path: str | Path) -> FieldHead:
    path = Path(path)
    header, arrays = load_headed_npz(path, "field head", FORMAT, VERSION, version_key="version")
    if "weights" not in arrays:
        raise SpatialqError(f"{path}: field head file has no weights")
    weights = np.asarray(arrays["weights"], dtype=np.float32)
    try:
        kind, dim = header["kind"], int(header["dim"])
        bias, threshold = float(header["bias"]), float(header["threshold"])
        scales = float(header["scale_above"]), float(header["scale_below"])
        fingerprint, size = str(header["fingerprint"]), (int(header["size"][0]), int(header["size"][1]))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise SpatialqError(f"{path}: field head header is incomplete ({exc})") from None
    if kind not in KINDS:
        raise SpatialqError(f"{path}: unknown field head kind {kind!r} (expected one of {', '.join(KINDS)})")
    if weights.ndim != 2 or weights.shape[1] != dim or (kind == "linear" and weights.shape[0] != 1):
        raise SpatialqError(f"{path}: weights of shape {weights.shape} do not fit a {kind} head of dim {dim}")
    if not np.isfinite(weights).all():
        raise SpatialqError(f"{path}: field head weights contain NaN or inf")
    if not np.isfinite([bias, threshold, *scales]).all() or min(scales) <= 0:
        raise SpatialqError(f"{path}: field head bias, threshold and scales must be finite, scales > 0")
    return FieldHead(kind, weights, bias, threshold, *scales, fingerprint, size, name=f"field head {path}")
