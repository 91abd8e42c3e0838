"""The replay report: counts, per-stage and per-output latency, and pictures of what the nodes published
against the simulator's ground truth. Reads the recorded bag back with `rosbags` (no ROS needed), so the
report also proves the recording is usable.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
from rosbags.rosbag2 import Reader
from rosbags.typesys import Stores, get_typestore

from .atomic import write_atomic
from .banner import UNTRAINED_WARNING
from .errors import SpatialqError
from .point_cloud import cloud_rows
from .viz.pictures import stamp_untrained, write_png

HEAD_FLAGS = {"place": "--map", "field": "--field-head", "keypoints": "keypoints: false"}


def recorded(out_bag: str | Path, topics: set[str] | None = None) -> Iterator[tuple[str, int, object]]:
    """(topic, input stamp ns, message) of every recorded output (on `topics`), streamed in recording order;
    MarkerArrays by their markers' stamp."""
    path = Path(out_bag)
    try:
        typestore = get_typestore(Stores.ROS2_KILTED)  # the distribution whose rclpy made the messages
        with Reader(path) as reader:  # always rosbag2 (whatever the folder is called, e.g. out.bag)
            connections = [c for c in reader.connections if topics is None or c.topic in topics]
            unstamped: dict[str, int] = defaultdict(int)
            for connection, _, raw in reader.messages(connections=connections) if connections else ():
                msg = typestore.deserialize_cdr(raw, connection.msgtype)
                header = getattr(msg, "header", None)
                if connection.msgtype == "visualization_msgs/msg/MarkerArray":
                    header = msg.markers[0].header if msg.markers else None
                if header is None:
                    unstamped[connection.topic] += 1
                    stamp = unstamped[connection.topic] - 1
                else:
                    stamp = header.stamp.sec * 1_000_000_000 + header.stamp.nanosec
                yield connection.topic, stamp, msg
    except SpatialqError:
        raise
    except Exception as exc:  # rosbags raises several types for unreadable bags
        raise SpatialqError(f"{path}: cannot read the recorded bag ({exc})") from None


def read_outputs(out_bag: str | Path) -> dict[str, dict[int, object]]:
    """Recorded topic -> {input stamp ns: message}: the whole recording in memory, for short replays."""
    outputs: dict[str, dict[int, object]] = defaultdict(dict)
    for topic, stamp, msg in recorded(out_bag):
        outputs[topic][stamp] = msg
    return dict(outputs)


