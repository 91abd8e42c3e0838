#!/usr/bin/env python3
"""GPU check of `spatialq calibrate --device`: run from the repository root on a CUDA machine.

    PYTHONUNBUFFERED=1 python3 scripts/gpu_calibration_check.py [--out-dir DIR]

Needs torch with CUDA, numpy, opencv-python-headless, onnx, onnxruntime, safetensors, tqdm, matplotlib and
pytest; not rosbags, erqa, faiss or rclpy (frames are rendered by the simulator straight to PNG files,
and `calibrate --images` reads no bag). Steps, about 4-6 minutes on an H100 with 16 cores:

1. render a simulated flight (448x448) into PNGs;
2. `calibrate --device cuda` of the ViT-S/14 (the real one if models/ holds it, else the UNTRAINED
   stand-in) at 448x448 on 256 frames + 16 held out: the run a user would make;
3. the same at 16 frames + 2 held out, on cuda and on cpu, like for like: seconds per frame in the stages
   that grow with the frames (statistics, stage 1, Hessians; report.json's stage_seconds), and stage 2,
   whose column-by-column rounding costs the same for any number of frames; from them, the CPU's time
   for the 256-frame run;
4. the CUDA tests of test/test_calibrate_device.py (CUDA vs CPU calibration, the same sampling).

Writes summary.json, the logs and the main run's report.md into --out-dir (default: $OUT, else
/tmp/spatialq_gpu_check), summary.json after every step. Exits non-zero if any step failed.
`--device cpu --size 56 --frames 4 --compare-frames 2 --skip-tests` smoke-tests the script without a GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PER_FRAME_STAGES = ("statistics", "stage 1", "hessians")


def log(message: str) -> None:
    print(f"[gpu-check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def environment() -> dict:
    import torch

    info = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
            "cuda_available": torch.cuda.is_available(), "cpu_threads": torch.get_num_threads()}
    if info["cuda_available"]:
        info["gpu"] = torch.cuda.get_device_name(0)
    missing, versions = [], {}
    for module in ("numpy", "cv2", "onnx", "onnxruntime", "safetensors", "tqdm", "matplotlib", "pytest"):
        try:
            versions[module] = getattr(__import__(module), "__version__", "?")
        except ImportError:
            missing.append(module)
    info["versions"], info["missing_modules"] = versions, missing
    return info


def render_frames(folder: Path, count: int, size: int, seed: int = 0) -> float:
    """A simulated flight, frame by frame, as PNGs (the simulator's renderer, without its rosbag writer)."""
    import cv2

    from spatialq_ros.sim.render import render_flight

    t0 = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    _, rendered = render_flight(count, (size, size), 0, seed)
    for i, (rgb, _) in enumerate(rendered):
        cv2.imwrite(str(folder / f"frame_{i:04d}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return time.perf_counter() - t0


def calibrate(name: str, frames_dir: Path, work: Path, out_dir: Path, device: str, size: int, frames: int,
              holdout: int, timeout: int, report_md: bool = False) -> dict:
    """One `spatialq calibrate` run as a user would start it; its report and timings."""
    art = work / name
    cmd = [sys.executable, "-m", "spatialq_ros.cli", "calibrate", "--images", str(frames_dir),
           "--size", f"{size}x{size}", "--frames", str(frames), "--holdout", str(holdout),
           "--device", device, "--out", str(art), "--force"]
    log(f"{name}: {' '.join(cmd[1:])}")
    t0 = time.perf_counter()
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired as exc:
        log(f"{name}: TIMED OUT after {timeout} s")
        (out_dir / f"{name}.log").write_text(_text(exc.stdout) + _text(exc.stderr))
        return {"ok": False, "error": f"timed out after {timeout} s"}
    wall = time.perf_counter() - t0
    output = run.stdout + run.stderr
    (out_dir / f"{name}.log").write_text(output)
    if run.returncode != 0:
        log(f"{name}: FAILED (exit {run.returncode}): {output.strip().splitlines()[-1] if output.strip() else ''}")
        return {"ok": False, "error": output[-3000:], "wall_seconds": wall}
    report = json.loads((art / "report.json").read_text())
    quant = json.loads((art / "quant.json").read_text())
    if report_md:
        shutil.copy(art / "report.md", out_dir / f"{name}_report.md")
    result = {"ok": quant["calibration"]["device"] == device, "device": quant["calibration"]["device"],
              "device_name": quant["calibration"]["device_name"], "frames": frames, "holdout": holdout,
              "wall_seconds": round(wall, 1), "calibration_seconds": round(report["calibration_seconds"], 2),
              "stage_seconds": report["stage_seconds"],
              # the stages that grow with the frames; stage 2 (rounding the weights) is the same for any count
              "seconds_per_frame": round(sum(report["stage_seconds"].get(k, 0.0)
                                             for k in PER_FRAME_STAGES) / frames, 4),
              "trained": report["trained"], "onnx_vs_torch_rel_error": report.get("onnx_vs_torch_rel_error"),
              "torch_fp32_vs_fp64_rel_error": report.get("torch_fp32_vs_fp64_rel_error"),
              "fidelity": {k: {m: round(v[m], 4) for m in ("patch_cosine", "cls_cosine", "nn_agreement", "erqa_pca")}
                           for k, v in report.get("fidelity", {}).items()},
              "float_channels": quant.get("float_channels", {})}
    if not result["ok"]:
        result["error"] = f"quant.json says device {result['device']}, asked {device}"
    log(f"{name}: {result['calibration_seconds']} s calibration (stages {result['stage_seconds']}; "
        f"{result['seconds_per_frame']} s per frame in the per-frame stages), {result['wall_seconds']} s in all, "
        f"on {result['device']} ({result['device_name']}); held-out fidelity {result['fidelity']}")
    return result


def _text(output) -> str:
    """What a timed-out child wrote (bytes, whatever text= said)."""
    return output.decode(errors="replace") if isinstance(output, bytes) else (output or "")


def run_tests(out_dir: Path, timeout: int) -> dict:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-k", "cuda", "-rs",
           "test/test_calibrate_device.py"]
    log("tests: " + " ".join(cmd[1:]))
    try:
        run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout} s"}
    output = run.stdout + run.stderr
    (out_dir / "pytest.log").write_text(output)
    last = output.strip().splitlines()[-1] if output.strip() else ""
    log(f"tests: {last}")
    return {"ok": run.returncode == 0 and " skipped" not in last, "summary": last}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out-dir", default=os.environ.get("OUT") or "/tmp/spatialq_gpu_check",
                        help="summary.json, logs, the main run's report.md (7 files with the caller's own log)")
    parser.add_argument("--work", default="/tmp/spatialq_gpu_work", help="frames and artifacts (large)")
    parser.add_argument("--frames", type=int, default=256, help="calibration frames of the main run")
    parser.add_argument("--compare-frames", type=int, default=16, help="frames of the like-for-like runs")
    parser.add_argument("--size", type=int, default=448, help="square frame side, a multiple of 14")
    parser.add_argument("--device", default="cuda", help="device of the main run (cpu: a smoke test of the script)")
    parser.add_argument("--skip-cpu", action="store_true", help="no like-for-like cpu run")
    parser.add_argument("--skip-tests", action="store_true")
    args = parser.parse_args()
    out_dir, work = Path(args.out_dir), Path(args.work)
    out_dir.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))

    summary: dict = {"environment": environment(), "runs": {}}

    def save() -> None:  # after every step: a run cut short still leaves what it found
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1))

    log(f"environment: {summary['environment']}")
    save()
    if args.device == "cuda" and not summary["environment"]["cuda_available"]:
        log("torch sees no CUDA GPU: nothing to check")
        return 1
    if summary["environment"]["missing_modules"]:
        log(f"missing Python modules: {summary['environment']['missing_modules']} (carry them as wheels)")
        return 1

    frames_dir = work / "frames"
    holdout = 16
    total = args.frames + holdout
    summary["render_seconds"] = round(render_frames(frames_dir, total, args.size), 1)
    log(f"rendered {total} frames {args.size}x{args.size} in {summary['render_seconds']} s")
    save()

    runs, n = summary["runs"], args.compare_frames
    runs[f"{args.device}_main"] = calibrate(f"{args.device}_main", frames_dir, work, out_dir, args.device, args.size,
                                            args.frames, holdout, 300, report_md=True)
    save()
    if args.device != "cpu":
        runs[f"{args.device}_small"] = calibrate(f"{args.device}_small", frames_dir, work, out_dir, args.device,
                                                 args.size, n, 2, 120)
        save()
    if not args.skip_cpu:
        runs["cpu_small"] = calibrate("cpu_small", frames_dir, work, out_dir, "cpu", args.size, n, 2, 240)
        small = runs.get(f"{args.device}_small", {})
        if runs["cpu_small"].get("ok") and small.get("ok"):
            cpu, dev = runs["cpu_small"], small
            summary["speedup"] = {
                "per_frame": round(cpu["seconds_per_frame"] / max(dev["seconds_per_frame"], 1e-9), 1),
                "stage_2": round(cpu["stage_seconds"]["stage 2"] / max(dev["stage_seconds"]["stage 2"], 1e-9), 1),
                "calibration": round(cpu["calibration_seconds"] / max(dev["calibration_seconds"], 1e-9), 1)}
            log(f"like for like ({n} frames): per frame cpu {cpu['seconds_per_frame']} s, {args.device} "
                f"{dev['seconds_per_frame']} s; stage 2 cpu {cpu['stage_seconds']['stage 2']} s, {args.device} "
                f"{dev['stage_seconds']['stage 2']} s; {args.device} faster x{summary['speedup']}")
            main_run = runs[f"{args.device}_main"]
            if main_run.get("ok"):
                estimate = cpu["seconds_per_frame"] * args.frames + cpu["stage_seconds"]["stage 2"]
                summary["cpu_estimate_for_main_seconds"] = round(estimate)
                log(f"{args.frames} frames: {args.device} {main_run['calibration_seconds']} s; cpu about "
                    f"{estimate:.0f} s (per-frame stages x {args.frames} + stage 2)")
        save()
    if not args.skip_tests:
        summary["tests"] = run_tests(out_dir, 240)
    summary["ok"] = all(r.get("ok") for r in runs.values()) and summary.get("tests", {"ok": True})["ok"]
    save()
    log(f"summary in {out_dir / 'summary.json'}: {'OK' if summary['ok'] else 'FAILED'}")
    return 0 if summary["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
