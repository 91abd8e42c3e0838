"""The spatialq command in a child process, as a user's shell runs it, optionally under `ulimit -f`."""

from __future__ import annotations

import os
import resource
import subprocess
import sys


def run_spatialq(args: list[str], file_size_limit: int | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`file_size_limit` bytes: no file the child writes may grow past it, so a write fails as on a full disk
    (Python ignores SIGXFSZ, so the write raises EFBIG instead of killing the process)."""
    def limit_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run([sys.executable, "-m", "spatialq_ros.cli", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TQDM_DISABLE": "1"},  # stderr: errors only
                          preexec_fn=limit_files if file_size_limit is not None else None)


def error_lines(run: subprocess.CompletedProcess) -> list[str]:
    """stderr without the UNTRAINED notice that every weight-dependent command prints here."""
    return [line for line in run.stderr.splitlines() if not line.startswith("[spatialq] UNTRAINED")]
