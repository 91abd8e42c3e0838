"""The model manifest (official URLs, sizes, sha256), shipped as package data."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import SpatialqError

DEFAULT_MANIFEST = Path(__file__).resolve().parents[1] / "data" / "models.json"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    file: str
    url: str
    arch: str
    registers: int
    size: int | None
    sha256: str | None


def manifest_path() -> Path:
    return Path(os.environ.get("SPATIALQ_MODELS_MANIFEST", DEFAULT_MANIFEST))


def load_manifest(path: Path | None = None) -> dict[str, ModelEntry]:
    path = path or manifest_path()
    try:
        data = json.loads(Path(path).read_text())
        return {
            name: ModelEntry(name, e["file"], e["url"], e["arch"], int(e["registers"]), e.get("size"), e.get("sha256"))
            for name, e in data["models"].items()
        }
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SpatialqError(f"{path}: unreadable model manifest ({exc})") from None


def entry(name: str, manifest: dict[str, ModelEntry]) -> ModelEntry:
    if name not in manifest:
        raise SpatialqError(f"unknown model {name!r}; known: {', '.join(sorted(manifest))}")
    return manifest[name]
