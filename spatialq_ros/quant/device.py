"""Where calibration runs: `auto` (CUDA when torch sees a GPU, else the CPU), `cpu` or `cuda`.

The calibration code creates every tensor on the device of the data it works on, so one choice here moves
all of it (teacher, student, statistics, QAT, Hessians and rounding, QwT, the held-out report); the
artifact is always written from CPU copies.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from ..errors import SpatialqError

DEVICES = ("auto", "cpu", "cuda")


def resolve_device(name: str):
    """"auto" | "cpu" | "cuda" -> torch.device; asking for CUDA where there is none is one SpatialqError."""
    import torch

    if name not in DEVICES:
        raise SpatialqError(f"device {name!r}: choose {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        build = f"built for CUDA {torch.version.cuda}" if torch.version.cuda else "a CPU-only build"
        raise SpatialqError(f"device cuda: torch {torch.__version__} ({build}) sees no CUDA GPU; "
                            "use device cpu or auto")
    return torch.device(name)


def device_name(device) -> str:
    """What the device is, for quant.json and the report: the GPU's name, or the CPU's."""
    import torch

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from ..bench.cpu_class import read_cpu_class

    return read_cpu_class().describe()


@contextmanager
def exact_float32(device) -> Iterator[None]:
    """On CUDA, float32 convolutions and matmuls in full precision (no TF32, which cuDNN uses for
    convolutions by default): calibration then computes what the CPU computes, to rounding."""
    import torch

    if getattr(device, "type", device) != "cuda":
        yield
        return
    conv = getattr(torch.backends.cudnn, "conv", None)
    if conv is not None and hasattr(conv, "fp32_precision"):  # torch >= 2.9
        saved = conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision
        conv.fp32_precision = torch.backends.cuda.matmul.fp32_precision = "ieee"
        try:
            yield
        finally:
            conv.fp32_precision, torch.backends.cuda.matmul.fp32_precision = saved
    else:
        saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            yield
        finally:
            torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
