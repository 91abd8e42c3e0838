"""`spatialq replay`: a bag through a profile's nodes over DDS; outputs recorded into a bag, plus a report."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bag", help="rosbag2 with camera frames (raw or compressed) and optionally /odom")
    parser.add_argument("--profile", choices=("drone", "tractor"), default="drone", help="node graph and parameters")
    parser.add_argument("--model", help="checkpoint or W4A8 artifact (default: the profile's)")
    parser.add_argument("--map", help="place map (omit: place recognition off)")
    parser.add_argument("--field-head", help="field head (omit: field boundaries off)")
    parser.add_argument("--size", help="backbone input WxH (default: the profile's; an artifact fixes it)")
    parser.add_argument("--topic", help="camera topic in the bag (default: the camera topic)")
    parser.add_argument("--frames", type=int, help="replay only the first N frames")
    parser.add_argument("--out", required=True, help="output rosbag2 (mcap) with every output topic")
    parser.add_argument("--report", help="report folder (markdown, JSON, pictures)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--lockstep", action="store_true", help="next frame once the last is done (default)")
    mode.add_argument("--rate", type=float, help="publish on the bag's clock at this speed (1 = real time)")
    parser.add_argument("--set", action="append", default=[], metavar="[NODE.]NAME=VALUE",
                        help="override a node parameter (YAML value)")
    parser.add_argument("--threshold-m", type=float, default=25.0, help="a place match this close is right")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import SpatialqError
    from ..replay_report import write_report
    from ..ros.graph import profile
    from ..ros.replay import replay
    from ..runtime.factory import artifact_meta, is_artifact
    from .bringup import parse_overrides

    if args.frames is not None and args.frames < 1:
        raise SpatialqError("--frames must be >= 1")
    if not Path(args.bag).exists():
        raise SpatialqError(f"{args.bag}: no such bag")
    if args.report:
        try:
            Path(args.report).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SpatialqError(f"{args.report}: cannot make the report folder ({exc.strerror})") from None
    overrides = parse_overrides(args.set)
    node = overrides.setdefault("perception_node", {})
    node["map"] = args.map or ""
    node["field_head"] = args.field_head or ""
    if args.model:
        overrides.setdefault("*", {})["model"] = args.model
    if args.size:
        overrides.setdefault("*", {})["size"] = args.size
    elif is_artifact(args.model):  # an artifact fixes the size: follow it rather than the profile's
        size = artifact_meta(args.model)["size"]
        overrides.setdefault("*", {})["size"] = f"{size[0]}x{size[1]}"
    result = replay(args.bag, args.profile, args.out, overrides=overrides, rate=args.rate, topic=args.topic,
                    frames=args.frames)
    print(f"replayed {result.published} frames ({result.mode}): processed {result.processed}, dropped "
          f"{result.dropped}, bad {sum(result.bad.values())}; outputs in {args.out}"
          + ("" if result.trained else "  [UNTRAINED]"))
    if args.report:
        write_report(result, args.bag, args.out, args.report, args.map, profile(args.profile).namespace,
                     args.threshold_m)
        print(f"report: {Path(args.report) / 'report.md'}")
    return 0
