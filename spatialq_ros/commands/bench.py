"""`spatialq bench`: W4A8 engines vs FP32 and ORT's INT8 baselines, interleaved in one process."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    from ..runtime.frame_cache import DEFAULT_THRESHOLD

    parser.add_argument("--model", help="FP32 checkpoint or a model name of `spatialq models list` (default: the "
                        "embedded default)")
    parser.add_argument("--backbones", metavar="NAMES",
                        help="comma-separated model names (e.g. dinov2_vits14,dinov3_vits16) timed in one run, each at "
                             "the multiple of its patch nearest to every --sizes entry; hover and node: the first only")
    parser.add_argument("--artifact", help="W4A8 artifact to use for its size (others are calibrated here)")
    parser.add_argument("--sizes", default="224x224,448x448", help="comma-separated WxH list")
    parser.add_argument("--threads", type=int, default=0, help="ONNX Runtime / torch threads (0: all cores)")
    parser.add_argument("--frames", type=int, default=20, help="timed frames per engine and size")
    parser.add_argument("--calibration-frames", type=int, default=16, help="GPLQ frames for sizes without artifact")
    parser.add_argument("--json", help="write the rows (each with its CPU class) here as JSON; OUT/bench.json has the CPU's features and peaks too")
    parser.add_argument("--no-node", dest="node", action="store_false",
                        help="skip the perception_node process measurement (it needs rclpy)")
    parser.add_argument("--out", default="bench_out", help="folder for the markdown table and the plot")
    parser.add_argument("--frame-cache", type=float, default=DEFAULT_THRESHOLD, metavar="THRESHOLD",
                        help="frame cache threshold for the hover measurement, in grey levels (0: off; "
                             f"default {DEFAULT_THRESHOLD:g})")
    parser.add_argument("--hover-frames", type=int, default=30,
                        help="hover measurement: a flight of twice this many frames, half hovering (0: skip)")
    parser.add_argument("--zoo", metavar="MODELS",
                        help="instead of timing: calibrate stress models (all, zoo, held-out or names) at the first "
                             "size and tabulate GPLQ, min-max, ORT dynamic and ORT static QDQ, with each model's "
                             "activation ceiling at 8 and 10 bits: OUT/zoo.md")
    parser.add_argument("--zoo-frames", type=int, default=32, help="zoo: calibration frames per model")
    parser.add_argument("--zoo-holdout", type=int, default=8, help="zoo: held-out frames the table scores")
    parser.add_argument("--zoo-depth", type=int, help="zoo: shorten every model to this many blocks (quick checks)")


def run(args: argparse.Namespace) -> int:
    import json
    import os
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    # torch's OpenMP pool would spin between its turns and slow the ONNX engines that run next
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import numpy as np
    import torch

    from ..atomic import write_atomic
    from ..backbone.checkpoint import backbone_for, named_backbone
    from ..backbone.preprocess import check_size, parse_size, preprocess
    from ..banner import warn_untrained
    from ..bench.cpu_class import read_cpu_class
    from ..bench.gemm_peak import GemmPeak
    from ..bench.harness import engines_for, measure, with_peak_fractions
    from ..bench.hover import hover_section, run_hover
    from ..cli import main
    from ..errors import SpatialqError
    from ..runtime.factory import artifact_meta
    from ..runtime.frame_cache import check_threshold
    from ..sim.bag import read_frames
    from ..sim.simulate import SimConfig, simulate

    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if not sizes or args.frames < 2:
        raise SpatialqError("give at least one size and --frames >= 2")
    if args.zoo is not None:
        return _run_zoo(args, sizes[0])
    threshold = check_threshold(args.frame_cache)
    if args.hover_frames < 0:
        raise SpatialqError(f"--hover-frames {args.hover_frames}: must be 0 or more")
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.backbones and (args.model or args.artifact):
        raise SpatialqError("--backbones names the models itself: give it without --model and --artifact")
    if args.backbones:  # (what calibrate's --model gets, model, info)
        backbones = [(n, *named_backbone(n)) for n in (n.strip() for n in args.backbones.split(",")) if n]
        if not backbones:
            raise SpatialqError(f"--backbones {args.backbones!r}: give at least one model name")
    else:
        backbones = [(args.model, *backbone_for(args.model))]
    if not args.backbones:
        for size in sizes:
            check_size(size, backbones[0][1].patch_size, backbones[0][2].arch)
    if not all(info.trained for _, _, info in backbones):
        warn_untrained()
    given = None
    model, info = backbones[0][1:]
    if args.artifact:
        meta = artifact_meta(args.artifact)
        if meta["patch_size"] != model.patch_size:
            raise SpatialqError(f"artifact {args.artifact} has patch {meta['patch_size']}, the model "
                                f"{info.arch} {model.patch_size}: they are not the same backbone")
        given = (tuple(meta["size"]), Path(args.artifact))
    peaks = {kind: GemmPeak(kind, args.threads) for kind in ("fp32", "int8")}
    rows, hover, node, snapped = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="spatialq-bench-") as tmp:
        work = Path(tmp)
        for asked in sizes:
            for index, (name, model, info) in enumerate(backbones):
                size = _nearest_multiple(asked, model.patch_size)
                label = name if args.backbones else info.arch
                if size != asked:
                    snapped.append(f"- {label}: {asked[0]}x{asked[1]} asked, {size[0]}x{size[1]} timed, the nearest "
                                   f"multiple of its {model.patch_size} px patch\n")
                checkpoint_mb = sum(p.numel() for p in model.parameters()) * 4 / 1e6
                tag = f"{size[0]}x{size[1]}"
                bag = work / f"flight_{label}_{tag}"
                simulate(bag, SimConfig(frames=args.frames + args.calibration_frames, size=size, seed=11), progress=False)
                images = [preprocess(f.rgb) for f in read_frames(bag)]
                if given and given[0] == size:
                    artifact = given[1]
                else:
                    artifact = work / f"w4a8_{label}_{tag}"
                    argv = ["calibrate", "--bag", str(bag), "--size", tag, "--frames", str(args.calibration_frames),
                            "--holdout", "0", "--out", str(artifact)] + (["--model", name] if name else [])
                    if main(argv) != 0:
                        raise SpatialqError(f"calibration for {tag} failed")
                timed = images[args.calibration_frames:]
                engines = engines_for(artifact, model, images[: args.calibration_frames], work, args.threads)
                rows += [replace(r, backbone=label)
                         for r in measure(engines, timed, size, model.config, peaks, checkpoint_mb, args.threads)]
                if index > 0:  # hover and node: the first backbone's
                    continue
                if args.node:
                    node.append(_node_figures(artifact, size, [f.rgb for f in read_frames(bag)][-8:]))
                if args.hover_frames:
                    hover.append(run_hover(artifact, size, work, args.hover_frames, threshold, args.threads))
    rows = with_peak_fractions(rows, peaks)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cpu = read_cpu_class()
    machine = f"{torch.get_num_threads()} threads, FP32 peak {peaks['fp32'].gops:.0f} " \
              f"GFLOP/s, INT8 peak {peaks['int8'].gops:.0f} GOP/s (1024^3 GEMM, best of the turns it took " \
              "between the engines)"
    trained = all(i.trained for _, _, i in backbones)
    table = _table(rows, cpu.describe(), machine, trained) + "".join(snapped) + hover_section(hover) + _node_section(node)
    write_atomic(out / "bench.md", table.encode())
    write_atomic(out / "bench.json", json.dumps({"cpu": cpu.as_dict(), "peaks_gops": {k: p.gops for k, p in peaks.items()},
                                                 "rows": [r.as_dict() for r in rows]}, indent=1).encode())
    if hover:
        write_atomic(out / "hover.json", json.dumps([h.as_dict() for h in hover], indent=1).encode())
    if node:
        write_atomic(out / "node.json", json.dumps(node, indent=1).encode())
    if args.json:
        write_atomic(Path(args.json), json.dumps([{**r.as_dict(), "cpu_class": cpu.name} for r in rows],
                                                 indent=1).encode())
    _plot(rows, out / "bench.png")
    print(table)
    return 0


def _run_zoo(args, size) -> int:
    import json
    import tempfile
    from datetime import date
    from pathlib import Path

    from ..atomic import write_atomic
    from ..bench.cpu_class import read_cpu_class
    from ..bench.zoo import run_zoo, zoo_markdown, zoo_names
    from ..errors import SpatialqError

    names = zoo_names(args.zoo)
    if args.zoo_frames < 1 or args.zoo_holdout < 1:
        raise SpatialqError("--zoo-frames and --zoo-holdout must be >= 1")
    if args.zoo_depth is not None and args.zoo_depth < 1:
        raise SpatialqError(f"--zoo-depth {args.zoo_depth}: must be >= 1")
    with tempfile.TemporaryDirectory(prefix="spatialq-zoo-") as tmp:
        results = run_zoo(names, size, args.zoo_frames, args.zoo_holdout, Path(tmp), args.zoo_depth)
    cpu = read_cpu_class()
    header = (f"`spatialq bench --zoo {args.zoo} --sizes {size[0]}x{size[1]} --zoo-frames {args.zoo_frames} "
              f"--zoo-holdout {args.zoo_holdout}" + (f" --zoo-depth {args.zoo_depth}" if args.zoo_depth else "")
              + f"` on {date.today().isoformat()}, {cpu.describe()}. Seeded stress models (UNTRAINED by "
              "construction): the table is about the quantizers, not about the DINO weights.")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table = zoo_markdown(results, header)
    write_atomic(out / "zoo.md", table.encode())
    write_atomic(out / "zoo.json", json.dumps({"cpu": cpu.as_dict(), "size": list(size), "models": results},
                                              indent=1).encode())
    print(table)
    return 0


def _node_figures(artifact, size, frames) -> dict:
    """perception_node in its own process on the ONNX engine, fed over DDS (needs rclpy)."""
    from ..errors import SpatialqError
    from ..ros.node_process import measure_node

    try:
        figures = measure_node(str(artifact), size, frames)
    except SpatialqError as exc:  # a DDS set-up problem must not throw away the engine measurements
        return {"size": f"{size[0]}x{size[1]}", "error": str(exc)}
    return {"size": f"{size[0]}x{size[1]}", **figures}


def _node_section(node: list[dict]) -> str:
    if not node:
        return ""
    lines = ["", "## The deploy process: perception_node on the ONNX engine", "",
             "Its own interpreter, keypoints head, frames published over DDS (best effort), one at a time.", "",
             "| size | peak RSS MB | frame published -> keypoints received, p50 ms | fps sustained at 2x overload "
             "| x the backbone's limit | torch loaded |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {n['size']} | {n['rss_mb']:.0f} | {n['latency_p50_ms']:.1f} | {n['sustained_fps']:.1f} | "
              f"{n['fps_vs_backbone_limit']:.2f} | {'yes' if n['torch_loaded'] else 'no'} |"
              if "error" not in n else f"| {n['size']} | failed: {n['error']} | | | | |" for n in node]
    return "\n".join(lines) + "\n"


def _nearest_multiple(size: tuple[int, int], patch: int) -> tuple[int, int]:
    """The size on this backbone's patch grid closest to the asked one (224 stays 224 on 14 and 16; 56 -> 64 on 16)."""
    return tuple(max(patch, int(side / patch + 0.5) * patch) for side in size)


