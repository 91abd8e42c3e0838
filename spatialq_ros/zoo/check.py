"""Is a checkpoint on disk the one the manifest names? Size first (free), then sha256 (streamed)."""

from __future__ import annotations

from pathlib import Path

from ..hashing import file_sha256
from .manifest import ModelEntry

MISSING = "missing"
VERIFIED = "verified"
UNPINNED = "present, hash not pinned"
MISMATCH = "MISMATCH"


def file_status(path: Path, entry: ModelEntry) -> str:
    if not path.is_file():
        return MISSING
    if entry.size is not None and path.stat().st_size != entry.size:
        return MISMATCH
    if entry.sha256 is None:
        return UNPINNED
    return VERIFIED if file_sha256(path) == entry.sha256 else MISMATCH


def identify(path: Path, digest: str, manifest: dict[str, ModelEntry]) -> ModelEntry | None:
    """The entry with this hash, else the one with this file name (to report a mismatch), else None."""
    by_hash = [e for e in manifest.values() if e.sha256 == digest]
    if by_hash:
        return by_hash[0]
    return next((e for e in manifest.values() if e.file == path.name), None)
