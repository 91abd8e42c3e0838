#!/usr/bin/env python3
"""Benchmark: `spatialq replay` of a long bag keeps a flat RSS, through the replay and the report.

    PYTHONPATH=$PWD .venv/bin/python scripts/long_bag_rss.py [--frames 10000] [--size 448] [--replay-size 448x448]

Writes a long flight (JPEG frames at --size, /odom, ground-truth masks, camera info) that repeats
--distinct rendered frames with new stamps, builds a map and a field head on its first frames, then replays
it with every head on and --report in a child process whose RSS (VmRSS) is sampled every --every seconds.
Prints the RSS when 10, 50 and 100 % of the frames were published, the peak during the report, and the
growth per 1000 frames, and writes them to --out/rss.json. Flat: the growth stays near zero whatever
--frames is. --replay-size sets the backbone's size only (what costs time on a CPU), not the frames'.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path


def write_long_bag(bag: Path, frames: int, size: int, distinct: int) -> None:
    from spatialq_ros.sim.bag import BagWriter
    from spatialq_ros.sim.render import render_flight
    from spatialq_ros.sim.simulate import FRAME_PERIOD_NS, START_NS, SimConfig, write_frame

    config = SimConfig(frames=frames, size=(size, size), compressed=True)
    poses, rendered = render_flight(distinct, config.size, seed=4)
    shots = list(zip(poses, rendered))
    with BagWriter(bag, "mcap") as writer:
        for i in range(frames):
            pose, (rgb, mask) = shots[i % distinct]
            write_frame(writer, START_NS + i * FRAME_PERIOD_NS, rgb, mask, pose, (0.0, 0.0, 0.0), config)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=10000)
    parser.add_argument("--size", type=int, default=448, help="frame side in px")
    parser.add_argument("--replay-size", default="448x448", help="backbone size WxH for the replay")
    parser.add_argument("--distinct", type=int, default=20, help="rendered frames the flight repeats")
    parser.add_argument("--every", type=float, default=1.0, help="RSS sampling period, seconds")
    parser.add_argument("--out", default="long_bag_rss", help="work folder (bag, heads, outputs, rss.json)")
    args = parser.parse_args()

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    bag = out / f"flight_{args.frames}"
    if not bag.exists():
        write_long_bag(bag, args.frames, args.size, args.distinct)
    spatialq = [sys.executable, "-m", "spatialq_ros.cli"]
    for command in (["build-map", "--bag", str(bag), "--out", str(out / "map.npz"), "--frames", str(args.distinct),
                     "--clusters", "4", "--pca-dims", "0"],
                    ["train-field-head", "--bag", str(bag), "--out", str(out / "head.npz"), "--frames", "8"]):
        subprocess.run(spatialq + command + ["--size", args.replay_size], check=True, capture_output=True)

    replayed = out / "replay.bag"
    subprocess.run(["rm", "-rf", str(replayed), str(out / "report")], check=True)
    child = subprocess.Popen(spatialq + ["replay", str(bag), "--size", args.replay_size, "--map", str(out / "map.npz"),
                                         "--field-head", str(out / "head.npz"), "--out", str(replayed),
                                         "--report", str(out / "report")],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    published = [0]  # frames published so far, from the progress bar on stderr
    report_from = [None]

    def follow(stream, on_line):
        buffer = ""
        while chunk := stream.read(1):
            buffer += chunk
            if chunk in "\r\n":
                on_line(buffer)
                buffer = ""

    def progress(line: str) -> None:
        if m := re.search(r"replay \(\w+\):\s+\d+%\|[^|]*\|\s*(\d+)/", line):
            published[0] = int(m.group(1))

    def stdout(line: str) -> None:
        if line.startswith("replayed "):
            report_from[0] = time.monotonic()

    threads = [threading.Thread(target=follow, args=(child.stderr, progress), daemon=True),
               threading.Thread(target=follow, args=(child.stdout, stdout), daemon=True)]
    for t in threads:
        t.start()
    from spatialq_ros.bench.rss import process_mb

    samples = []  # (s since start, frames published, RSS MB, in the report)
    start = time.monotonic()
    while child.poll() is None:
        try:
            samples.append((time.monotonic() - start, published[0], process_mb(child.pid), report_from[0] is not None))
        except (FileNotFoundError, ValueError):  # it exited meanwhile
            break
        time.sleep(args.every)
    if child.wait() != 0:
        print(f"replay failed (exit {child.returncode})", file=sys.stderr)
        return 1

    replay = [s for s in samples if not s[3] and s[1] > 0]

    def at(fraction: float) -> float:
        return next(s[2] for s in replay if s[1] >= fraction * args.frames)

    result = {"frames": args.frames, "frame_size": args.size, "backbone": args.replay_size,
              "rss_mb_at_10pct": at(0.1), "rss_mb_at_50pct": at(0.5), "rss_mb_at_100pct": replay[-1][2],
              "rss_mb_peak_report": max((s[2] for s in samples if s[3]), default=None),
              "replay_s": round(replay[-1][0], 1), "samples": len(samples)}
    result["growth_mb_per_1000_frames_10_to_100pct"] = round(
        (result["rss_mb_at_100pct"] - result["rss_mb_at_10pct"]) / (0.9 * args.frames / 1000), 2)
    (out / "rss.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