def _table(rows, cpu: str, machine: str, trained: bool) -> str:
    lines = ["# spatialq bench", "", f"CPU class: {cpu}. Every figure below belongs to this class.", "",
             f"Machine: {machine}", ""]
    if not trained:
        lines += ["> **UNTRAINED weights: speed and memory are real, fidelity numbers are not the real backbone's.**", ""]
    lines += ["| backbone | engine | size | tokens | p50 ms | p95 ms | frames/s | deploy RSS MB | model MB | patch cosine "
              "| ERQA | of peak |", "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        rss = f"{r.rss_mb:.0f}" if r.rss_mb is not None else "-"
        lines.append(f"| {r.backbone} | {r.engine} | {r.size} | {r.patch_tokens} | {r.p50_ms:.1f} | {r.p95_ms:.1f} | "
                     f"{r.fps:.1f} | {rss} | {r.model_mb:.1f} | {r.cosine:.4f} | {r.erqa:.3f} | "
                     f"{100 * r.peak_fraction:.0f}% |")
    groups = {}
    for r in rows:
        groups.setdefault((r.backbone, r.size, r.patch_tokens), {})[r.engine] = r
    speedups = {}  # (backbone, size, tokens) -> spatialq-w4a8-cpu's speed over ort-fp32
    lines += [""]
    for (backbone, size, tokens), engines in groups.items():
        for ours in ("spatialq-w4a8-cpu", "spatialq-w4a8-qdq"):
            if "ort-fp32" in engines and ours in engines:
                ratio = engines["ort-fp32"].p50_ms / engines[ours].p50_ms
                speedups.setdefault((backbone, size, tokens), ratio)
                lines.append(f"- {backbone} {size} ({tokens} tokens): {ours} runs at {ratio:.2f}x the speed of "
                             "ort-fp32 (same run)")
    first = rows[0].backbone if rows else ""
    for key, ratio in speedups.items():  # each other backbone against the first at the nearest token count
        if key[0] == first:
            continue
        ref = min((k for k in speedups if k[0] == first), key=lambda k: abs(k[2] - key[2]), default=None)
        if ref is not None:
            lines.append(f"- {key[0]} {key[1]} ({key[2]} tokens) vs {ref[0]} {ref[1]} ({ref[2]} tokens): W4A8-cpu "
                         f"speed-up {ratio:.2f}x vs {speedups[ref]:.2f}x, {100 * (ratio / speedups[ref] - 1):+.0f} %")
    return "\n".join(lines) + "\n"


def _plot(rows, path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    def group(r) -> str:
        return f"{r.backbone} {r.size}"

    sizes = list(dict.fromkeys(group(r) for r in rows))
    engines = list(dict.fromkeys(r.engine for r in rows))
    fig, ax = plt.subplots(figsize=(8, 3.6), dpi=110)
    width = 0.8 / len(engines)
    for i, engine in enumerate(engines):
        values = [next((r.p50_ms for r in rows if r.engine == engine and group(r) == s), 0) for s in sizes]
        ax.bar(np.arange(len(sizes)) + i * width, values, width, label=engine)
    ax.set_xticks(np.arange(len(sizes)) + 0.4 - width / 2, sizes)
    ax.set_ylabel("p50 latency (ms)")
    ax.set_title("Backbone latency per frame (lower is better)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
