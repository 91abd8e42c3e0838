"""`spatialq sim`: a procedural farmland flight written as a rosbag2 (the demo's and the tests' data)."""

from __future__ import annotations

import argparse
import re


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output bag folder (must not exist, unless --force)")
    parser.add_argument("--frames", type=int, default=300, help="number of frames at 10 Hz (default 300)")
    parser.add_argument("--size", default="448x448", help="frame size WxH (default 448x448)")
    parser.add_argument("--seed", type=int, default=0, help="world and flight seed (default 0)")
    parser.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap", help="rosbag2 storage (default mcap)")
    parser.add_argument("--compressed", action="store_true",
                        help="jpeg sensor_msgs/CompressedImage on /camera/image_raw/compressed instead of raw rgb8")
    parser.add_argument("--hover", type=int, default=0,
                        help="frames of near-still hovering, from a third of the way in (default 0)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out")


def parse_frame_size(text: str) -> tuple[int, int]:
    from ..errors import SpatialqError

    match = re.fullmatch(r"\s*(\d+)\s*[xX]\s*(\d+)\s*", text)
    if not match:
        raise SpatialqError(f"--size {text!r}: expected WxH, e.g. 448x448")
    return int(match.group(1)), int(match.group(2))


def run(args: argparse.Namespace) -> int:
    import time

    from ..sim.simulate import SimConfig, simulate

    config = SimConfig(args.frames, parse_frame_size(args.size), args.seed, args.storage, args.compressed,
                       args.hover)
    start = time.perf_counter()
    out = simulate(args.out, config, force=args.force)
    print(f"wrote {out}: {config.frames} frames {config.size[0]}x{config.size[1]} "
          f"({config.storage}{', jpeg' if config.compressed else ''}), seed {config.seed}, "
          f"{time.perf_counter() - start:.1f} s")
    return 0
