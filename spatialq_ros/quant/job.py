"""One calibration run, frames to artifact folder: shared by `spatialq calibrate` and the calibration node.

The artifact is written into a temp folder and renamed at the end, so an interrupted or failed run never
leaves a half-written artifact; the report compares the method with the min-max baseline on held-out frames.
"""

from __future__ import annotations

import copy
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import SpatialqError
from .head_report import FlightTruth


DYNAMIC = "ort_dynamic"  # ORT quantize_dynamic W8A8 of the artifact's fp32.onnx: the baseline a skeptic tries first


def label(name: str) -> str:
    """How the report names a compared model: a method of ours is W4A8, the ORT baseline W8A8."""
    return "ORT quantize_dynamic W8A8" if name == DYNAMIC else f"{name} W4A8"


@dataclass
class CalibrationJob:
    model: str | None
    size: str
    frames: int
    holdout: int = 16
    method: str = "gplq"
    qwt: bool = False
    rounding: str = "feedback"  # stage 2: "feedback" (GPTQ-style) or "nearest"
    alpha: float | None = None  # post-LayerNorm folding strength; None: chosen per layer from its output error
    value_alpha: float = 0.5  # gplq: the projections' input ranges folded into the value rows at this strength
    massive_factor: float = 16.0  # input channels above this x their layer's clipping level stay float (0: none)
    wide_share: float = 0.5  # gplq: at most this share of the weights at 7 bits, where measured to pay (0: none)
    head_rotation: bool = True  # gplq: rotate the heads' outputs in the blocks where it halves the projection's error
    facet_layer: int = -1
    out: str = "artifact"
    force: bool = False
    source: str | None = None  # where the frames came from (bag, folder or topic), for quant.json
    topic: str | None = None
    device: str = "auto"  # where calibration runs: "auto" (CUDA when available), "cpu" or "cuda"

    def check_output(self) -> None:
        """Fail before any work when a setting is invalid, CUDA is asked for and missing, or the folder exists
        (without force). Whether the size fits the backbone's patch is checked once the model is loaded."""
        from ..backbone.preprocess import parse_size
        from .device import resolve_device

        parse_size(self.size)
        resolve_device(self.device)
        if self.alpha is not None and not 0 <= self.alpha <= 1:
            raise SpatialqError(f"alpha {self.alpha:g}: use a folding strength from 0 to 1, or leave it out "
                                "(chosen per layer)")
        if not 0 <= self.value_alpha <= 1:
            raise SpatialqError(f"value alpha {self.value_alpha:g}: use a folding strength from 0 (none) to 1")
        if self.massive_factor != 0 and not 2 <= self.massive_factor < float("inf"):
            raise SpatialqError(f"massive factor {self.massive_factor:g}: use 0 (quantize every channel) or >= 2")
        if not 0 <= self.wide_share <= 1:
            raise SpatialqError(f"wide share {self.wide_share:g}: use a share of the weights from 0 (all 4-bit) to 1")
        if Path(self.out).exists() and not self.force:
            raise SpatialqError(f"{self.out} already exists (use --force to replace it)")


