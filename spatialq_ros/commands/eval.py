"""`spatialq eval`: keypoints, place recognition and field boundaries scored against a simulated flight."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, help="simulated flight (images, /odom, ground-truth masks)")
    parser.add_argument("--topic", help="camera topic in the bag (default: the camera topic)")
    parser.add_argument("--model", help="checkpoint or W4A8 artifact (default: the embedded default)")
    parser.add_argument("--map", help="place map from build-map (omit: place recognition not scored)")
    parser.add_argument("--field-head", help="head from train-field-head (omit: field not scored)")
    parser.add_argument("--size", default="448x448", help="backbone input WxH")
    parser.add_argument("--frames", type=int, help="evaluate only the first N frames")
    parser.add_argument("--threshold-m", type=float, default=25.0, help="VPR: a match within this distance is right")
    parser.add_argument("--out", default="eval_out", help="report folder (markdown, JSON, pictures)")
    parser.add_argument("--baseline", choices=("auto", "dynamic", "none"), default="auto",
                        help="score ORT quantize_dynamic W8A8 of the artifact's fp32.onnx beside it (auto: when "
                             "--model is an artifact)")


def run(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import cv2
    import numpy as np
    from tqdm import tqdm

    from ..backbone.preprocess import parse_size
    from ..banner import UNTRAINED_WARNING, warn_untrained
    from ..metrics.repeatability import WARP_DEG, WARP_SHIFT, known_homography, repeatability
    from ..metrics.segmentation import boundary_f, iou, object_f1
    from ..metrics.vpr import recall_at_k
    from ..perception.field import field_mask, load_head
    from ..perception.keypoints import detect
    from ..perception.pipeline import Pipeline
    from ..perception.place.database import PlaceDatabase
    from ..perception.place.recognizer import PlaceRecognizer
    from ..errors import SpatialqError
    from ..runtime.factory import is_artifact, make_engine
    from ..sim.bag import iter_masks, join_by_stamp, read_frames, read_poses

    size = parse_size(args.size)
    if args.baseline == "dynamic" and not is_artifact(args.model):
        raise SpatialqError("--baseline dynamic quantizes an artifact's fp32.onnx: give a W4A8 artifact as --model")
    engine = make_engine(args.model, size)
    if not engine.trained:
        warn_untrained()
    db = PlaceDatabase.load(args.map) if args.map else None
    head = load_head(args.field_head) if args.field_head else None
    pipeline = Pipeline(engine, place=PlaceRecognizer(db, engine.fingerprint, 5) if db else None, field_head=head)
    poses = read_poses(args.bag) if db else {}
    map_stamps = set(db.stamps.tolist()) if db else set()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    skeptic = None
    if args.baseline != "none" and is_artifact(args.model):
        from ..bench.skeptic import SkepticComparison

        skeptic = SkepticComparison(args.model, pipeline.keypoint_config)

    field_rows, queries, retrieved, repeats, timings, overlays = [], [], [], [], [], []
    homography = known_homography(size)
    frames = ((frame.stamp_ns, frame) for frame in read_frames(args.bag, args.topic))
    with_masks = join_by_stamp(frames, iter_masks(args.bag) if head else ())
    for i, (_, frame, mask) in enumerate(tqdm(with_masks, desc="eval", unit="frame")):
        if args.frames is not None and i >= args.frames:
            break
        result = pipeline.process(frame.rgb)
        timings.append(result.timings_ms)
        if i % 5 == 0:
            warped = cv2.warpPerspective(result.frame, homography, size)
            kp_b = detect(warped, engine.infer(warped).patch_tokens, pipeline.keypoint_config)
            kp_a = result.keypoints
            repeats.append(repeatability(np.c_[kp_a.u, kp_a.v], np.c_[kp_b.u, kp_b.v], homography, size))
            if skeptic is not None:
                skeptic.add(result.frame, homography)
        if head is not None and mask is not None:
            gt = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
            logits = head.logits(result.features.patch_tokens)
            bilinear = field_mask(logits, result.frame, "bilinear")
            field_rows.append({"iou": iou(result.field_mask, gt), "boundary_f": boundary_f(result.field_mask, gt).f,
                               "boundary_f_bilinear": boundary_f(bilinear, gt).f,
                               "object_f1": object_f1(result.field_mask, gt).f})
            if len(overlays) < 3 and i % 20 == 0:
                overlays.append(_overlay(result, gt))
        if db is not None and frame.stamp_ns not in map_stamps and frame.stamp_ns in poses:
            queries.append(poses[frame.stamp_ns][:2])
            retrieved.append(result.place.indices)

    report: dict = {"trained": engine.trained, "fingerprint": engine.fingerprint, "size": list(size),
                    "frames": len(timings),
                    "latency_ms": {k: float(np.median([t[k] for t in timings])) for k in timings[0]} if timings else {}}
    report["keypoints"] = {"repeatability": float(np.nanmean(repeats)) if repeats else None,
                           "homography": f"rotate {WARP_DEG} deg, shift {WARP_SHIFT} px", "pairs": len(repeats)}
    if field_rows:
        report["field"] = {k: float(np.mean([r[k] for r in field_rows])) for k in field_rows[0]}
        report["field"]["frames"] = len(field_rows)
    if db is not None:
        if queries:
            recall = recall_at_k(np.array(queries), db.poses[:, :2], np.array([r[:5] for r in retrieved]),
                                 ks=(1, 5), threshold_m=args.threshold_m)
            report["place"] = {"recall@1": recall[1], "recall@5": recall[5], "queries": len(queries),
                               "map_places": len(db), "threshold_m": args.threshold_m}
        else:
            report["place"] = {"queries": 0, "note": "every evaluated frame is in the map: nothing to query"}
    if skeptic is not None:
        report["baseline"] = skeptic.summary()
    for j, picture in enumerate(overlays):
        cv2.imwrite(str(out / f"field_{j}.png"), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    (out / "report.json").write_text(json.dumps(report, indent=1))
    (out / "report.md").write_text(_markdown(report, len(overlays), UNTRAINED_WARNING))
    print((out / "report.md").read_text())
    return 0


def _overlay(result, gt):
    """Frame with ground-truth border (green), predicted border (red) and keypoints (yellow)."""
    import cv2

    picture = result.frame.copy()
    for mask, colour in ((gt, (0, 255, 0)), (result.field_mask, (255, 0, 0))):
        contours, _ = cv2.findContours((mask > 0).astype("uint8"), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(picture, contours, -1, colour, 1)
    for u, v in zip(result.keypoints.u, result.keypoints.v):
        cv2.circle(picture, (int(u), int(v)), 2, (255, 255, 0), -1)
    return picture


def _markdown(report: dict, overlays: int, warning: str) -> str:
    lines = ["# spatialq eval", ""]
    if not report["trained"]:
        lines += [f"> **{warning}**", ""]
    lines += [f"- {report['frames']} frames at {report['size'][0]}x{report['size'][1]}, median latency per stage (ms): "
              + ", ".join(f"{k} {v:.1f}" for k, v in report["latency_ms"].items()), ""]
    kp = report["keypoints"]
    if kp["repeatability"] is not None:
        lines += ["## Keypoints", "", f"Repeatability under a known homography ({kp['homography']}): "
                  f"**{kp['repeatability']:.3f}** over {kp['pairs']} frame pairs", ""]
    if "field" in report:
        f = report["field"]
        lines += ["## Field boundaries", "", "| IoU | boundary F (guided) | boundary F (bilinear) | object F1 |",
                  "| --- | --- | --- | --- |",
                  f"| {f['iou']:.3f} | {f['boundary_f']:.3f} | {f['boundary_f_bilinear']:.3f} | {f['object_f1']:.3f} |",
                  ""]
        lines += [f"![field {j}](field_{j}.png)" for j in range(overlays)] + [""]
    else:
        lines += ["Field head: off (no --field-head).", ""]
    if "place" in report and report["place"].get("queries"):
        p = report["place"]
        lines += ["## Place recognition", "", f"Recall@1 **{p['recall@1']:.3f}**, Recall@5 {p['recall@5']:.3f} "
                  f"({p['queries']} queries not in the map, {p['map_places']} map places, {p['threshold_m']} m)", ""]
    elif "place" not in report:
        lines += ["Place recognition: off (no --map).", ""]
    if "baseline" in report:
        from ..bench.skeptic import summary_markdown

        lines += summary_markdown(report["baseline"])
    return "\n".join(lines)
