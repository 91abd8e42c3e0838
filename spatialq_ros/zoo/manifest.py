"""The model manifest: official URL, size and sha256 of each known checkpoint.

Licence-gated checkpoints (DINOv3) have no public URL: their entry says how to obtain the file by hand
(`access`), and pins what is public, the sha256 prefix their official file name carries.

The canonical copy ships as package data (`spatialq_ros/data/models.json`), so a source checkout, an
editable install and a colcon install all read the same file; `models/manifest.json` is a copy for
people browsing the repository. `SPATIALQ_MODELS_MANIFEST` points at another one (mirrors, tests).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpatialqError

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "data" / "models.json"
MANIFEST_ENV = "SPATIALQ_MODELS_MANIFEST"
DEFAULT_MODEL = "dinov2_vits14"  # what runs when no model is named
_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA256_PREFIX = re.compile(r"[0-9a-f]{8,64}")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    url: str | None  # None = licence-gated, no public URL: see `access`
    arch: str
    registers: int
    license: str
    size: int | None  # bytes; None = not pinned yet
    sha256: str | None  # None = not pinned yet
    sha256_prefix: str | None = None  # the leading hex digits torch hub file names carry ("-08c60483.pth")
    access: str | None = None  # how to obtain a licence-gated file by hand


def manifest_path() -> Path:
    return Path(os.environ.get(MANIFEST_ENV) or DEFAULT_MANIFEST)


def load_manifest(path: str | Path | None = None) -> dict[str, ModelEntry]:
    path = Path(path) if path is not None else manifest_path()
    try:
        data = json.loads(path.read_text())
        default_license = data.get("license", "unknown")
        entries = {name: _entry(name, fields, default_license) for name, fields in data["models"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SpatialqError(f"{path}: unreadable model manifest ({type(exc).__name__}: {exc})") from None
    if not entries:
        raise SpatialqError(f"{path}: model manifest lists no models")
    return entries


def _entry(name: str, fields: dict, default_license: str) -> ModelEntry:
    sha256 = fields.get("sha256")
    if sha256 is not None and not _SHA256.fullmatch(sha256):
        raise ValueError(f"{name}: sha256 must be 64 lowercase hex digits or null, got {sha256!r}")
    size = fields.get("size")
    if size is not None and (not isinstance(size, int) or size <= 0):
        raise ValueError(f"{name}: size must be a positive byte count or null, got {size!r}")
    prefix = fields.get("sha256_prefix")
    if prefix is not None and not _SHA256_PREFIX.fullmatch(prefix):
        raise ValueError(f"{name}: sha256_prefix must be 8-64 lowercase hex digits or null, got {prefix!r}")
    file = fields["file"]
    if Path(file).name != file:
        raise ValueError(f"{name}: file must be a bare file name, got {file!r}")
    url, access = fields["url"], fields.get("access")
    if url is None and not access:
        raise ValueError(f"{name}: an entry without url must say how to obtain the file (access)")
    return ModelEntry(name, file, url, fields["arch"], int(fields["registers"]),
                      fields.get("license", default_license), size, sha256, prefix, access)


def find_entry(name: str, manifest: dict[str, ModelEntry]) -> ModelEntry:
    if name not in manifest:
        raise SpatialqError(f"unknown model {name!r}; known: {', '.join(sorted(manifest))}")
    return manifest[name]
