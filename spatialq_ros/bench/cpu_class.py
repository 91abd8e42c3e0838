"""The CPU class a speed figure belongs to, read from /proc/cpuinfo.

INT8 speed is decided by a handful of instructions: on x86, `vpdpbusd` (AVX-512 VNNI or AVX-VNNI) does a u8 x s8
dot product in one step where AVX2 alone needs `vpmaddubsw` + `vpmaddwd`, so the INT8 GEMM peak is ~4x FP32 with
VNNI and only ~2x without; AMX adds tile matmuls. On ARM, `sdot`/`udot` (asimddp) and `smmla` (i8mm) play those
parts. A figure measured on one class says nothing about another, so every bench output names it.
"""

from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

X86_FEATURES = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "amx_int8")
ARM_FEATURES = ("asimd", "asimddp", "i8mm", "sve", "sve2")


@dataclass(frozen=True)
class CpuClass:
    arch: str  # x86_64, aarch64, ...
    model: str  # the model name the kernel reports ("" when it reports none, as many ARM kernels)
    features: tuple[str, ...]  # those of X86_FEATURES / ARM_FEATURES this CPU has
    cores: int

    @property
    def name(self) -> str:
        """The class in words, e.g. 'x86 AVX2 without VNNI' or 'ARM dot-product + i8mm'."""
        has = set(self.features)
        if self.arch in ("x86_64", "AMD64", "i686"):
            if "avx512_vnni" in has:
                base = "x86 AVX-512 VNNI"
            elif "avx_vnni" in has:
                base = "x86 AVX-VNNI (AVX2)"
            elif "avx512bw" in has:
                base = "x86 AVX-512 without VNNI"
            elif "avx2" in has:
                base = "x86 AVX2 without VNNI"
            else:
                base = "x86 without AVX2"
            return base + (" + AMX-INT8" if "amx_int8" in has else "")
        if self.arch in ("aarch64", "arm64"):
            if "asimddp" not in has:
                return "ARM NEON without dot-product"
            return "ARM dot-product" + "".join(f" + {f}" for f in ("i8mm", "sve") if f in has)
        return self.arch or "unknown CPU"

    def describe(self) -> str:
        """One line for a report header: class, model, cores and the features it was decided by."""
        model = f"{self.model}, " if self.model else ""
        return f"{self.name} ({model}{self.cores} cores; {' '.join(self.features) or 'none of the INT8 features'})"

    def as_dict(self) -> dict:
        return {**asdict(self), "features": list(self.features), "class": self.name, "description": self.describe()}


def read_cpu_class(cpuinfo: str | None = None, arch: str | None = None) -> CpuClass:
    """This machine's class; `cpuinfo` (the text of /proc/cpuinfo) and `arch` are for other machines' text."""
    arch = arch or platform.machine()
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text(errors="replace") if path.exists() else ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() not in fields:  # the first processor speaks for all
            fields[key.strip()] = value.strip()
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    wanted = ARM_FEATURES if arch in ("aarch64", "arm64") else X86_FEATURES
    model = fields.get("model name") or fields.get("Model") or fields.get("Hardware") or ""
    cores = sum(1 for line in cpuinfo.splitlines() if line.startswith("processor")) or os.cpu_count() or 1
    return CpuClass(arch, model, tuple(f for f in wanted if f in flags), cores)