def run_calibration(job: CalibrationJob, frames: list[np.ndarray], progress: bool = True,
                    on_step: Callable[[str, int, int], None] | None = None,
                    truth: FlightTruth | None = None) -> dict:
    """RGB frames (calibration + held-out) -> artifact folder at job.out; returns the report.
    truth: the frames' ground-truth masks and poses (`read_calibration_frames` gives them), for the heads."""
    import torch

    from ..atomic import atomic_dir
    from ..backbone.checkpoint import backbone_for
    from ..backbone.preprocess import check_size, parse_size, preprocess, resize_rgb
    from ..banner import UNTRAINED_WARNING, warn_untrained
    from ..runtime.onnx_engine import OnnxEngine
    from .artifact import write_artifact
    from .device import device_name, exact_float32, resolve_device
    from .gplq import CalibrationConfig, calibrate
    from .head_report import head_scores
    from ..bench.baselines import int8_dynamic
    from .report import GraphBackbone, fidelity, not_ahead, plot_block_cosine

    job.check_output()
    size = parse_size(job.size)
    device = resolve_device(job.device)
    model, info = backbone_for(job.model)
    check_size(size, model.patch_size, info.arch)
    if len(frames) < job.frames + job.holdout:
        raise SpatialqError(f"{job.source}: {len(frames)} frames, fewer than the {job.frames + job.holdout} asked "
                            f"({job.frames} calibration + {job.holdout} held out)")
    rgbs = [resize_rgb(f, size) for f in frames[: job.frames + job.holdout]]
    if not info.trained:
        warn_untrained()
    images = torch.from_numpy(np.concatenate([preprocess(r) for r in rgbs]))
    fingerprint = hashlib.sha256(images[: job.frames].numpy().tobytes()).hexdigest()
    hardware = device_name(device)
    print(f"calibrating on {device.type} ({hardware})")
    model, images = model.to(device), images.to(device)  # the artifact is written from CPU copies
    cal, held = images[: job.frames], images[job.frames:]
    config = CalibrationConfig(method=job.method, alpha=job.alpha, value_alpha=job.value_alpha, qwt=job.qwt,
                               error_feedback=job.rounding == "feedback", massive_factor=job.massive_factor,
                               wide_share=job.wide_share, head_rotation=job.head_rotation,
                               facet_layer=job.facet_layer)
    t0 = time.perf_counter()
    qmodel, log = calibrate(model, cal, rgbs[: job.frames], config, progress=progress, on_step=on_step,
                            device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - t0
    meta = {"method": job.method, "arch": info.arch, "trained": info.trained,
            "source_checkpoint_sha256": info.sha256, "source_checkpoint": info.path,
            "calibration": {"frames": job.frames, "fingerprint": fingerprint,
                            "source": job.source, "topic": job.topic, "seconds": round(seconds, 1),
                            "device": device.type, "device_name": hardware},
            "config": dict(config.__dict__), "layer_choices": log.layer_choices,
            "wide_layers": log.wide, "rotated_heads": log.rotated_heads,
            "sensitivity_probe_error": log.probe_error[0] if log.probe_error else None,
            "sensitivity_probe_error_after": log.probe_error[1] if log.probe_error else None}
    out = Path(job.out)
    with atomic_dir(out, force=job.force) as tmp, exact_float32(device):
        quant = write_artifact(tmp, qmodel, model, meta, size, job.facet_layer)
        report = {"method": job.method, "calibration_seconds": seconds, "stage_seconds": log.seconds,
                  "losses": log.losses, "trained": info.trained, "device": device.type, "device_name": hardware}
        if len(held):
            compared = {job.method: qmodel}
            if job.method == "gplq":  # the plain baseline, through the same code, for comparison
                compared["minmax"], _ = calibrate(model, cal, rgbs[: job.frames], CalibrationConfig(method="minmax"),
                                                  progress=False, device=device)
            report["holdout_frames"] = len(held)
            with tempfile.TemporaryDirectory() as work:  # the skeptic's baseline: ORT's own INT8 of fp32.onnx
                dynamic = OnnxEngine(tmp, DYNAMIC, path=int8_dynamic(tmp / "fp32.onnx", Path(work) / "dynamic.onnx"))
                report["ort_dynamic_vs_int4_size"] = (Path(work) / "dynamic.onnx").stat().st_size / (tmp / "model_int4.onnx").stat().st_size
                scored = {**compared, DYNAMIC: GraphBackbone(dynamic)}
                report["fidelity"] = {name: fidelity(model, m, held) for name, m in scored.items()}
                if truth is not None:
                    report["truth_matched_by"] = "log time" if truth.by_log_time else "header stamp"
                report["heads"] = head_scores({"FP32": model, **{label(n): compared[n] for n in compared},
                                               label(DYNAMIC): dynamic}, info, rgbs, job.frames, truth,
                                              job.facet_layer)
                write_pca_comparison(tmp / "pca_holdout.png", model, scored, held[:1], rgbs[job.frames])
            report["not_ahead"] = not_ahead({label(n): f for n, f in report["fidelity"].items()}, report["heads"],
                                            label(job.method))
            plot_block_cosine(report["fidelity"], tmp / "block_cosine.png")
            engine = OnnxEngine(tmp, "qdq")
            with torch.no_grad():  # both on the calibration device
                ref = qmodel.extract(held[:1]).patch_tokens[0].cpu().numpy()
                exact = copy.deepcopy(qmodel).double().extract(held[:1].double()).patch_tokens[0].cpu().numpy()
            ort_out = engine.infer_normalized(held[:1].cpu().numpy()).patch_tokens
            report["onnx_vs_torch_rel_error"] = relative_error(ort_out, ref)
            # The same fake-quant model in float64: rounding-level differences flip INT8 codes, and flips
            # compound over the blocks; no float32 implementation can agree with torch better than this.
            report["torch_fp32_vs_fp64_rel_error"] = relative_error(ref, exact)
        sizes = {f.name: f.stat().st_size for f in tmp.iterdir()}
        report["files"] = sizes
        report["int4_vs_fp32_size"] = sizes["model_int4.onnx"] / sizes["fp32.onnx"]
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.md").write_text(_markdown(report, quant, info, UNTRAINED_WARNING))
    print(f"wrote {out}: {job.method} W4A8 in {seconds:.0f} s on {device.type}"
          + ("" if info.trained else "  [UNTRAINED]"))
    return report


def relative_error(ours: np.ndarray, reference: np.ndarray) -> float:
    return float(np.linalg.norm(ours - reference) / np.linalg.norm(reference))


def read_calibration_frames(bag: str | None, images: str | None, topic: str | None,
                            job: CalibrationJob) -> tuple[list[np.ndarray], FlightTruth | None]:
    """Up to frames + holdout frames from a bag topic (raw or compressed) or an image folder, and what the bag
    knows about them (ground-truth masks, poses) for the report's head scores when frames are held out."""
    from ..imageio import read_rgb

    count = job.frames + job.holdout
    truth = None
    if bag:
        from ..sim.bag import read_frames  # rosbags: only for bags
        from .head_report import flight_truth

        frames, stamps, by_log_time = [], [], False
        for frame in read_frames(bag, topic):
            frames.append(frame.rgb)
            stamps.append(frame.stamp_ns)
            by_log_time |= frame.log_time
            if len(frames) == count:
                break
        source = bag
        truth = flight_truth(bag, stamps, by_log_time) if job.holdout else None
    else:
        folder = Path(images)
        if not folder.is_dir():
            raise SpatialqError(f"{folder}: no such image folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        frames = [read_rgb(p) for p in files[:count]]
        source = str(folder)
    if not frames:
        raise SpatialqError(f"{source}: no frames to calibrate on")
    return frames, truth  # too few for the job: run_calibration says so, for every caller


def write_pca_comparison(path, fp32, models: dict, image, rgb) -> None:
    """One held-out frame: RGB | FP32 features | each quantized model's features, all rendered with the
    projection fitted on the FP32 tokens, so a colour difference is a feature difference."""
    import torch

    from ..viz.feature_pca import PcaProjection
    from ..viz.pictures import side_by_side, write_png
    from .report import pca_pictures

    size = (image.shape[-1], image.shape[-2])
    with torch.no_grad():
        ref = fp32.extract(image).patch_tokens
        projection = PcaProjection.fit(ref.cpu().numpy())
        pictures = [pca_pictures(ref, projection, size)[0]]
        pictures += [pca_pictures(m.extract(image).patch_tokens, projection, size)[0] for m in models.values()]
    write_png(path, side_by_side(rgb, *pictures))


def _markdown(report: dict, quant: dict, info, warning: str) -> str:
    lines = ["# W4A8 calibration report", ""]
    if not info.trained:
        lines += [f"> **{warning}**", ""]
    lines += [f"- method: {report['method']}, arch {quant['arch']}, size {quant['size'][0]}x{quant['size'][1]}",
              f"- calibration: {quant['calibration']['frames']} frames in {report['calibration_seconds']:.0f} s "
              f"on {report['device']} ({report['device_name']}): "
              + ", ".join(f"{stage} {s:.1f} s" for stage, s in report["stage_seconds"].items()),
              f"- model_int4.onnx is {report['int4_vs_fp32_size']:.3f} x fp32.onnx"]
    floats = quant.get("float_channels", {})
    lines.append("- input channels kept float: " +
                 (", ".join(f"{name} {channels}" for name, channels in floats.items()) if floats else "none"))
    lines += _rotation_markdown(quant)
    lines += _wide_markdown(quant)
    lines += _choices_markdown(quant.get("layer_choices", {}), quant.get("act_zero_points", {}))
    if "fidelity" in report:
        lines += ["", f"## Held-out fidelity vs FP32 ({report['holdout_frames']} frames)", "",
                  "| model | patch cosine | CLS cosine | patch NN agreement | ERQA 1.1 (feature PCA) | corners kept |",
                  "| --- | --- | --- | --- | --- | --- |",
                  "| FP32 | 1.0000 | 1.0000 | 1.000 | 1.000 | 1.000 |"]
        for name, f in report["fidelity"].items():
            lines.append(f"| {label(name)} | {f['patch_cosine']:.4f} | {f['cls_cosine']:.4f} | {f['nn_agreement']:.3f} | "
                         f"{f['erqa_pca']:.3f} | {f['corner_preservation']:.3f} |")
        lines += _not_ahead_markdown(report, label(report["method"]))
        lines += ["", f"ONNX Runtime (model.onnx) vs the torch fake-quant model: relative error "
                  f"{report['onnx_vs_torch_rel_error']:.2e} (the same torch model in float32 vs float64: "
                  f"{report['torch_fp32_vs_fp64_rel_error']:.2e}, the floor set by INT8 codes that flip on "
                  "rounding-level differences)", "",
                  "![per-block cosine](block_cosine.png)", "",
                  "Held-out frame: RGB | FP32 | " + " | ".join(label(n) for n in report["fidelity"]) +
                  " (feature PCA, one projection fitted on FP32)", "", "![pca](pca_holdout.png)"]
        lines += _heads_markdown(report["heads"])
        if report.get("truth_matched_by") == "log time":
            lines += ["", "Ground truth was matched to the frames by the bag's log time: their header stamps are zero."]
    return "\n".join(lines) + "\n"


def _not_ahead_markdown(report: dict, ours: str) -> list[str]:
    """Where the method is not ahead of a baseline, in words, metric by metric."""
    lines = ["", f"{label(DYNAMIC)} is ORT's own INT8 of fp32.onnx (weights per channel, activations quantized "
             f"per call), {report['ort_dynamic_vs_int4_size']:.1f} x the size of model_int4.onnx. It has no "
             "per-block outputs, so the block plot leaves it out."]
    for other, rows in report["not_ahead"].items():
        if not rows:
            lines += ["", f"{ours} is ahead of {other} on every metric of the fidelity and heads tables."]
            continue
        lines += ["", f"**{ours} is not ahead of {other} on {len(rows)} metric{'s' if len(rows) > 1 else ''}:** "
                  + "; ".join(f"{metric} {a:.3f} vs {b:.3f}" for metric, a, b in rows) + "."]
    return lines


def _rotation_markdown(quant: dict) -> list[str]:
    """Which blocks' head outputs calibration rotated (a Hadamard per head, folded into the weights)."""
    if quant["method"] != "gplq":
        return []
    if not quant["config"].get("head_rotation"):
        return ["- head rotation: off"]
    blocks = quant.get("rotated_heads", [])
    return [f"- head rotation (a Hadamard per head folded into the value rows and the projection, where that halved "
            f"the projection's W4A8 error; the facet block never): "
            + (f"blocks {', '.join(map(str, blocks))}" if blocks else "no block")]


def _wide_markdown(quant: dict) -> list[str]:
    """Which layers calibration gave 7-bit weights, and what each removed of the probe error."""
    if quant.get("sensitivity_probe_error") is None:
        return []
    share = quant["config"]["wide_share"]
    chosen = quant["wide_layers"]
    head = (f"- 7-bit weights: {len(chosen)} layer{'s' if len(chosen) != 1 else ''} (at most {share:.0%} of the "
            f"weights; in rounds, a layer qualifies when its float weights remove >= 2 % of the error left on the "
            f"sensitivity probe; probe error {quant['sensitivity_probe_error']:.2e} with every layer at 4 bits, "
            f"{quant['sensitivity_probe_error_after']:.2e} after)")
    return [head + (": " + ", ".join(f"{name} (-{gain:.0%})" for name, gain in chosen.items()) if chosen else "")]


def _choices_markdown(choices: dict, zero_points: dict) -> list[str]:
    """What the per-layer search chose, against the fixed default (alpha 0.5, no float channels), and where each
    layer's 256 input codes sit."""
    if not choices:
        return []
    lines = ["", "## Per-layer choices (layer search on the calibration frames)", "",
             "Each Linear's W4A8 output error (relative, squared; weights rounded to nearest) with its chosen "
             "folding strength and float input channels, and with the fixed alpha 0.5 and none (an attention "
             "projection's strength is --value-alpha, folded into the value rows of qkv). Input codes: the "
             "layer's INT8 window, cut to where its inputs are ([-128, 127] for a symmetric input; a GELU output "
             "starts near 0).", "",
             "| layer | alpha | float channels | input codes | output error | fixed default |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, c in choices.items():
        alpha = "-" if c["alpha"] is None else f"{c['alpha']:g}"
        zero = zero_points.get(name, 128)
        lines.append(f"| {name} | {alpha} | {len(c['float_channels'])} | [{-zero}, {255 - zero}] | {c['error']:.2e} | "
                     f"{c['baseline_error']:.2e} |")
    return lines


def _heads_markdown(heads: dict) -> list[str]:
    from ..metrics.repeatability import WARP_DEG, WARP_SHIFT
    from .head_report import MAP_FRAMES

    first = next(iter(heads.values()))
    lines = ["", f"## Heads on the held-out frames ({first['keypoints']['frames']})", "",
             f"Each model with the field head and the map it would be deployed with, fitted on its own features of "
             f"the last {MAP_FRAMES} calibration frames at most. Keypoints: the frame against itself rotated "
             f"{WARP_DEG} deg and shifted {WARP_SHIFT} px. Their locations come from image gradients, so "
             "repeatability is the same for every model; descriptor matching (mutual nearest neighbours that "
             "land within 3 px) is where quantization shows.", "",
             "| model | keypoint repeatability | descriptor matching | field boundary F | field IoU | VPR R@1 | "
             "VPR R@5 | top-1 place as FP32 |", "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, h in heads.items():
        k, f, p = h["keypoints"], h.get("field"), h.get("place")
        lines.append(f"| {name} | {k['repeatability']:.3f} | {k['matching_accuracy']:.3f} | "
                     + (f"{f['boundary_f']:.3f} | {f['iou']:.3f} | " if f else "- | - | ")
                     + (f"{p['recall@1']:.3f} | {p['recall@5']:.3f} | {p['top1_as_fp32']:.3f} |" if p
                        else "- | - | - |"))
    if "field" not in first:
        lines += ["", "Field boundaries: not scored (the bag has no ground-truth field masks, or they leave no "
                  "background in the calibration frames to fit a head on)."]
    if "place" not in first:
        lines += ["", "Place recognition: not scored (the bag has no poses)."]
    else:
        p = first["place"]
        lines += ["", f"Place recognition: {p['queries']} held-out queries against {p['map_places']} map places; "
                  f"a match within {p['threshold_m']:g} m is right (nan: no query has a place that close)."]
    return lines
