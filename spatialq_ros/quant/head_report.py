"""What quantization does to the heads: keypoints, field boundaries and place recognition, scored on the
held-out frames for FP32 and each W4A8 model.

Each model gets the field head and the map it would be deployed with: fitted on its own features of the
calibration frames, as `train-field-head` and `build-map` do with a deployed artifact. Field boundaries
need the bag's ground-truth masks and places its poses; without them those heads are reported as not
scored. Keypoint locations come from image gradients, not from the backbone, so their repeatability is the
same for every model; what the backbone changes is whether the descriptors still match.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MAP_FRAMES = 32  # calibration frames a model's map and field head are fitted on, at most


@dataclass(frozen=True)
class FlightTruth:
    """What a bag knows about its frames (calibration, then held out), in frame order; None where it does not."""
    masks: list  # (H, W) uint8 ground-truth field masks
    poses: list  # (7,) x y z qx qy qz qw


def read_flight_truth(bag: str, topic: str | None, count: int) -> FlightTruth:
    """Masks and poses of the bag's first `count` camera frames, matched by header stamp."""
    from itertools import islice
    from pathlib import Path

    from ..sim.bag import MASK_TOPIC, ODOM_TOPIC, camera_topic, open_bag, read_masks, read_poses, read_topic

    with open_bag(bag) as reader:
        camera = camera_topic(reader, Path(bag), topic)
        topics = {c.topic for c in reader.connections}
    stamps = [ns for ns, _ in islice(read_topic(bag, camera), count)]
    masks = read_masks(bag) if MASK_TOPIC in topics else {}
    poses = read_poses(bag) if ODOM_TOPIC in topics else {}
    return FlightTruth([masks.get(s) for s in stamps], [poses.get(s) for s in stamps])


def head_scores(models: dict, rgbs: list[np.ndarray], frames: int, truth: FlightTruth | None, facet_layer: int,
                threshold_m: float = 25.0) -> dict[str, dict]:
    """models: name -> torch model, FP32 first (the reference for top-1 place agreement), then fake-quant ones;
    rgbs: calibration frames then held-out frames, at the backbone size. Returns name -> {keypoints, field,
    place} scores on the held-out frames."""
    import cv2

    from ..metrics.repeatability import known_homography

    size = (rgbs[0].shape[1], rgbs[0].shape[0])
    homography = known_homography(size)
    fitting = range(max(0, frames - MAP_FRAMES), frames)
    held = range(frames, len(rgbs))
    has = {kind: truth is not None and any(getattr(truth, kind)[i] is not None for i in fitting)
           and any(getattr(truth, kind)[i] is not None for i in held) for kind in ("masks", "poses")}
    masks = [None if m is None else cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) for m in truth.masks] \
        if has["masks"] else []
    scores, top1 = {}, {}
    for name, model in models.items():
        features = dict(zip((*fitting, *held), _features(model, [rgbs[i] for i in (*fitting, *held)], facet_layer)))
        result = {"keypoints": _keypoint_scores(model, rgbs, held, features, homography, facet_layer)}
        if has["masks"]:
            result["field"] = _field_scores(rgbs, fitting, held, features, masks, name, size)
        if has["poses"]:
            result["place"], top1[name] = _place_scores(features, fitting, held, truth.poses, name, size,
                                                        facet_layer, threshold_m)
        scores[name] = result
    if top1:  # the same place as FP32 picks: meaningful even when the held-out frames revisit nothing
        reference = next(iter(top1.values()))
        for name, picks in top1.items():
            scores[name]["place"]["top1_as_fp32"] = float(np.mean(np.equal(picks, reference)))
    return scores


def _features(model, rgbs: list[np.ndarray], facet_layer: int, batch: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """(patch token grid, value facet grid) of each frame, run in batches on the model's device."""
    import torch

    from ..backbone.preprocess import preprocess

    device = next(model.parameters()).device
    grids = []
    with torch.no_grad():
        for start in range(0, len(rgbs), batch):
            x = torch.from_numpy(np.concatenate([preprocess(r) for r in rgbs[start:start + batch]])).to(device)
            out = model.extract(x, facet_layer=facet_layer, facet="value")
            grids += list(zip(out.patch_tokens.cpu().numpy(), out.facet.cpu().numpy()))
    return grids


def _keypoint_scores(model, rgbs, held, features, homography, facet_layer) -> dict:
    import cv2

    from ..metrics.repeatability import matching_accuracy, repeatability
    from ..perception.keypoints import detect

    size = (rgbs[0].shape[1], rgbs[0].shape[0])
    warped = [cv2.warpPerspective(rgbs[i], homography, size) for i in held]
    repeats, matches = [], []
    for i, rgb_b, (tokens_b, _) in zip(held, warped, _features(model, warped, facet_layer)):
        a = detect(rgbs[i], features[i][0])
        b = detect(rgb_b, tokens_b)
        repeats.append(repeatability(a.uv, b.uv, homography, size))
        matches.append(matching_accuracy(a.uv, a.descriptors, b.uv, b.descriptors, homography, size))
    return {"repeatability": float(np.nanmean(repeats)), "matching_accuracy": float(np.nanmean(matches)),
            "frames": len(held)}


def _field_scores(rgbs, fitting, held, features, masks, name, size) -> dict:
    from ..metrics.segmentation import boundary_f, iou
    from ..perception.field import field_mask, fit_linear_head

    head = fit_linear_head([(features[i][0], masks[i]) for i in fitting if masks[i] is not None], name, size)
    rows = []
    for i in held:
        if masks[i] is not None:
            predicted = field_mask(head.logits(features[i][0]), rgbs[i])
            rows.append((boundary_f(predicted, masks[i]).f, iou(predicted, masks[i])))
    return {"boundary_f": float(np.mean([r[0] for r in rows])), "iou": float(np.mean([r[1] for r in rows])),
            "frames": len(rows)}


def _place_scores(features, fitting, held, poses, name, size, facet_layer, threshold_m) -> tuple[dict, list]:
    from ..metrics.vpr import recall_at_k
    from ..perception.place.builder import MapBuilder
    from ..perception.place.recognizer import PlaceRecognizer

    builder = MapBuilder(name, {"facet_layer": facet_layer, "aggregation": "vlad", "size": list(size),
                                "pca_dims": 0, "clusters": 16})
    for i in fitting:
        if poses[i] is not None:
            builder.add(features[i][1], poses[i], i)
    db = builder.build()
    recognizer = PlaceRecognizer(db, name, 5)
    queries = [i for i in held if poses[i] is not None]
    top = [recognizer.match(features[i][1]).indices for i in queries]
    recall = recall_at_k(np.array([poses[i][:2] for i in queries]), db.poses[:, :2], np.array([t[:5] for t in top]),
                         ks=(1, 5), threshold_m=threshold_m)
    return ({"recall@1": recall[1], "recall@5": recall[5], "queries": len(queries), "map_places": len(db),
             "threshold_m": threshold_m}, [int(t[0]) for t in top])
