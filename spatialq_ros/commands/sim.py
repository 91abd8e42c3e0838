"""`spatialq sim`: a procedural farmland flight written as a rosbag2 (the demo's and the tests' data)."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output bag folder")
    parser.add_argument("--frames", type=int, default=300, help="number of frames (10 Hz), default 300")
    parser.add_argument("--size", default="448x448", help="frame size WxH, default 448x448")
    parser.add_argument("--seed", type=int, default=0, help="world and flight seed, default 0")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    parser.add_argument("--compressed", action="store_true", help="jpeg CompressedImage instead of raw rgb8")
    parser.add_argument("--hover", type=int, default=0, help="frames of hovering a third of the way in")
    parser.add_argument("--force", action="store_true", help="replace an existing output")


def parse_frame_size(text: str) -> tuple[int, int]:
    import re

    from ..errors import SpatialqError

    match = re.fullmatch(r"(\d+)[xX](\d+)", text.strip())
    if not match or int(match.group(1)) < 14 or int(match.group(2)) < 14:
        raise SpatialqError(f"--size {text!r}: expected WxH with both sides >= 14, e.g. 448x448")
    return int(match.group(1)), int(match.group(2))


def run(args: argparse.Namespace) -> int:
    from ..errors import SpatialqError
    from ..sim.simulate import SimConfig, simulate

    if args.frames < 1:
        raise SpatialqError(f"--frames {args.frames}: need at least 1 frame")
    if not 0 <= args.hover < args.frames:
        raise SpatialqError(f"--hover {args.hover}: must be between 0 and frames - 1")
    config = SimConfig(args.frames, parse_frame_size(args.size), args.seed, args.storage, args.compressed,
                       args.hover)
    out = simulate(args.out, config, force=args.force)
    print(f"wrote {out}: {args.frames} frames {config.size[0]}x{config.size[1]} ({args.storage}"
          f"{', jpeg' if args.compressed else ''}), seed {args.seed}")
    return 0
