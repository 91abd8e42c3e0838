"""Frame cache on a hover: what skipping the backbone on near-still frames saves, and what it costs.

A simulated flight of 2N frames hovers for N of them (from a third of the way in, as `spatialq sim
--hover` does). The engine runs over every frame twice in one process, frame by frame with the order
alternating: once plain, once behind `CachedEngine`. Reported: hits, split by whether the camera stood
still (ground-truth pose within STILL_M of the previous frame's) or moved; the speed-up (total time
without / with the cache, the cache's own change measure included); and the error the cache allows:
patch-token cosine of the Features it served against the freshly computed Features of the same frames
(mean and worst over the hits).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..runtime.engine import Engine
from ..runtime.frame_cache import DEFAULT_MAX_REUSE, CachedEngine
from .harness import patch_cosine

HOVER_SEED = 11
STILL_M = 0.25  # camera moved less than this since the previous frame: standing still (hover jitter: ~3 cm)


@dataclass
class HoverResult:
    engine: str
    size: str
    frames: int
    still_frames: int  # frames whose camera stood still since the previous frame (the hover)
    threshold: float  # grey levels (runtime/frame_cache.py)
    max_reuse: int
    hits: int
    hit_rate: float  # hits / frames
    still_hits: int  # hits among the still frames
    moving_hits: int  # hits on frames whose camera moved (should be 0: the view changed)
    ms_without: float  # total engine time over all frames, no cache
    ms_with: float  # total time behind the cache (change measure included)
    speedup: float  # ms_without / ms_with
    hit_ms: float | None  # mean time of a hit: the cache's overhead
    cosine_mean: float | None  # patch-token cosine of served vs fresh Features, mean over hits
    cosine_worst: float | None  # ... and the lowest
    cosine_mean_all: float  # ... mean over all frames (misses count as computed)

    def as_dict(self) -> dict:
        return asdict(self)


def still_frames(positions: np.ndarray) -> np.ndarray:
    """(N, 3) camera positions in metres -> (N,) bool: moved less than STILL_M since the previous frame."""
    still = np.zeros(len(positions), bool)
    still[1:] = np.linalg.norm(np.diff(positions, axis=0), axis=1) < STILL_M
    return still


def hover_flight(folder: Path, size: tuple[int, int], hover: int, seed: int = HOVER_SEED
                 ) -> tuple[list[np.ndarray], np.ndarray]:
    """Simulate 2 * hover frames, `hover` of them hovering; the RGB frames and which of them stood still."""
    from ..sim.bag import read_frames, read_poses
    from ..sim.simulate import SimConfig, simulate

    simulate(folder, SimConfig(frames=2 * hover, size=size, seed=seed, hover=hover), progress=False)
    frames = list(read_frames(folder))
    poses = read_poses(folder)
    return [f.rgb for f in frames], still_frames(np.array([poses[f.stamp_ns][:3] for f in frames]))


def measure_hover(engine: Engine, frames: list[np.ndarray], still: np.ndarray, threshold: float,
                  max_reuse: int = DEFAULT_MAX_REUSE, name: str = "engine") -> HoverResult:
    """Every frame through `engine` plain and behind a CachedEngine; `still`: (N,) bool per frame."""
    still = np.asarray(still, bool)
    if not frames or still.shape != (len(frames),):
        raise ValueError("measure_hover needs frames and one `still` flag per frame")
    cache = CachedEngine(engine, threshold, max_reuse)
    engine.infer(frames[0])  # warm-up: lazy allocations and kernel selection
    fresh_ms, cached_ms, hits, cosines = [], [], [], []
    for i, rgb in enumerate(frames):
        for plain in ((True, False) if i % 2 == 0 else (False, True)):
            t = time.perf_counter()
            if plain:
                fresh = engine.infer(rgb)
                fresh_ms.append(1000 * (time.perf_counter() - t))
            else:
                served = cache.infer(rgb)
                cached_ms.append(1000 * (time.perf_counter() - t))
                hits.append(cache.last_hit)
        cosines.append(patch_cosine(served.patch_tokens, fresh.patch_tokens))
    hit = np.array(hits)
    cos = np.array(cosines)
    without, with_cache = float(np.sum(fresh_ms)), float(np.sum(cached_ms))
    size = engine.size
    return HoverResult(
        name, f"{size[0]}x{size[1]}", len(frames), int(still.sum()), cache.threshold, cache.max_reuse,
        int(hit.sum()), float(hit.mean()), int((hit & still).sum()), int((hit & ~still).sum()),
        without, with_cache, without / with_cache,
        float(np.mean(np.array(cached_ms)[hit])) if hit.any() else None,
        float(cos[hit].mean()) if hit.any() else None, float(cos[hit].min()) if hit.any() else None,
        float(cos.mean()))


def run_hover(artifact: Path, size: tuple[int, int], work: Path, hover: int, threshold: float,
              threads: int = 0) -> HoverResult:
    """The bench's hover measurement: the artifact's CPU graph (spatialq-w4a8-cpu) on a hover flight."""
    from ..runtime.onnx_engine import OnnxEngine

    frames, still = hover_flight(work / f"hover_{size[0]}x{size[1]}", size, hover)
    engine = OnnxEngine(artifact, graph="cpu", threads=threads, providers=["CPUExecutionProvider"])
    return measure_hover(engine, frames, still, threshold, name="spatialq-w4a8-cpu")


def hover_section(results: list[HoverResult]) -> str:
    """Markdown for bench.md."""
    if not results:
        return ""
    r0 = results[0]
    lines = ["", "## Frame cache on a hover", "",
             f"Simulated flight of {r0.frames} frames with a hover; every frame through {r0.engine} with and "
             f"without the frame cache (threshold {r0.threshold:g} grey levels, max reuse {r0.max_reuse} "
             "frames), interleaved in one process. Still: camera within "
             f"{STILL_M:g} m of the previous frame's pose. Speed-up: total time without / with the cache. "
             "Cosine: patch tokens the cache served vs the ones computed fresh for the same frames.", "",
             "| engine | size | hits | hit rate | hits on still frames | hits moving | ms without | ms with "
             "| speed-up | ms per hit | cosine mean (hits) | cosine worst (hits) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        def fmt(v, spec):
            return "-" if v is None else format(v, spec)
        lines.append(f"| {r.engine} | {r.size} | {r.hits}/{r.frames} | {100 * r.hit_rate:.0f}% | "
                     f"{r.still_hits}/{r.still_frames} | {r.moving_hits} | {r.ms_without:.0f} | {r.ms_with:.0f} | "
                     f"{r.speedup:.2f}x | {fmt(r.hit_ms, '.2f')} | {fmt(r.cosine_mean, '.4f')} | "
                     f"{fmt(r.cosine_worst, '.4f')} |")
    return "\n".join(lines) + "\n"

