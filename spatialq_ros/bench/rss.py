"""Memory of a process: another one's RSS and peak from /proc, and the peak of a deploy-only process (a fresh
interpreter that loads one ONNX engine and runs frames).

VmHWM, not ru_maxrss: the latter survives fork + exec and would report the (large) benchmark process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

_SCRIPT = """
import json, resource, sys
import numpy as np
import onnxruntime as ort
path, h, w, frames, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
options = ort.SessionOptions()
options.enable_mem_pattern = False  # as OnnxEngine deploys it
if threads:
    options.intra_op_num_threads = threads
session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((1, 3, h, w)).astype(np.float32)
for _ in range(frames):
    session.run(None, {session.get_inputs()[0].name: x})
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
peak_kb = int(hwm[0].split()[1]) if hwm else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rss_mb": peak_kb / 1024,
                  "torch": "torch" in sys.modules}))
"""


def process_mb(pid: int, key: str = "VmRSS") -> float:
    """A running process's memory from /proc/PID/status: VmRSS (now) or VmHWM (its peak), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise ValueError(f"/proc/{pid}/status has no {key}")


def loads_torch(pid: int) -> bool:
    """Whether a running process has torch's library mapped: the deploy path must not."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def deploy_rss_mb(onnx_path: Path, size: tuple[int, int], frames: int = 3, threads: int = 0) -> float:
    result = subprocess.run([sys.executable, "-c", _SCRIPT, str(onnx_path), str(size[1]), str(size[0]), str(frames),
                             str(threads)], capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr else "deploy process failed")
    data = json.loads(result.stdout.strip().splitlines()[-1])
    assert not data["torch"], "the deploy process imported torch"
    return float(data["rss_mb"])
