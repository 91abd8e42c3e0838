"""`spatialq calibrate`: GPLQ (or min-max) W4A8 calibration on the user's own footage -> an artifact folder."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="FP32 checkpoint (default: models/dinov2_vits14_pretrain.pth, else UNTRAINED)")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bag", help="rosbag2 with camera frames (raw or compressed)")
    source.add_argument("--images", help="folder of calibration images")
    parser.add_argument("--topic", help="image topic in --bag (default: the camera topic)")
    parser.add_argument("--size", default="224x224", help="deployment resolution WxH, multiples of 14")
    parser.add_argument("--frames", type=int, default=256, help="calibration frames (default 256)")
    parser.add_argument("--holdout", type=int, default=16, help="extra frames kept out, for the report")
    parser.add_argument("--method", choices=("gplq", "minmax"), default="gplq")
    parser.add_argument("--qwt", action="store_true", help="add QwT block compensation (stage 2)")
    parser.add_argument("--alpha", type=float, default=0.5, help="post-LayerNorm folding strength (1 = RepQ)")
    parser.add_argument("--facet-layer", type=int, default=-1, help="block whose value facet the graph outputs")
    parser.add_argument("--out", required=True, help="artifact folder")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    import json
    import time
    from pathlib import Path

    import numpy as np
    import torch

    from ..atomic import atomic_dir
    from ..backbone.checkpoint import default_backbone, load_backbone
    from ..backbone.preprocess import parse_size, preprocess, resize_rgb
    from ..banner import UNTRAINED_WARNING, warn_untrained
    from ..errors import SpatialqError
    from ..quant.artifact import write_artifact
    from ..quant.gplq import CalibrationConfig, calibrate
    from ..quant.report import fidelity, plot_block_cosine
    from ..runtime.onnx_engine import OnnxEngine

    size = parse_size(args.size)
    if args.frames < 1 or args.holdout < 0:
        raise SpatialqError("--frames must be >= 1 and --holdout >= 0")
    out = Path(args.out)
    if out.exists() and not args.force:
        raise SpatialqError(f"{out} already exists (use --force to replace it)")
    rgbs = [resize_rgb(f, size) for f in _read_frames(args, args.frames + args.holdout)]
    model, info = load_backbone(args.model) if args.model else default_backbone()
    if not info.trained:
        warn_untrained()
    images = torch.from_numpy(np.concatenate([preprocess(r) for r in rgbs]))
    cal, held = images[: args.frames], images[args.frames:]
    fingerprint = __import__("hashlib").sha256(images[: args.frames].numpy().tobytes()).hexdigest()
    config = CalibrationConfig(method=args.method, alpha=args.alpha, qwt=args.qwt)
    t0 = time.perf_counter()
    qmodel, log = calibrate(model, cal, rgbs[: args.frames], config)
    seconds = time.perf_counter() - t0
    meta = {"method": args.method, "arch": info.arch, "trained": info.trained,
            "source_checkpoint_sha256": info.sha256, "source_checkpoint": info.path,
            "calibration": {"frames": args.frames, "fingerprint": fingerprint,
                            "source": args.bag or args.images, "topic": args.topic, "seconds": round(seconds, 1)},
            "config": {k: v for k, v in config.__dict__.items()}}
    with atomic_dir(out, force=args.force) as tmp:
        quant = write_artifact(tmp, qmodel, model, meta, size, args.facet_layer)
        report = {"method": args.method, "calibration_seconds": seconds, "losses": log.losses,
                  "trained": info.trained}
        if len(held):
            compared = {args.method: qmodel}
            if args.method == "gplq":  # the plain baseline, through the same code, for comparison
                compared["minmax"], _ = calibrate(model, cal, rgbs[: args.frames], CalibrationConfig(method="minmax"),
                                                  progress=False)
            report["holdout_frames"] = len(held)
            report["fidelity"] = {name: fidelity(model, m, held) for name, m in compared.items()}
            plot_block_cosine(report["fidelity"], tmp / "block_cosine.png")
            write_pca_comparison(tmp / "pca_holdout.png", model, compared, held[:1], rgbs[args.frames])
            engine = OnnxEngine(tmp, "qdq")
            with torch.no_grad():
                ref = qmodel.extract(held[:1]).patch_tokens[0].numpy()
            ort_out = engine.infer_normalized(held[:1].numpy()).patch_tokens
            report["onnx_vs_torch_rel_error"] = float(np.linalg.norm(ort_out - ref) / np.linalg.norm(ref))
        sizes = {f.name: f.stat().st_size for f in tmp.iterdir()}
        report["files"] = sizes
        report["int4_vs_fp32_size"] = sizes["model_int4.onnx"] / sizes["fp32.onnx"]
        (tmp / "report.json").write_text(json.dumps(report, indent=1))
        (tmp / "report.md").write_text(_markdown(report, quant, info, UNTRAINED_WARNING))
    print(f"wrote {out}: {args.method} W4A8 in {seconds:.0f} s" + ("" if info.trained else "  [UNTRAINED]"))
    for name, f in report.get("fidelity", {}).items():
        print(f"held-out {name}: patch cosine {f['patch_cosine']:.4f}, ERQA(PCA) {f['erqa_pca']:.3f}, "
              f"NN agreement {f['nn_agreement']:.3f}")
    return 0


def write_pca_comparison(path, fp32, models: dict, image, rgb) -> None:
    """One held-out frame: RGB | FP32 features | each quantized model's features (one PCA basis)."""
    import torch

    from ..viz.feature_pca import pca_basis
    from ..quant.report import pca_pictures
    from ..viz.pictures import side_by_side, write_png

    size = (image.shape[-1], image.shape[-2])
    with torch.no_grad():
        ref = fp32.extract(image).patch_tokens
        basis = pca_basis(ref.numpy())
        pictures = [pca_pictures(ref, basis, size)[0]]
        pictures += [pca_pictures(m.extract(image).patch_tokens, basis, size)[0] for m in models.values()]
    write_png(path, side_by_side(rgb, *pictures))


