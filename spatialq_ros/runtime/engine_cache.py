"""A cache of built inference engines (TensorRT plans), so a robot never rebuilds one at every start.

A plan is only valid for the graph, the TensorRT version and the GPU it was built for, so the key hashes
all three; a changed artifact or an upgraded JetPack simply misses. Plans are written to a temp file and
renamed, so a build interrupted by a power cut leaves no half plan to load next time.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

from ..atomic import write_atomic
from ..errors import SpatialqError


def default_cache_dir() -> Path:
    base = os.environ.get("SPATIALQ_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "spatialq_ros")
    return Path(base) / "engines"


def cache_key(graph: Path, runtime_version: str, device: str, options: str = "") -> str:
    """sha256 over the graph bytes, the runtime version, the device name and build options."""
    h = hashlib.sha256()
    try:
        with open(graph, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise SpatialqError(f"{graph}: cannot read the graph ({exc.strerror})") from None
    for part in (runtime_version, device, options):
        h.update(b"\0" + part.encode())
    return h.hexdigest()


class EngineCache:
    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder else default_cache_dir()
        self.built = 0  # builds done by this cache object (0 after a warm start)

    def path(self, key: str, suffix: str = ".plan") -> Path:
        return self.folder / f"{key[:32]}{suffix}"

    def get_or_build(self, key: str, build: Callable[[], bytes], suffix: str = ".plan") -> bytes:
        """The cached bytes for `key`, or `build()`'s, stored atomically for the next start."""
        path = self.path(key, suffix)
        if path.is_file() and path.stat().st_size > 0:
            return path.read_bytes()
        data = build()
        if not data:
            raise SpatialqError(f"engine build for {path.name} produced nothing")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
        except OSError as exc:
            raise SpatialqError(f"{path}: cannot store the built engine ({exc.strerror})") from None
        self.built += 1
        return data
