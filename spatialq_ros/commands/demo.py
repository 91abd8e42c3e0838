"""`spatialq demo`: the main job end to end on one backbone of the manifest (default DINOv2 ViT-S/14).

Simulate a farmland flight, calibrate the backbone to W4A8 (GPLQ) on its first frames, build a place map
from its first pass, train the field head, score everything on the whole flight with the W4A8 artifact on
ONNX Runtime, then replay the flight through the drone profile's ROS 2 nodes over DDS; plus feature pictures.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ..zoo.manifest import DEFAULT_MODEL


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backbone", default=DEFAULT_MODEL, metavar="NAME",
                        help="model of `spatialq models list` (e.g. dinov3_vits16): its file in models/, else that "
                             f"arch UNTRAINED; default {DEFAULT_MODEL}")
    parser.add_argument("--out", default="demo_out", help="output folder (replaced), default demo_out/")
    parser.add_argument("--frames", type=int, default=120, help="frames to simulate, default 120")
    parser.add_argument("--size", default="224x224", help="frame and backbone size WxH, multiples of the "
                        "backbone's patch (14 for DINOv2, 16 for DINOv3), default 224x224")
    parser.add_argument("--calibration-frames", type=int, default=32, help="GPLQ calibration frames")
    parser.add_argument("--pictures", type=int, default=6, help="frames shown in the feature picture")


def run(args: argparse.Namespace) -> int:
    import os
    import shutil

    # torch's OpenMP pool would spin after the calibration's turns and slow the replay's ONNX engine:
    # lockstep went from 15 to 11-13 frames/s, with publish -> output p95 at 300-500 ms
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..backbone.checkpoint import named_backbone
    from ..backbone.preprocess import check_size, parse_size, preprocess
    from ..banner import UNTRAINED_WARNING, warn_untrained
    from ..errors import SpatialqError
    from ..sim.bag import read_frames, read_masks
    from ..sim.simulate import SimConfig, simulate
    from ..viz.feature_pca import PcaProjection, pca_rgb
    from ..viz.pictures import side_by_side, stamp_untrained, upscale_nearest, write_png

    model, info = named_backbone(args.backbone)
    size = check_size(parse_size(args.size), model.patch_size, info.arch)
    if args.frames < args.pictures or args.pictures < 1:
        raise SpatialqError(f"--frames {args.frames} must be at least --pictures {args.pictures} (>= 1)")
    out = Path(args.out)
    if out.exists() and not (out / "report.md").exists() and any(out.iterdir()):
        raise SpatialqError(f"{out} exists and is not a demo output; choose another --out")
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)

    bag = out / "flight"
    t0 = time.perf_counter()
    simulate(bag, SimConfig(frames=args.frames, size=size, seed=0, hover=args.frames // 10))
    sim_s = time.perf_counter() - t0

    if not info.trained:
        warn_untrained()
    wanted = set(np.linspace(0, args.frames - 1, args.pictures).round().astype(int).tolist())
    masks = read_masks(bag)
    rows, tokens, latencies = [], [], []
    frames = [f for i, f in enumerate(read_frames(bag)) if i in wanted]
    with torch.inference_mode():
        for frame in tqdm(frames, desc="backbone", unit="frame"):
            t = time.perf_counter()
            result = model.extract(torch.from_numpy(preprocess(frame.rgb, size)))
            latencies.append(time.perf_counter() - t)
            tokens.append(result.patch_tokens[0].numpy())
    projection = PcaProjection.fit(np.stack(tokens))  # one colour scale, so the rows compare
    for frame, grid in zip(frames, tokens):
        pca = upscale_nearest(pca_rgb(grid, projection), size)
        rows.append(side_by_side(frame.rgb, pca, masks[frame.stamp_ns]))
    sheet = np.vstack([np.vstack([r, np.full((4, r.shape[1], 3), 255, np.uint8)]) for r in rows])
    write_png(out / "features.png", sheet if info.trained else stamp_untrained(sheet))

    steps = _pipeline_steps(args, out, bag)

    banner = "" if info.trained else f"> **{UNTRAINED_WARNING}**\n\n"
    (out / "report.md").write_text(
        f"# spatialq demo\n\n{banner}"
        f"- backbone: {args.backbone}, {info.arch} ({info.layout}, {info.path}), input {size[0]}x{size[1]} "
        f"({size[0] // model.patch_size}x{size[1] // model.patch_size} patches of {model.patch_size} px)\n"
        f"- flight: {args.frames} frames simulated in {sim_s:.1f} s -> `flight/`\n"
        f"- backbone (torch fp32, reference engine): median {1000 * float(np.median(latencies)):.0f} ms/frame "
        f"on {len(latencies)} frames\n\n"
        + steps +
        "## Feature pictures\n\nEach row: camera frame | first three PCA components of the final patch tokens "
        "(one projection for all rows) | ground-truth field mask.\n\n![features](features.png)\n")
    print(f"wrote {out}/report.md and {out}/features.png" + ("" if info.trained else "  [UNTRAINED]"))
    return 0


def _pipeline_steps(args, out: Path, bag: Path) -> str:
    """Calibrate, map, head, eval: the same commands a user runs, in order; stops at the first failure."""
    from ..cli import main
    from ..errors import SpatialqError

    first_pass = int(args.frames / 1.35)  # the flight loops 1.35 times: the rest revisits the map
    steps = [
        ("calibrate", ["calibrate", "--bag", str(bag), "--model", args.backbone, "--size", args.size,
                       "--frames", str(args.calibration_frames), "--holdout", "8", "--qwt", "--out", str(out / "w4a8")]),
        ("build-map", ["build-map", "--bag", str(bag), "--model", str(out / "w4a8"), "--size", args.size,
                       "--frames", str(first_pass), "--out", str(out / "map.npz")]),
        ("train-field-head", ["train-field-head", "--bag", str(bag), "--model", str(out / "w4a8"), "--size", args.size,
                              "--frames", "20", "--out", str(out / "field_head.npz")]),
        ("eval", ["eval", "--bag", str(bag), "--model", str(out / "w4a8"), "--size", args.size,
                  "--map", str(out / "map.npz"), "--field-head", str(out / "field_head.npz"), "--out", str(out / "eval")]),
        ("replay", ["replay", str(bag), "--profile", "drone", "--model", str(out / "w4a8"), "--map", str(out / "map.npz"),
                    "--field-head", str(out / "field_head.npz"), "--out", str(out / "replay.bag"),
                    "--report", str(out / "replay")]),
    ]
    times = []
    for name, argv in steps:
        t = time.perf_counter()
        if main(argv) != 0:
            raise SpatialqError(f"demo step {name} failed (see the line above)")
        times.append(f"| {name} | {time.perf_counter() - t:.0f} s |")
    return ("## Pipeline (W4A8 artifact on ONNX Runtime)\n\n| step | time |\n| --- | --- |\n" + "\n".join(times)
            + "\n\n- calibration report: [w4a8/report.md](w4a8/report.md)\n"
            "- perception scores (keypoint repeatability, field IoU / boundary F, VPR recall): "
            "[eval/report.md](eval/report.md)\n"
            "- ROS 2 replay through the drone profile (outputs recorded in `replay.bag/`): "
            "[replay/report.md](replay/report.md)\n\n"
            "![replay frame](replay/overlay_1.png) ![place matches](replay/matches.png)\n\n"
            "![replay latency](replay/latency.png)\n\n")
