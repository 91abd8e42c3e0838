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
    by_log_time: bool = False  # matched by the bag's log time: the frames' header stamps are zero


def flight_truth(bag: str, stamps: list[int], by_log_time: bool = False) -> FlightTruth:
    """The ground-truth masks and poses a bag holds for the frames with these stamps (only those are kept)."""
    from ..sim.bag import MASK_TOPIC, ODOM_TOPIC, bag_topics, read_masks, read_poses

    topics = bag_topics(bag)
    masks = read_masks(bag, keep=set(stamps)) if MASK_TOPIC in topics else {}
    poses = read_poses(bag) if ODOM_TOPIC in topics else {}
    return FlightTruth([masks.get(s) for s in stamps], [poses.get(s) for s in stamps], by_log_time)


def head_scores(models: dict, info, rgbs: list[np.ndarray], frames: int, truth: FlightTruth | None,
                facet_layer: int, threshold_m: float = 25.0) -> dict[str, dict]:
    """models: name -> torch model or engine (a graph quantized outside our code), FP32 first (the reference for
    top-1 place agreement), then the quantized ones;
    info: the checkpoint's; rgbs: calibration frames then held-out frames, at the backbone size. Each model
    runs through the deployed `Pipeline`, as `spatialq eval` runs an artifact. Returns name -> {keypoints,
    field, place} scores on the held-out frames."""
    import cv2
    import torch

    from ..metrics.repeatability import known_homography
    from ..runtime.torch_engine import TorchEngine

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
        engine = TorchEngine(model, info, size, facet_layer, fingerprint=name) \
            if isinstance(model, torch.nn.Module) else model
        fitted = {i: engine.infer(rgbs[i]) for i in fitting}
        pipeline = _deployed_pipeline(engine, fitted, masks, truth.poses if has["poses"] else [])
        results = {i: pipeline.process(rgbs[i]) for i in held}
        scores[name] = {"keypoints": _keypoint_scores(pipeline, results, homography)}
        if pipeline.field_head is not None:
            scores[name]["field"] = _field_scores(results, masks)
        if has["poses"]:
            scores[name]["place"], top1[name] = _place_scores(pipeline.place.database, results, truth.poses,
                                                              threshold_m)
    if top1:  # the same place as FP32 picks: meaningful even when the held-out frames revisit nothing
        reference = next(iter(top1.values()))
        for name, picks in top1.items():
            scores[name]["place"]["top1_as_fp32"] = float(np.mean(np.equal(picks, reference)))
    return scores


def _deployed_pipeline(engine, fitted: dict, masks: list, poses: list):
    """The engine with the field head and the map fitted on its own features of the calibration frames (as
    `train-field-head` and `build-map` make them), where there is ground truth to fit them on."""
    from ..perception.pipeline import Pipeline

    head, place = None, None
    if masks:  # the field and place modules need scipy and faiss: imported only when there is truth to fit
        from ..perception.field import fit_linear_head

        from ..errors import SpatialqError

        try:
            head = fit_linear_head([(f.patch_tokens, masks[i]) for i, f in fitted.items() if masks[i] is not None],
                                   engine.fingerprint, engine.size)
        except SpatialqError:  # e.g. masks that are all field: nothing to learn a border from, not a failed run
            head = None
    if poses:
        from ..perception.place.builder import MapBuilder
        from ..perception.place.recognizer import PlaceRecognizer

        builder = MapBuilder(engine.fingerprint, {"facet_layer": engine.facet_layer, "aggregation": "vlad",
                                                  "size": list(engine.size), "patch_size": engine.patch_size,
                                                  "pca_dims": 0, "clusters": 16})
        for i, f in fitted.items():
            if poses[i] is not None:
                builder.add(f.value_facet, poses[i], i)
        place = PlaceRecognizer(builder.build(), engine.fingerprint, 5)
    return Pipeline(engine, place=place, field_head=head)


def _keypoint_scores(pipeline, results: dict, homography) -> dict:
    import cv2

    from ..metrics.repeatability import matching_accuracy, repeatability
    from ..perception.keypoints import detect

    repeats, matches = [], []
    for result in results.values():
        size = (result.frame.shape[1], result.frame.shape[0])
        warped = cv2.warpPerspective(result.frame, homography, size)
        a, b = result.keypoints, detect(warped, pipeline.engine.infer(warped).patch_tokens, pipeline.keypoint_config)
        repeats.append(repeatability(a.uv, b.uv, homography, size))
        matches.append(matching_accuracy(a.uv, a.descriptors, b.uv, b.descriptors, homography, size))
    return {"repeatability": float(np.nanmean(repeats)), "matching_accuracy": float(np.nanmean(matches)),
            "frames": len(results)}


def _field_scores(results: dict, masks: list) -> dict:
    from ..metrics.segmentation import boundary_f, iou

    rows = [(boundary_f(r.field_mask, masks[i]).f, iou(r.field_mask, masks[i]))
            for i, r in results.items() if masks[i] is not None]
    return {"boundary_f": float(np.mean([r[0] for r in rows])), "iou": float(np.mean([r[1] for r in rows])),
            "frames": len(rows)}


def _place_scores(db, results: dict, poses: list, threshold_m: float) -> tuple[dict, list]:
    from ..metrics.vpr import recall_at_k

    queries = [i for i in results if poses[i] is not None]
    top = [results[i].place.indices for i in queries]
    recall = recall_at_k(np.array([poses[i][:2] for i in queries]), db.poses[:, :2], np.array([t[:5] for t in top]),
                         ks=(1, 5), threshold_m=threshold_m)
    return ({"recall@1": recall[1], "recall@5": recall[5], "queries": len(queries), "map_places": len(db),
             "threshold_m": threshold_m}, [int(t[0]) for t in top])
