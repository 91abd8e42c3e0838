"""`spatialq calibrate`: GPLQ (or min-max) W4A8 calibration on the user's own footage -> an artifact folder."""

from __future__ import annotations

import argparse

from ..quant.device import DEVICES


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="FP32 checkpoint, or a model name of `spatialq models list` (its file "
                        "in models/, else that arch UNTRAINED); default: models/dinov2_vits14_pretrain.pth, else "
                        "UNTRAINED")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bag", help="rosbag2 with camera frames (raw or compressed)")
    source.add_argument("--images", help="folder of calibration images")
    parser.add_argument("--topic", help="image topic in --bag (default: the camera topic)")
    parser.add_argument("--size", default="224x224", help="deployment resolution WxH, multiples of the "
                        "backbone's patch (14 for DINOv2, 16 for DINOv3)")
    parser.add_argument("--frames", type=int, default=256, help="calibration frames (default 256)")
    parser.add_argument("--holdout", type=int, default=16, help="extra frames kept out, for the report")
    parser.add_argument("--method", choices=("gplq", "minmax"), default="gplq")
    parser.add_argument("--qwt", action="store_true", help="add QwT block compensation (stage 2)")
    parser.add_argument("--rounding", choices=("feedback", "nearest"), default="feedback",
                        help="stage 2 rounding of the 4-bit weights: with error feedback (GPTQ-style, default) "
                             "or to nearest")
    parser.add_argument("--alpha", type=float, default=None,
                        help="post-LayerNorm folding strength for every layer, 0 to 1 (1 = RepQ); default: chosen "
                             "per layer from its W4A8 output error on the calibration frames")
    parser.add_argument("--value-alpha", type=float, default=0.5,
                        help="gplq: strength at which each attention projection's input ranges fold into the value "
                             "rows of qkv, 0 to 1 (0: none; the facet block never; default 0.5)")
    parser.add_argument("--massive-factor", type=float, default=16.0,
                        help="gplq: input channels whose calibration max exceeds this x their layer's INT8 clipping "
                             "level (massive activations) bypass the quantizers in float; 0 quantizes every channel "
                             "(default 16)")
    parser.add_argument("--wide-share", type=float, default=0.5,
                        help="gplq: at most this share of the weights may get 7 bits instead of 4, given to the "
                             "layers whose 4-bit weights cost the output most per weight, measured on calibration "
                             "frames; 0 keeps every layer at 4 bits (default 0.5)")
    parser.add_argument("--head-rotation", choices=("search", "off"), default="search",
                        help="gplq: rotate each head's output (a Hadamard folded into the value rows and the "
                             "projection, nothing added to the graphs) in the blocks where that halves the projection's "
                             "W4A8 error on the calibration frames (default search)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where calibration runs: auto = cuda when torch sees a GPU, else cpu; the artifact is "
                             "written from CPU copies either way (default auto)")
    parser.add_argument("--facet-layer", type=int, default=-1, help="block whose value facet the graph outputs")
    parser.add_argument("--out", required=True, help="artifact folder")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def run(args: argparse.Namespace) -> int:
    from ..errors import SpatialqError
    from ..quant.job import CalibrationJob, label, read_calibration_frames, run_calibration

    if args.frames < 1 or args.holdout < 0:
        raise SpatialqError("--frames must be >= 1 and --holdout >= 0")
    job = CalibrationJob(model=args.model, size=args.size, frames=args.frames, holdout=args.holdout,
                         method=args.method, qwt=args.qwt, rounding=args.rounding, alpha=args.alpha,
                         value_alpha=args.value_alpha,
                         massive_factor=args.massive_factor, wide_share=args.wide_share,
                         head_rotation=args.head_rotation == "search",
                         facet_layer=args.facet_layer, out=args.out,
                         force=args.force, source=args.bag or args.images, topic=args.topic, device=args.device)
    job.check_output()
    frames, truth = read_calibration_frames(args.bag, args.images, args.topic, job)
    report = run_calibration(job, frames, truth=truth)
    for name, f in report.get("fidelity", {}).items():
        print(f"held-out {label(name)}: patch cosine {f['patch_cosine']:.4f}, ERQA(PCA) {f['erqa_pca']:.3f}, "
              f"NN agreement {f['nn_agreement']:.3f}")
    for other, rows in report.get("not_ahead", {}).items():
        if rows:
            print(f"{label(job.method)} is not ahead of {other} on: " + ", ".join(metric for metric, _, _ in rows)
                  + " (report.md)")
    return 0
