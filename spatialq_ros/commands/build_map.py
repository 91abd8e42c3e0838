"""`spatialq build-map`: a bag with images and poses -> VLAD vocabulary + place database (+ PCA)."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bag", required=True, help="rosbag2 with camera frames and poses")
    parser.add_argument("--model", help="checkpoint or W4A8 artifact (default: the embedded default)")
    parser.add_argument("--topic", help="image topic (default: the camera topic)")
    parser.add_argument("--pose-topic", default="/odom", help="nav_msgs/Odometry or PoseStamped topic")
    parser.add_argument("--size", default="448x448", help="backbone input WxH (an artifact fixes it)")
    parser.add_argument("--out", required=True, help="map file (.npz), written atomically")
    spacing = parser.add_mutually_exclusive_group()
    spacing.add_argument("--every", type=int, default=1, help="keep every Nth frame")
    spacing.add_argument("--min-distance", type=float, help="keep a frame once it is this many metres from the last")
    parser.add_argument("--clusters", type=int, default=32, help="VLAD vocabulary size (AnyLoc: 32)")
    parser.add_argument("--pca-dims", type=int, default=128, help="PCA-whitening dims (0: off)")
    parser.add_argument("--aggregation", choices=("vlad", "gem"), default="vlad")
    parser.add_argument("--facet-layer", type=int, default=-1, help="block whose value facet is aggregated")
    parser.add_argument("--frames", type=int, help="use only the first N frames of the bag")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..backbone.preprocess import parse_size
    from ..banner import warn_untrained
    from ..errors import SpatialqError
    from ..perception.place.builder import MapBuilder
    from ..runtime.factory import make_engine
    from ..sim.bag import read_frames, read_poses

    size = parse_size(args.size)
    if args.every < 1:
        raise SpatialqError("--every must be >= 1")
    poses = read_poses(args.bag, args.pose_topic)
    if not poses:
        raise SpatialqError(f"{args.bag}: no poses on {args.pose_topic}")
    engine = make_engine(args.model, size, args.facet_layer)
    if not engine.trained:
        warn_untrained()
    builder = MapBuilder(engine.fingerprint, {
        "facet_layer": args.facet_layer, "aggregation": args.aggregation, "size": list(size),
        "patch_size": engine.patch_size, "pca_dims": args.pca_dims, "clusters": args.clusters,
        "pose_topic": args.pose_topic},
        min_distance=args.min_distance, every=args.every)
    pose_stamps = np.array(sorted(poses))
    for i, frame in enumerate(tqdm(read_frames(args.bag, args.topic), desc="map frames", unit="frame")):
        if args.frames is not None and i >= args.frames:
            break
        pose = nearest_pose(poses, pose_stamps, frame.stamp_ns)
        if pose is not None and builder.wants(pose):
            builder.add(engine.infer(frame.rgb).value_facet, pose, frame.stamp_ns)
    try:
        db = builder.build()
    except SpatialqError as exc:
        raise SpatialqError(f"{args.bag}: {exc}") from None
    clusters, vocabulary = db.config["clusters"], db.vocabulary
    db.save(args.out)
    print(f"wrote {args.out}: {len(db)} places, vocabulary {clusters}x{vocabulary.shape[1]}, "
          f"PCA {args.pca_dims or 'off'}" + ("" if engine.trained else "  [UNTRAINED]"))
    return 0


def nearest_pose(poses: dict, stamps, stamp_ns: int, tolerance_ns: int = 50_000_000):
    """The pose with the closest stamp, if within 50 ms of the frame."""
    import numpy as np

    i = int(np.clip(np.searchsorted(stamps, stamp_ns), 1, len(stamps) - 1)) if len(stamps) > 1 else 0
    best = min((stamps[j] for j in {max(i - 1, 0), i}), key=lambda s: abs(int(s) - stamp_ns))
    return poses[int(best)] if abs(int(best) - stamp_ns) <= tolerance_ns else None
