"""Streaming download with a progress bar and checksum; the file appears only once it is verified."""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tqdm import tqdm

from ..errors import SpatialqError
from ..hashing import CHUNK
from .manifest import ModelEntry



def download(entry: ModelEntry, directory: Path, url: str | None = None, timeout: float = 30.0) -> tuple[Path, str]:
    """Fetch `entry` into `directory`; returns (path, sha256). A mismatch leaves any earlier file alone."""
    url = url or entry.url
    target = directory / entry.file
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{entry.file}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        digest, size = _stream(url, fd, entry, directory, timeout)
        if entry.size is not None and size != entry.size:
            raise SpatialqError(f"{entry.name}: downloaded {size} bytes, expected {entry.size}; nothing written")
        if entry.sha256 is not None and digest != entry.sha256:
            raise SpatialqError(f"{entry.name}: sha256 {digest} does not match the manifest's {entry.sha256}; "
                                "nothing written")
        os.replace(tmp, target)
        return target, digest
    finally:
        if tmp.exists():
            tmp.unlink()


def _stream(url: str, fd: int, entry: ModelEntry, directory: Path, timeout: float) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total = int(response.headers.get("Content-Length") or 0) or entry.size
            with tqdm(total=total, unit="B", unit_scale=True, desc=entry.file) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise SpatialqError(f"{entry.name}: download failed, HTTP {exc.code} from {url}") from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        raise SpatialqError(f"{entry.name}: cannot download ({reason}); offline? {manual_hint(entry, directory)}") from None
    return digest.hexdigest(), size


def manual_hint(entry: ModelEntry, directory: Path | None = None) -> str:
    where = (directory or Path("models")) / entry.file
    pin = f" (sha256 {entry.sha256})" if entry.sha256 else ""
    return f"download {entry.url} by hand and put it at {where}{pin}"