def write_report(result, in_bag: str | Path, out_bag: str | Path, report_dir: str | Path, map_file: str | None = None,
                 namespace: str = "drone", threshold_m: float = 25.0) -> dict:
    """Report folder: report.md, report.json, overlay_*.png, matches.png, latency.png. The recording and the
    input bag are streamed, a few times over, so a long flight's outputs never sit in memory; only the three
    pictured frames are kept."""
    from .bench.cpu_class import read_cpu_class
    from .sim.bag import MASK_TOPIC, ODOM_TOPIC, bag_topics, iter_masks, join_by_stamp, read_frames, read_masks, \
        read_poses

    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    ns = "/" + namespace
    kp_topic, mask_topic, match_topic, boundary_topic = (f"{ns}/{t}" for t in (
        "keypoints", "field/mask", "place/match", "field/boundary"))
    report: dict = {
        "bag": str(in_bag), "recorded_bag": str(out_bag), "mode": result.mode, "trained": result.trained,
        "size": list(result.size), "camera_topic": result.camera_topic, "cpu": read_cpu_class().as_dict(),
        "frames": {"published": result.published, "processed": result.processed, "dropped": result.dropped,
                   "bad": sum(result.bad.values()), "bad_by_reason": result.bad, "lost_in_transport": result.lost},
        "matched_by": "log time" if result.log_time_frames else "header stamp",
        "log_time_frames": result.log_time_frames,
        "wall_s": round(result.wall_s, 2), "fps": round(result.processed / result.wall_s, 2) if result.wall_s else 0.0,
        "offered_fps": round(result.offered_fps, 2),
        "sustained_fps": None if result.sustained_fps is None else round(result.sustained_fps, 2),
        "heads": {h: "on" if on else f"off (no {HEAD_FLAGS[h]} given)" for h, on in result.heads.items()},
        "recorded_messages": result.recorded,
        "latency_ms": {t: _percentiles(v) for t, v in sorted(result.latency_ms.items()) if v},
        "stage_ms": {k.removeprefix("stage.").removesuffix("_p50_ms"): {
            "p50": float(v), "p95": float(result.diagnostics.get(k.replace("_p50_", "_p95_"), "nan"))}
            for k, v in result.diagnostics.items() if k.startswith("stage.") and k.endswith("_p50_ms")},
        "frame_cache_reused": int(result.diagnostics.get("frame_cache_reused", 0)),
    }
    backbone = report["stage_ms"].get("backbone", {}).get("p50")
    if backbone and report["sustained_fps"]:  # 1.0: the node does nothing but run the backbone
        report["fps_vs_backbone_limit"] = round(report["sustained_fps"] * backbone / 1000.0, 3)
        report["offered_vs_backbone_limit"] = round(report["offered_fps"] * backbone / 1000.0, 3)
    in_topics = bag_topics(in_bag)

    widths, matches, done = [], {}, {}  # done: stamps of frames with keypoints or a mask, in order
    for topic, stamp, msg in recorded(out_bag, {kp_topic, mask_topic, match_topic}):
        if topic == match_topic:
            matches[stamp] = np.array([msg.pose.pose.position.x, msg.pose.pose.position.y])
            continue
        if topic == kp_topic:
            widths.append(msg.width)
        done.setdefault(stamp)
    if widths:
        report["keypoints"] = {"mean_per_frame": float(np.mean(widths))}
    ordered = list(done)
    picks = {ordered[i] for i in {0, len(ordered) // 2, len(ordered) - 1}} if ordered else set()

    masks, scores = {}, []  # the pictured frames' predicted masks; (IoU, boundary F) of every frame with truth
    predicted = ((stamp, _mask_pixels(msg)) for _, stamp, msg in recorded(out_bag, {mask_topic}))
    truth_stream = iter_masks(in_bag) if MASK_TOPIC in in_topics else ()
    for stamp, pred, truth in join_by_stamp(predicted, truth_stream):
        if stamp in picks:
            masks[stamp] = pred
        if truth is not None:
            from .metrics.segmentation import boundary_f, iou

            scores.append((iou(pred, truth), boundary_f(pred, truth).f))
    if scores:
        report["field"] = {"iou": float(np.mean([s[0] for s in scores])),
                           "boundary_f": float(np.mean([s[1] for s in scores])), "frames": len(scores)}
    if matches:
        poses = read_poses(in_bag) if ODOM_TOPIC in in_topics else {}
        report["place"] = _place_accuracy(matches, poses, map_file, threshold_m, out)
    pictured = {kp_topic: {}, boundary_topic: {}}
    for topic, stamp, msg in recorded(out_bag, set(pictured)) if picks else ():
        if stamp in picks:
            pictured[topic][stamp] = msg
    truth = read_masks(in_bag, keep=picks) if picks and MASK_TOPIC in in_topics else {}
    frames = list(read_frames(in_bag, result.camera_topic, skip_bad=True, only=picks))
    overlays = _overlays(frames, pictured[kp_topic], masks, truth, pictured[boundary_topic], result.trained, out)
    report["pictures"] = overlays + (["matches.png"] if matches else [])
    if report["latency_ms"] or report["stage_ms"]:
        _latency_plot(report, out / "latency.png")
        report["pictures"].append("latency.png")
    write_atomic(out / "report.json", json.dumps(report, indent=1).encode())
    write_atomic(out / "report.md", _markdown(report).encode())
    return report


def _mask_pixels(msg) -> np.ndarray:
    return np.asarray(msg.data, np.uint8).reshape(msg.height, msg.width)


def _percentiles(values: list[float]) -> dict:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)), "n": len(values)}


