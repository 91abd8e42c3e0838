"""Same frames, engine by engine in turn, in one process: latency, throughput, memory, size and fidelity."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime as ort

from ..metrics.erqa import erqa
from ..viz.feature_pca import PcaProjection, pca_rgb
from ..viz.pictures import upscale_nearest
from . import baselines
from .gemm_peak import GemmPeak, vit_gmacs
from .rss import deploy_rss_mb

INT8_ENGINES = ("ort-int8-dynamic", "ort-int8-static-minmax", "spatialq-w4a8-qdq", "spatialq-w4a8-int4",
                "spatialq-w4a8-cpu")


@dataclass
class BenchRow:
    engine: str
    size: str
    p50_ms: float
    p95_ms: float
    fps: float
    rss_mb: float | None
    model_mb: float
    cosine: float
    erqa: float
    gops: float  # effective rate: the model's multiply-accumulates x 2 x frames/s, in G operations/s
    peak_fraction: float = float("nan")  # gops / the GEMM peak of its kind (`with_peak_fractions`)
    patch_tokens: int = 0  # the token grid's size: what makes two backbones' rows comparable
    backbone: str = ""  # the model's manifest name or arch

    def as_dict(self) -> dict:
        return asdict(self)


def ort_runner(path: Path, threads: int) -> Callable[[np.ndarray], np.ndarray]:
    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    # Engines take turns in one process: a session whose pool spins after its run steals the cores from
    # the next one (2 cores, interleaved: ort-fp32 107 -> 73 ms, W4A8 69 -> 39 ms at 224 without spinning).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.enable_mem_pattern = False  # as OnnxEngine deploys it
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(["patch_tokens"], {"image": x})[0][0]


def engines_for(artifact: Path, torch_model, images: list[np.ndarray], work: Path,
                threads: int) -> dict[str, tuple[Callable, Path | None]]:
    import torch

    fp32 = artifact / "fp32.onnx"
    dynamic = baselines.int8_dynamic(fp32, work / "int8_dynamic.onnx")
    static = baselines.int8_static_minmax(fp32, work / "int8_static_minmax.onnx", images[: min(8, len(images))])

    def torch_fp32(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            out = torch_model.extract(torch.from_numpy(x)).patch_tokens[0]
        return out.reshape(-1, out.shape[-1]).numpy()

    return {
        "torch-fp32": (torch_fp32, None),
        "ort-fp32": (ort_runner(fp32, threads), fp32),
        "ort-int8-dynamic": (ort_runner(dynamic, threads), dynamic),
        "ort-int8-static-minmax": (ort_runner(static, threads), static),
        "spatialq-w4a8-qdq": (ort_runner(artifact / "model.onnx", threads), artifact / "model.onnx"),
        "spatialq-w4a8-int4": (ort_runner(artifact / "model_int4.onnx", threads), artifact / "model_int4.onnx"),
        "spatialq-w4a8-cpu": (ort_runner(artifact / "model_cpu.onnx", threads), artifact / "model_cpu.onnx"),
    }


def measure(engines: dict, images: list[np.ndarray], size: tuple[int, int], config, peaks: dict[str, GemmPeak],
            checkpoint_mb: float, threads: int) -> list[BenchRow]:
    """Round-robin over engines for every frame (order rotated), so machine noise hits all alike; the GEMM
    peaks take their turn too, so they are timed through the same noise."""
    names = list(engines)
    for name in names:
        engines[name][0](images[0])  # warm-up: lazy allocations and kernel selection
    times: dict[str, list[float]] = {n: [] for n in names}
    outputs: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for i, x in enumerate(images):
        for name in names[i % len(names):] + names[: i % len(names)]:
            t = time.perf_counter()
            out = engines[name][0](x)
            times[name].append(time.perf_counter() - t)
            outputs[name].append(out)
        for gemm in peaks.values():
            gemm.run()
    reference = outputs["torch-fp32"]
    grid = (size[1] // config.patch_size, size[0] // config.patch_size)
    # ERQA compares feature pictures: every engine's are rendered with the reference's projection, so the
    # score measures the tokens, not a per-picture colour stretch.
    projection = PcaProjection.fit(np.stack(reference))
    ref_pictures = [upscale_nearest(pca_rgb(r.reshape(*grid, -1), projection), size) for r in reference]
    tokens = grid[0] * grid[1] + 1 + config.num_register_tokens
    gmacs = vit_gmacs(config.depth, config.embed_dim, tokens, config.mlp_ratio)
    rows = []
    for name in names:
        t = np.array(times[name]) * 1000
        out = outputs[name]
        cosine = float(np.mean([patch_cosine(o, r) for o, r in zip(out, reference)]))
        score = float(np.mean([erqa(upscale_nearest(pca_rgb(o.reshape(*grid, -1), projection), size), p)
                               for o, p in zip(out, ref_pictures)]))
        path = engines[name][1]
        fps = 1000.0 / float(np.median(t))
        rows.append(BenchRow(name, f"{size[0]}x{size[1]}", float(np.median(t)), float(np.percentile(t, 95)), fps,
                             deploy_rss_mb(path, size, threads=threads) if path else None,
                             (path.stat().st_size / 1e6) if path else checkpoint_mb, cosine, score,
                             gmacs * 2 * fps, patch_tokens=grid[0] * grid[1]))
    return rows


def with_peak_fractions(rows: list[BenchRow], peaks: dict[str, GemmPeak]) -> list[BenchRow]:
    """Each row's effective rate against the best GEMM rate of its kind seen over the whole run."""
    return [replace(r, peak_fraction=r.gops / peaks["int8" if r.engine in INT8_ENGINES else "fp32"].gops)
            for r in rows]


def patch_cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Mean over patches of the cosine between two (..., C) token arrays."""
    a = a.reshape(-1, a.shape[-1])
    b = b.reshape(-1, b.shape[-1])
    return float((np.sum(a * b, 1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)).mean())
