"""Write-then-rename, so a crash or a bad input never leaves a half-written output behind."""

from __future__ import annotations

import io
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import numpy as np

from .errors import SpatialqError


def check_writable_parent(path: str | Path) -> Path:
    path = Path(path)
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise SpatialqError(f"{path}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise SpatialqError(f"{path}: folder {parent} is not writable")
    return path


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _read_umask()  # read once, at import: os.umask is process-wide and not thread-safe


def write_atomic(path: str | Path, data: bytes) -> None:
    path = check_writable_parent(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_npz_atomic(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


@contextmanager
def atomic_dir(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `target`; on success it replaces `target`, on error it vanishes."""
    target = check_writable_parent(target)
    if target.exists() and not force:
        raise SpatialqError(f"{target} already exists (use --force to replace it)")
    try:
        tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
        tmp.chmod(0o755)  # mkdtemp makes 0700; outputs (bags, artifacts) are for other users too
    except OSError as exc:
        raise SpatialqError(f"{target}: cannot write in {target.parent} ({exc.strerror})") from None
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".old"))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