def _place_accuracy(matches: dict, poses: dict, map_file: str | None, threshold_m: float, out: Path) -> dict:
    """matches: stamp -> matched place (x, y). A match is right when the matched map place lies within
    threshold_m of where the camera truly was."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(poses[stamp][:2], xy) for stamp, xy in sorted(matches.items()) if stamp in poses]
    fig, ax = plt.subplots(figsize=(6, 6))
    if poses:
        track = np.array([poses[s][:2] for s in sorted(poses)])
        ax.plot(track[:, 0], track[:, 1], color="0.75", lw=1, label="flight (ground truth)")
    if map_file:
        from .perception.place.database import PlaceDatabase

        places = PlaceDatabase.load(map_file).poses
        ax.scatter(places[:, 0], places[:, 1], s=8, color="tab:blue", label="map places")
    right = [np.linalg.norm(t - m) <= threshold_m for t, m in rows]
    for (t, m), ok in zip(rows, right):
        if not ok:
            ax.plot([t[0], m[0]], [t[1], m[1]], color="tab:red", lw=0.8, alpha=0.7)
    good = np.array([t for (t, _), ok in zip(rows, right) if ok]).reshape(-1, 2)
    ax.scatter(good[:, 0], good[:, 1], s=14, color="tab:green", label=f"frame matched within {threshold_m:g} m")
    ax.plot([], [], color="tab:red", label="wrong match: true position -> matched place")
    ax.set_aspect("equal")
    ax.set_xlabel("x (m)")
    ax.set_ylabel("y (m)")
    ax.legend(loc="best", fontsize=8)
    ax.set_title(f"place matches: {int(sum(right))} of {len(rows)} within {threshold_m:g} m")
    fig.tight_layout()
    fig.savefig(out / "matches.png", dpi=100)
    plt.close(fig)
    return {"matched_frames": len(rows), "correct": int(sum(right)),
            "accuracy": float(np.mean(right)) if rows else None, "threshold_m": threshold_m}


def _overlays(frames: list, keypoints: dict, masks: dict, truth: dict, boundaries: dict, trained: bool,
              out: Path) -> list:
    """The pictured frames (three spread over the replay): keypoints (yellow), true border (green), predicted
    (red), published boundary polygon (cyan)."""
    names = []
    for j, frame in enumerate(frames):
        picture = frame.rgb.copy()
        if frame.stamp_ns in truth:
            _contours(picture, truth[frame.stamp_ns], (0, 255, 0))
        if frame.stamp_ns in masks:
            _contours(picture, masks[frame.stamp_ns], (255, 0, 0))
        if frame.stamp_ns in boundaries:
            ring = np.array([[p.x, p.y] for p in boundaries[frame.stamp_ns].polygon.points], np.int32)
            cv2.polylines(picture, [ring], True, (0, 255, 255), 1)
        if frame.stamp_ns in keypoints:
            rows = cloud_rows(keypoints[frame.stamp_ns])
            for u, v in zip(rows["u"], rows["v"]):
                cv2.circle(picture, (int(u), int(v)), 2, (255, 255, 0), -1)
        if not trained:
            picture = stamp_untrained(picture)
        names.append(f"overlay_{j}.png")
        write_png(out / names[-1], picture)
    return names


def _contours(picture: np.ndarray, mask: np.ndarray, colour) -> None:
    if mask.shape[:2] != picture.shape[:2]:
        mask = cv2.resize(mask, (picture.shape[1], picture.shape[0]), interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours((mask > 0).astype(np.uint8), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(picture, contours, -1, colour, 1)


def _latency_plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(f"stage: {k}", v["p50"], v["p95"]) for k, v in report["stage_ms"].items()]
    rows += [(f"publish -> {t}", v["p50"], v["p95"]) for t, v in report["latency_ms"].items()]
    fig, ax = plt.subplots(figsize=(7, 0.4 * len(rows) + 1.2))
    y = np.arange(len(rows))
    ax.barh(y, [r[2] for r in rows], color="tab:orange", alpha=0.5, label="p95")
    ax.barh(y, [r[1] for r in rows], color="tab:blue", label="p50")
    ax.set_yticks(y, [r[0] for r in rows], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    ax.legend()
    ax.set_title(f"replay latency ({report['mode']}, {report['size'][0]}x{report['size'][1]})"
                 + ("" if report["trained"] else "  UNTRAINED"))
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _throughput(report: dict) -> list[str]:
    """The sustained rate against the backbone's limit, and whether the camera, not the node, set it."""
    if "fps_vs_backbone_limit" not in report:
        return []
    line = (f"- sustained {report['sustained_fps']} frames/s (first output -> last) = "
            f"**{report['fps_vs_backbone_limit']} x the backbone's limit** (1 / backbone p50)")
    if report["mode"] == "lockstep":
        line += "; lockstep sends a frame only once the last is done, so frames never overlap (`--rate` does)"
    elif report["offered_vs_backbone_limit"] < 1.0:
        line += (f"; the frames came at only {report['offered_vs_backbone_limit']} x that limit, so this measures "
                 "the camera, not the node (replay faster with `--rate`)")
    if report["frame_cache_reused"]:
        line += (f"; {report['frame_cache_reused']} frames reused the frame cache and skipped the backbone, so "
                 "this is above what the backbone sustains (`--set frame_cache_threshold=0` measures that)")
    return [line]


