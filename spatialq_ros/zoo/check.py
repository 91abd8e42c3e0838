"""Is a checkpoint on disk the one the manifest names? Size first (free), then sha256 (streamed); where only the
sha256 prefix of the official file name is public (licence-gated DINOv3), that prefix."""

from __future__ import annotations

from pathlib import Path

from ..hashing import file_sha256
from .manifest import ModelEntry

MISSING = "missing"
VERIFIED = "verified"
UNPINNED = "present, hash not pinned"
PREFIX_VERIFIED = "verified (sha256 prefix)"
MISMATCH = "MISMATCH"


def file_status(path: Path, entry: ModelEntry) -> str:
    if not path.is_file():
        return MISSING
    if entry.size is not None and path.stat().st_size != entry.size:
        return MISMATCH
    if entry.sha256 is None:
        if entry.sha256_prefix is None:
            return UNPINNED
        return PREFIX_VERIFIED if file_sha256(path).startswith(entry.sha256_prefix) else MISMATCH
    return VERIFIED if file_sha256(path) == entry.sha256 else MISMATCH


def identify(path: Path, digest: str, manifest: dict[str, ModelEntry]) -> ModelEntry | None:
    """The entry with this hash (or sha256 prefix), else the one with this file name (to report a mismatch),
    else None."""
    by_hash = [e for e in manifest.values() if e.sha256 == digest
               or (e.sha256 is None and e.sha256_prefix and digest.startswith(e.sha256_prefix))]
    if by_hash:
        return by_hash[0]
    return next((e for e in manifest.values() if e.file == path.name), None)
