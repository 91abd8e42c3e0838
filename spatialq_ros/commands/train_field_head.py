"""`spatialq train-field-head`: a field-boundary head fitted on frozen backbone tokens and field masks."""

from __future__ import annotations

import argparse


def register(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--bag", help="rosbag2 with camera frames and field masks")
    source.add_argument("--images", help="folder of reference images (pair with --masks)")
    parser.add_argument("--masks", help="folder of masks named like the images (white = field)")
    parser.add_argument("--mask-topic", default="/ground_truth/field_mask", help="mask topic in --bag")
    parser.add_argument("--topic", help="image topic in --bag (default: the camera topic)")
    parser.add_argument("--model", help="checkpoint or W4A8 artifact (default: the embedded default)")
    parser.add_argument("--size", default="448x448", help="backbone input WxH (an artifact fixes it)")
    parser.add_argument("--kind", choices=("linear", "prototype"), default="linear")
    parser.add_argument("--frames", type=int, default=40, help="reference frames to use (default 40)")
    parser.add_argument("--every", type=int, default=3, help="take every Nth bag frame (default 3)")
    parser.add_argument("--out", required=True, help="head file (.npz), written atomically")


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..backbone.preprocess import parse_size, resize_rgb
    from ..banner import warn_untrained
    from ..errors import SpatialqError
    from ..perception.field import fit_linear_head, fit_prototype_head, save_head
    from ..runtime.factory import make_engine

    size = parse_size(args.size)
    if args.frames < 1 or args.every < 1:
        raise SpatialqError("--frames and --every must be >= 1")
    pairs = list(_bag_pairs(args) if args.bag else _folder_pairs(args))
    if not pairs:
        raise SpatialqError(f"{args.bag or args.images}: no frames with masks")
    engine = make_engine(args.model, size)
    if not engine.trained:
        warn_untrained()
    import cv2

    # frames are resized to the backbone size, so their masks must follow (nearest: keep 0/255)
    references = [(engine.infer(resize_rgb(rgb, engine.size)).patch_tokens,
                   cv2.resize(mask, tuple(engine.size), interpolation=cv2.INTER_NEAREST))
                  for rgb, mask in tqdm(pairs, desc="reference tokens", unit="frame")]
    fit = fit_linear_head if args.kind == "linear" else fit_prototype_head
    head = fit(references, engine.fingerprint, tuple(engine.size))
    save_head(args.out, head)
    print(f"wrote {args.out}: {args.kind} field head on {len(references)} frames, C={head.dim}"
          + ("" if engine.trained else "  [UNTRAINED]"))
    return 0


def _bag_pairs(args):
    from ..errors import SpatialqError
    from ..sim.bag import iter_masks, join_by_stamp, read_frames

    frames = ((frame.stamp_ns, frame) for frame in read_frames(args.bag, args.topic))
    taken = 0
    for i, (_, frame, mask) in enumerate(join_by_stamp(frames, iter_masks(args.bag, args.mask_topic))):
        if taken >= args.frames:
            break
        if i % args.every or mask is None:
            continue
        if mask.shape != frame.rgb.shape[:2]:
            raise SpatialqError(f"{args.bag}: mask {mask.shape[1]}x{mask.shape[0]} does not match its frame "
                                f"{frame.rgb.shape[1]}x{frame.rgb.shape[0]}")
        taken += 1
        yield frame.rgb, mask


def _folder_pairs(args):
    from pathlib import Path

    import cv2

    from ..errors import SpatialqError
    from ..imageio import read_rgb

    if not args.masks:
        raise SpatialqError("--images needs --masks")
    images, masks = Path(args.images), Path(args.masks)
    for folder in (images, masks):
        if not folder.is_dir():
            raise SpatialqError(f"{folder}: no such folder")
    files = sorted(p for p in images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    for path in files[: args.frames]:
        candidates = [masks / (path.stem + ext) for ext in (".png", ".bmp", path.suffix)]
        mask_path = next((m for m in candidates if m.is_file()), None)
        if mask_path is None:
            raise SpatialqError(f"{path}: no mask named {path.stem}.png in {masks}")
        rgb = read_rgb(path)
        mask = read_rgb(mask_path)[..., 0]
        if mask.shape != rgb.shape[:2]:
            mask = cv2.resize(mask, (rgb.shape[1], rgb.shape[0]), interpolation=cv2.INTER_NEAREST)
        yield rgb, mask
