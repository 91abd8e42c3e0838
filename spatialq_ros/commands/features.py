"""`spatialq features`: one image through the backbone -> patch tokens, CLS, an optional facet and PCA picture."""

from __future__ import annotations

import argparse
import json
import sys

FACETS = ("query", "key", "value", "token")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", help="checkpoint file or folder (.pth, HF folder, .safetensors); "
                        "default: models/dinov2_vits14_pretrain.pth, else an UNTRAINED seeded ViT-S/14")
    parser.add_argument("--image", required=True, help="input image (PNG, JPEG, ...)")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--size", help="WxH, multiples of the backbone's patch (14 for DINOv2, 16 for DINOv3); "
                        "default: the image's own size (rounded to multiples of the patch if needed)")
    parser.add_argument("--layer", type=int, help="block index for --facet (negative counts from the end)")
    parser.add_argument("--facet", choices=FACETS, help="facet of --layer to save (default value)")
    parser.add_argument("--pca-png", help="write the 3-component PCA picture of the patch tokens here")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from ..atomic import check_writable_parent, save_npz_atomic
    from ..backbone.preprocess import check_size, parse_size, preprocess, resize_rgb
    from ..banner import warn_untrained
    from ..errors import SpatialqError
    from ..imageio import read_rgb

    if args.facet and args.layer is None:
        args.layer = -1
    facet = (args.facet or "value") if args.layer is not None else None
    check_writable_parent(args.out)
    if args.pca_png:
        check_writable_parent(args.pca_png)
    rgb = read_rgb(args.image)
    asked = parse_size(args.size) if args.size else None

    from pathlib import Path

    if args.model and (Path(args.model) / "quant.json").is_file():
        return _run_artifact(args, rgb, asked, facet)
    from ..backbone.checkpoint import default_backbone, load_backbone  # torch: only for a checkpoint

    model, info = load_backbone(args.model) if args.model else default_backbone()
    size = (check_size(asked, model.patch_size, info.arch) if asked
            else size_for(rgb.shape[1], rgb.shape[0], model.patch_size))
    if size != (rgb.shape[1], rgb.shape[0]):
        print(f"[spatialq] resizing {rgb.shape[1]}x{rgb.shape[0]} -> {size[0]}x{size[1]}", file=sys.stderr)
    if not info.trained:
        warn_untrained()
    depth = model.config.depth
    if args.layer is not None and not -depth <= args.layer < depth:
        raise SpatialqError(f"--layer {args.layer} out of range for {info.arch} ({depth} blocks)")

    import torch

    with torch.inference_mode():
        out = model.extract(torch.from_numpy(preprocess(rgb, size)),
                            facet_layer=args.layer, facet=facet or "value")
    arrays = {
        "patch_tokens": out.patch_tokens[0].numpy().astype(np.float32),
        "cls_token": out.cls_token[0].numpy().astype(np.float32),
    }
    if facet is not None:
        arrays["facet"] = out.facet[0].numpy().astype(np.float32)
    meta = {"arch": info.arch, "trained": info.trained, "checkpoint_sha256": info.sha256,
            "size": list(size), "layer": args.layer, "facet": facet}
    save_npz_atomic(args.out, meta=np.array(json.dumps(meta)), **arrays)
    h, w, c = arrays["patch_tokens"].shape
    print(f"wrote {args.out}: patch_tokens {h}x{w}x{c}, cls_token {c}"
          + (f", {facet} facet of block {args.layer}" if facet else "")
          + ("" if info.trained else "  [UNTRAINED]"))
    if args.pca_png:
        write_pca_picture(args.pca_png, resize_rgb(rgb, size), arrays["patch_tokens"], info.trained)
        print(f"wrote {args.pca_png}")
    return 0


def _run_artifact(args, rgb, asked, facet) -> int:
    """A W4A8 artifact runs through ONNX Runtime (the graph this machine runs fastest), as on the robot: no torch."""
    import json

    import numpy as np

    from ..atomic import save_npz_atomic
    from ..backbone.preprocess import resize_rgb
    from ..banner import warn_untrained
    from ..errors import SpatialqError
    from ..runtime.onnx_engine import OnnxEngine

    engine = OnnxEngine(args.model)
    if asked and tuple(asked) != tuple(engine.size):
        raise SpatialqError(f"artifact {args.model} was exported for {engine.size[0]}x{engine.size[1]}, "
                            f"not {asked[0]}x{asked[1]}")
    if (rgb.shape[1], rgb.shape[0]) != tuple(engine.size):
        print(f"[spatialq] resizing {rgb.shape[1]}x{rgb.shape[0]} -> {engine.size[0]}x{engine.size[1]}",
              file=sys.stderr)
    if facet not in (None, "value") or (args.layer is not None and args.layer % engine.meta["depth"]
                                        != engine.meta["facet_layer"] % engine.meta["depth"]):
        raise SpatialqError(f"artifact graphs output only the value facet of block {engine.meta['facet_layer']}")
    if not engine.trained:
        warn_untrained()
    out = engine.infer(rgb)
    arrays = {"patch_tokens": out.patch_tokens, "cls_token": out.cls_token}
    if facet:
        arrays["facet"] = out.value_facet
    meta = {"artifact": str(args.model), "fingerprint": engine.fingerprint, "trained": engine.trained,
            "size": list(engine.size), "layer": engine.meta["facet_layer"] if facet else None, "facet": facet}
    save_npz_atomic(args.out, meta=np.array(json.dumps(meta)), **arrays)
    h, w, c = out.patch_tokens.shape
    print(f"wrote {args.out}: patch_tokens {h}x{w}x{c} from W4A8 artifact (ONNX Runtime)"
          + ("" if engine.trained else "  [UNTRAINED]"))
    if args.pca_png:
        write_pca_picture(args.pca_png, resize_rgb(rgb, engine.size), out.patch_tokens, engine.trained)
    return 0


def size_for(width: int, height: int, patch: int) -> tuple[int, int]:
    """The nearest sides that are multiples of the backbone's patch (an image already on its grid keeps its size)."""
    return (max(patch, round(width / patch) * patch), max(patch, round(height / patch) * patch))


def write_pca_picture(path, rgb, tokens, trained: bool) -> None:
    from ..viz.feature_pca import pca_rgb
    from ..viz.pictures import side_by_side, stamp_untrained, upscale_nearest, write_png

    picture = side_by_side(rgb, upscale_nearest(pca_rgb(tokens), (rgb.shape[1], rgb.shape[0])))
    write_png(path, picture if trained else stamp_untrained(picture))