def _matched_by(report: dict) -> list[str]:
    if report["matched_by"] != "log time":
        return []
    return [f"- {report['log_time_frames']} frames had a zero header stamp: they were sent stamped with the bag's "
            "log (receive) time, and outputs, poses and masks were matched to them by it"]


def _markdown(report: dict) -> str:
    f = report["frames"]
    lines = ["# spatialq replay", ""]
    if not report["trained"]:
        lines += [f"> **{UNTRAINED_WARNING}**", ""]
    lines += [f"- bag `{report['bag']}` ({report['camera_topic']}), {report['mode']}, backbone "
              f"{report['size'][0]}x{report['size'][1]}; outputs recorded in `{report['recorded_bag']}`",
              f"- CPU class: {report['cpu']['description']}: the speed figures below belong to it",
              f"- frames: published {f['published']} = processed {f['processed']} + dropped {f['dropped']} + "
              f"bad {f['bad']}" + (f" ({', '.join(f'{k} {v}' for k, v in f['bad_by_reason'].items())})"
                                   if f["bad_by_reason"] else ""),
              f"- {report['fps']} frames/s over {report['wall_s']} s (first frame published -> last frame done); "
              f"offered {report['offered_fps']} frames/s; frame cache reused {report['frame_cache_reused']}",
              *_throughput(report), *_matched_by(report),
              "- heads: " + ", ".join(f"{h} {s}" for h, s in report["heads"].items()), ""]
    if report["stage_ms"] or report["latency_ms"]:
        lines += ["## Latency (ms)", "", "| what | p50 | p95 |", "| --- | --- | --- |"]
        lines += [f"| stage {k} (node, last 100 frames) | {v['p50']:.1f} | {v['p95']:.1f} |"
                  for k, v in report["stage_ms"].items()]
        lines += [f"| frame published -> `{t}` received (DDS, all frames) | {v['p50']:.1f} | {v['p95']:.1f} |"
                  for t, v in report["latency_ms"].items()]
        lines += ["", "![latency](latency.png)", ""]
    if "keypoints" in report:
        lines += [f"Keypoints: {report['keypoints']['mean_per_frame']:.0f} per frame on average.", ""]
    if "field" in report:
        fd = report["field"]
        lines += [f"Field boundaries vs ground truth ({fd['frames']} frames): IoU {fd['iou']:.3f}, "
                  f"boundary F {fd['boundary_f']:.3f}.", ""]
    if "place" in report:
        p = report["place"]
        accuracy = "n/a" if p["accuracy"] is None else f"{p['accuracy']:.3f}"
        lines += [f"Place matches within {p['threshold_m']:g} m of the true position: {p['correct']} of "
                  f"{p['matched_frames']} ({accuracy}). Frames of the map's own pass match themselves.", "",
                  "![matches](matches.png)", ""]
    overlays = [p for p in report["pictures"] if p.startswith("overlay_")]
    if overlays:
        lines += ["## Frames", "", "Keypoints yellow, true field border green, predicted border red, published "
                  "boundary polygon cyan.", ""]
        lines += [f"![{p}]({p})" for p in overlays] + [""]
    return "\n".join(lines)
