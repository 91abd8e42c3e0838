"""`spatialq soak`: the deploy node through a long run, lifecycle cycles and a vanishing camera; RSS sampled."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="W4A8 artifact (give --map and --field-head with it; omit all three: small "
                                        "ones are built from a simulated flight)")
    parser.add_argument("--map", help="place map built on --model")
    parser.add_argument("--field-head", help="field head trained on --model")
    parser.add_argument("--bag", help="flight whose camera frames are played, over and over (default: simulated)")
    parser.add_argument("--size", default="224x224", help="size of the inputs built here, multiples of the "
                        "backbone's patch (default 224x224)")
    parser.add_argument("--profile", choices=("drone", "tractor"), default="drone", help="node graph and parameters")
    parser.add_argument("--frames", type=int, default=20000, help="frames of the long run (default 20000)")
    parser.add_argument("--warmup", type=int, default=1000, help="frames before the RSS baseline (default 1000)")
    parser.add_argument("--cycles", type=int, default=50, help="lifecycle cycles (default 50)")
    parser.add_argument("--vanish", type=float, default=10.0, help="seconds the camera is gone (default 10)")
    parser.add_argument("--stale-after", type=float, default=2.0,
                        help="the node's stale_after: WARN after this many seconds without frames (default 2)")
    parser.add_argument("--max-growth-mb", type=float, default=10.0, help="RSS growth allowed (default 10 MB)")
    parser.add_argument("--out", default="soak_out", help="report folder (default soak_out/)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..backbone.preprocess import check_size, parse_size
    from ..errors import SpatialqError
    from ..runtime.factory import artifact_meta, is_artifact
    from ..soak_report import write_soak_report

    asked = parse_size(args.size)
    given = [args.model, args.map, args.field_head]
    if any(given) and not all(given):
        raise SpatialqError("give --model, --map and --field-head together (or none: the soak builds small ones)")
    if args.frames < 2 or not 1 <= args.warmup < args.frames:
        raise SpatialqError(f"--frames {args.frames} / --warmup {args.warmup}: need 1 <= warmup < frames")
    if args.cycles < 0 or args.max_growth_mb <= 0:
        raise SpatialqError("--cycles must be >= 0 and --max-growth-mb > 0")
    if not 0.1 <= args.stale_after < args.vanish:
        raise SpatialqError(f"--stale-after {args.stale_after:g}: must be at least 0.1 and below --vanish "
                            f"{args.vanish:g}, or the node never has time to warn")
    for flag, path in (("--model", args.model), ("--map", args.map), ("--field-head", args.field_head),
                       ("--bag", args.bag)):
        if path and not Path(path).exists():
            raise SpatialqError(f"{flag} {path}: no such file or folder")
    if args.bag:
        from ..sim.bag import open_bag

        with open_bag(args.bag):  # not a bag: one line now, before anything is built
            pass
    if args.model and not is_artifact(args.model):
        raise SpatialqError(f"--model {args.model}: not a W4A8 artifact folder (the soak runs the deploy engine, "
                            "ONNX Runtime, on one; make one with spatialq calibrate)")
    if not args.model:  # the inputs are built on the embedded default: a size off its patch is one line now
        from ..backbone.checkpoint import default_backbone

        backbone, info = default_backbone()
        check_size(asked, backbone.patch_size, info.arch)
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SpatialqError(f"{out}: cannot make the report folder ({exc.strerror})") from None

    inputs = _inputs(args, out)
    meta = artifact_meta(inputs["model"])
    size = f"{meta['size'][0]}x{meta['size'][1]}"
    from ..ros.soak import SoakConfig, soak

    config = SoakConfig(frames=args.frames, warmup=args.warmup, sample_every=max(1, min(100, args.frames // 50)),
                        cycles=args.cycles, vanish_s=args.vanish, stale_after=args.stale_after,
                        after_frames=min(200, args.frames))
    sets = [f"perception_node.{name}={inputs[key]}" for name, key in (("model", "model"), ("map", "map"),
                                                                      ("field_head", "field_head"))]
    result = soak(inputs["bag"], [a for s in [*sets, f"size={size}"] for a in ("--set", s)], config,
                  out / "node.log", args.profile)
    trained = bool(meta.get("trained", False))
    report = write_soak_report(result.as_dict(), out, args.max_growth_mb, trained, inputs)
    for name, check in report["checks"].items():
        print(f"{'ok  ' if check['passed'] else 'FAIL'} {name}: {check['detail']}")
    print(f"soak {'passed' if report['passed'] else 'FAILED'}: {out / 'soak.md'}"
          + ("" if trained else "  [UNTRAINED]"))
    return 0 if report["passed"] else 1


def _inputs(args, out) -> dict:
    """The user's artifact, map and head; or small ones built in OUT/inputs from a simulated flight (kept there,
    so a second soak reuses them)."""
    import os
    from pathlib import Path

    from ..cli import main
    from ..errors import SpatialqError
    from ..runtime.factory import artifact_meta

    built = out / "inputs"
    bag = args.bag
    size = args.size
    if args.model:
        meta = artifact_meta(args.model)
        size = f"{meta['size'][0]}x{meta['size'][1]}"
    if bag is None:
        bag = str(built / "flight")
        if not Path(bag).exists():
            built.mkdir(exist_ok=True)
            print(f"spatialq soak: no --bag: simulating a 200-frame flight at {size} into {bag}")
            if main(["sim", "--out", bag, "--frames", "200", "--size", size, "--seed", "5"]) != 0:
                raise SpatialqError("simulating the flight failed (see the line above)")
    if args.model:
        return {"bag": bag, "model": args.model, "map": args.map, "field_head": args.field_head}
    # torch's OpenMP pool would spin after the calibration and take CPU from the node (see spatialq demo)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    model, map_file, head = built / "w4a8", built / "map.npz", built / "field_head.npz"
    steps = [
        (model, ["calibrate", "--bag", bag, "--size", size, "--frames", "32", "--holdout", "4", "--method", "minmax",
                 "--out", str(model)]),
        (map_file, ["build-map", "--bag", bag, "--model", str(model), "--size", size, "--frames", "100",
                    "--out", str(map_file)]),
        (head, ["train-field-head", "--bag", bag, "--model", str(model), "--size", size, "--out", str(head)]),
    ]
    for path, argv in steps:
        if path.exists():
            print(f"spatialq soak: reusing {path}")
            continue
        print(f"spatialq soak: no --model/--map/--field-head: building {path} (spatialq {' '.join(argv)})")
        if main(argv) != 0:
            raise SpatialqError(f"building {path} failed (see the line above)")
    return {"bag": bag, "model": str(model), "map": str(map_file), "field_head": str(head)}
