"""Our data files (maps, field heads): one .npz of arrays plus a JSON header naming format and version.

No pickle; written atomically; read back with one clear error for a missing, damaged or foreign file.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np

from .atomic import save_npz_atomic
from .errors import SpatialqError


def save_headed_npz(path: str | Path, header: dict, **arrays: np.ndarray) -> None:
    save_npz_atomic(path, header=np.array(json.dumps(header)), **arrays)


def load_headed_npz(path: str | Path, what: str, format_name: str, version: int,
                    version_key: str = "format_version") -> tuple[dict, dict[str, np.ndarray]]:
    """-> (header, arrays) after checking the format name and version."""
    path = Path(path)
    if not path.is_file():
        raise SpatialqError(f"{path}: no such {what} file")
    try:
        with np.load(path, allow_pickle=False) as data:
            header = json.loads(str(data["header"]))
            arrays = {k: data[k] for k in data.files if k != "header"}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        raise SpatialqError(f"{path}: not a readable {what} file ({type(exc).__name__})") from None
    if not isinstance(header, dict) or header.get("format") != format_name:
        raise SpatialqError(f"{path}: not a {what} file (no {format_name!r} header)")
    if header.get(version_key) != version:
        raise SpatialqError(f"{path}: {what} format version {header.get(version_key)}, this spatialq reads {version}")
    return header, arrays