def _read_frames(args, count: int):
    from pathlib import Path

    from ..errors import SpatialqError
    from ..imageio import read_rgb
    from ..sim.bag import read_frames

    if args.bag:
        frames = []
        for frame in read_frames(args.bag, args.topic):
            frames.append(frame.rgb)
            if len(frames) == count:
                break
        source = args.bag
    else:
        folder = Path(args.images)
        if not folder.is_dir():
            raise SpatialqError(f"{folder}: no such image folder")
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
        frames = [read_rgb(p) for p in files[:count]]
        source = str(folder)
    if not frames:
        raise SpatialqError(f"{source}: no frames to calibrate on")
    if len(frames) < count:
        raise SpatialqError(f"{source}: {len(frames)} frames, fewer than the {count} asked "
                            f"(--frames {args.frames} + --holdout {args.holdout})")
    return frames


def _markdown(report: dict, quant: dict, info, warning: str) -> str:
    lines = ["# W4A8 calibration report", ""]
    if not info.trained:
        lines += [f"> **{warning}**", ""]
    lines += [f"- method: {report['method']}, arch {quant['arch']}, size {quant['size'][0]}x{quant['size'][1]}",
              f"- calibration: {quant['calibration']['frames']} frames in {report['calibration_seconds']:.0f} s",
              f"- model_int4.onnx is {report['int4_vs_fp32_size']:.3f} x fp32.onnx"]
    if "fidelity" in report:
        lines += ["", f"## Held-out fidelity vs FP32 ({report['holdout_frames']} frames)", "",
                  "| model | patch cosine | CLS cosine | patch NN agreement | ERQA 1.1 (feature PCA) | corners kept |",
                  "| --- | --- | --- | --- | --- | --- |",
                  "| FP32 | 1.0000 | 1.0000 | 1.000 | 1.000 | 1.000 |"]
        for name, f in report["fidelity"].items():
            lines.append(f"| {name} W4A8 | {f['patch_cosine']:.4f} | {f['cls_cosine']:.4f} | {f['nn_agreement']:.3f} | "
                         f"{f['erqa_pca']:.3f} | {f['corner_preservation']:.3f} |")
        lines += ["", f"ONNX Runtime (model.onnx) vs the torch fake-quant model: relative error "
                  f"{report['onnx_vs_torch_rel_error']:.2e}", "",
                  "![per-block cosine](block_cosine.png)", "",
                  "Held-out frame: RGB | FP32 | " + " | ".join(f"{n} W4A8" for n in report["fidelity"]) +
                  " (feature PCA, one basis)", "", "![pca](pca_holdout.png)"]
    return "\n".join(lines) + "\n"
