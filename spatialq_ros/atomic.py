"""Write-then-rename, so a crash, a full disk or a bad input never leaves a half-written output behind.

Temp files and folders sit beside their target as `.NAME.PID.RANDOM.tmp`. A process killed outright (SIGKILL,
power loss) cannot remove its own, so the next write to the same target removes those whose process is gone.
"""

from __future__ import annotations

import errno
import glob
import io
import os
import re
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


def _temp_prefix(target: Path) -> str:
    return f".{target.name}.{os.getpid()}."


def remove_stale_temps(target: Path) -> list[Path]:
    """Remove the temp files and folders that earlier writers of `target` left when they were killed: those of a
    process that no longer runs, and those without a process id (written before temp names carried one). A
    writer killed between moving the old target aside and moving the new one in left the old one in its
    `.old` folder: that one is put back first."""
    pattern = re.compile(re.escape(f".{target.name}.") + r"(?:(\d+)\.)?[^.]+\.(?:tmp|old)$")
    removed = []
    for entry in sorted(target.parent.glob(f".{glob.escape(target.name)}.*")):
        match = pattern.match(entry.name)
        if match is None or (match.group(1) is not None and _running(int(match.group(1)))):
            continue
        kept = entry / target.name
        if entry.suffix == ".old" and not target.exists() and kept.exists():
            os.replace(kept, target)
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def disk_error(target: str | Path, exc: OSError) -> SpatialqError | None:
    """One line for a write that ran out of room (full disk, quota, file-size limit); None for other errors."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return SpatialqError(f"{target}: not written: {exc.strerror.lower()}; what was there before is kept")
    return None


def write_atomic(path: str | Path, data: bytes) -> None:
    path = check_writable_parent(path)
    remove_stale_temps(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; outputs get the usual permissions
        os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError) and (one_line := disk_error(path, exc)) is not None:
            raise one_line from None
        raise


def save_npz_atomic(path: str | Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


@contextmanager
def atomic_path(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a path beside `target` that does not exist yet, for a writer that creates its output itself (a
    rosbag2 writer makes its own folder); on success it replaces `target`, on error it vanishes."""
    target = check_writable_parent(target)
    remove_stale_temps(target)  # first: it may put back an old target that a killed writer had moved aside
    if target.exists() and not force:
        raise SpatialqError(f"{target} already exists (use --force to replace it)")
    try:
        holder = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temp_prefix(target), suffix=".tmp"))
        holder.chmod(0o755)  # mkdtemp makes 0700; outputs (bags, artifacts) are for other users too
    except OSError as exc:
        raise SpatialqError(f"{target}: cannot write in {target.parent} ({exc.strerror})") from None
    tmp = holder / target.name
    try:
        yield tmp
        if target.exists():
            old = Path(tempfile.mkdtemp(dir=target.parent, prefix=_temp_prefix(target), suffix=".old"))
            os.replace(target, old / target.name)
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException as exc:
        if isinstance(exc, OSError) and (one_line := disk_error(target, exc)) is not None:
            raise one_line from None
        raise
    finally:
        shutil.rmtree(holder, ignore_errors=True)


@contextmanager
def atomic_dir(target: str | Path, force: bool = False) -> Iterator[Path]:
    """Yield a temp folder beside `target`; on success it replaces `target`, on error it vanishes."""
    with atomic_path(target, force) as tmp:
        tmp.mkdir(mode=0o755)
        tmp.chmod(0o755)  # whatever the umask: outputs (bags, artifacts) are for other users too
        yield tmp
