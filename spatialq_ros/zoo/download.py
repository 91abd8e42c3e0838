"""Streaming download with a progress bar and checksum; the file appears only once it is verified.

Bytes go to a temp file beside the target and are hashed on the way; only a file whose size and
sha256 match the manifest is renamed over the target, so a failed or tampered download never
replaces a good checkpoint and never leaves a partial one behind.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path
from typing import BinaryIO

from tqdm import tqdm

from ..errors import SpatialqError
from ..hashing import CHUNK
from .manifest import ModelEntry

USER_AGENT = "spatialq_ros-models/1"


def download(entry: ModelEntry, directory: Path, url: str | None = None, timeout: float = 30.0) -> tuple[Path, str]:
    """Fetch `entry` into `directory`; returns (path, sha256). A licence-gated entry needs `url`."""
    url = url or entry.url
    if url is None:
        raise SpatialqError(f"{entry.name}: cannot be downloaded automatically ({entry.license} licence); "
                            f"{entry.access}")
    target = directory / entry.file
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=f".{entry.file}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            digest, size = _stream(url, out, entry, target, timeout)
        if entry.size is not None and size != entry.size:
            raise SpatialqError(f"{entry.name}: downloaded {size} bytes from {url}, expected {entry.size}; "
                                "nothing written")
        if entry.sha256 is not None and digest != entry.sha256:
            raise SpatialqError(f"{entry.name}: sha256 {digest} of the download from {url} does not match the "
                                f"manifest's {entry.sha256}; nothing written")
        if entry.sha256 is None and entry.sha256_prefix and not digest.startswith(entry.sha256_prefix):
            raise SpatialqError(f"{entry.name}: sha256 {digest} of the download from {url} does not start with "
                                f"{entry.sha256_prefix}, the official file name's; nothing written")
        os.replace(tmp, target)
        return target, digest
    finally:
        if tmp.exists():
            tmp.unlink()


def manual_hint(entry: ModelEntry, target: Path) -> str:
    if entry.url is None:
        return f"{entry.access}; save it as {os.path.abspath(target)}"
    pin = f"; its sha256 must be {entry.sha256}" if entry.sha256 else "; then pin its sha256 in the manifest"
    return f"download {entry.url} by hand and save it as {os.path.abspath(target)}{pin}"


def _mirror(url: str, entry: ModelEntry) -> str:
    return "" if url == entry.url else f" from {url}"


def _stream(url: str, out: BinaryIO, entry: ModelEntry, target: Path, timeout: float) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            announced = _content_length(response)
            if announced is not None and entry.size is not None and announced != entry.size:
                raise SpatialqError(f"{entry.name}: {url} serves {announced} bytes, expected {entry.size}; "
                                    "nothing written")
            with tqdm(total=announced or entry.size, unit="B", unit_scale=True, unit_divisor=1024,
                      desc=entry.file) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b""):
                    _write(out, chunk, target)
                    digest.update(chunk)
                    size += len(chunk)
                    bar.update(len(chunk))
    except urllib.error.HTTPError as exc:
        raise SpatialqError(f"{entry.name}: could not download{_mirror(url, entry)} (HTTP {exc.code} {exc.reason}); "
                            f"{manual_hint(entry, target)}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise SpatialqError(f"{entry.name}: could not download{_mirror(url, entry)} ({reason}; offline?); "
                            f"{manual_hint(entry, target)}") from None
    except ValueError as exc:
        raise SpatialqError(f"{entry.name}: bad download URL {url!r} ({exc})") from None
    if announced is not None and size != announced:
        raise SpatialqError(f"{entry.name}: connection closed after {size} of {announced} bytes from {url}; "
                            "nothing written (run fetch again)")
    return digest.hexdigest(), size


def _write(out: BinaryIO, chunk: bytes, target: Path) -> None:
    try:
        out.write(chunk)
    except OSError as exc:  # a full disk is not a network problem: say so, not "offline?"
        raise SpatialqError(f"{target.parent}: cannot write the download ({exc.strerror or exc})") from None


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    return int(value) if value and value.isdigit() else None
