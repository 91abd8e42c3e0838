"""The `spatialq` command.

Each subcommand lives in `spatialq_ros.commands.<name>` with `register(subparsers)` and
`run(args) -> int`. Modules are imported only when their command runs, so `spatialq models`
never pays for torch.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import SpatialqError

COMMANDS = {
    "features": "Backbone features of one image (npz + optional PCA picture).",
    "models": "List, fetch and verify DINOv2 checkpoints.",
    "sim": "Simulate a farmland flight into a rosbag2.",
    "demo": "End-to-end demo on one backbone (default DINOv2 ViT-S/14; --backbone dinov3_vits16 for DINOv3).",
    "build-map": "Build a place-recognition map (VLAD database) from a bag.",
    "train-field-head": "Train the field-boundary head from images and masks.",
    "eval": "Score keypoints, place recognition and field boundaries on a simulated flight.",
    "calibrate": "GPLQ (or min-max) calibration of the backbone to W4A8.",
    "bench": "W4A8 engines vs FP32 and ORT INT8 baselines: latency, memory, size, fidelity.",
    "bringup": "Run a profile's ROS 2 nodes in one process (what ros2 launch would start).",
    "replay": "Replay a bag through a profile's nodes over DDS; record the outputs and write a report.",
    "soak": "Soak the deploy node: a long run, lifecycle cycles, a vanishing camera; RSS and /diagnostics checked.",
}


def _module(name: str):
    return importlib.import_module(f"spatialq_ros.commands.{name.replace('-', '_')}")


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spatialq", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = next((a for a in (argv or []) if not a.startswith("-")), None)
    for name, help_text in COMMANDS.items():
        if wanted == name:
            _module(name).register(sub.add_parser(name, help=help_text, description=help_text))
        else:
            sub.add_parser(name, help=help_text, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    try:
        return int(_module(args.command).run(args) or 0)
    except SpatialqError as exc:
        print(f"spatialq {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"spatialq {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
