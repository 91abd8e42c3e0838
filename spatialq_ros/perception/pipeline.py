"""One frame in, everything out: one backbone pass feeds keypoints, place recognition and the field head."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from ..backbone.preprocess import resize_rgb
from ..runtime.engine import Engine, Features
from ..runtime.frame_cache import CachedEngine
from .keypoints import KeypointConfig, Keypoints, detect
from .place.recognizer import PlaceMatch, PlaceRecognizer


@dataclass
class PipelineResult:
    frame: np.ndarray  # the RGB frame at backbone size; keypoint and mask coordinates refer to it
    features: Features
    keypoints: Keypoints | None = None
    place: PlaceMatch | None = None
    field_mask: np.ndarray | None = None  # (H, W) uint8 0/255
    polygons: list | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    reused: bool = False  # the frame cache served the features of an earlier, near-identical frame


class Pipeline:
    """Heads are optional: pass None to switch one off."""

    def __init__(self, engine: Engine, keypoints: KeypointConfig | None = KeypointConfig(),
                 place: PlaceRecognizer | None = None, field_head=None, upsample: str = "guided",
                 frame_cache: float = 0.0) -> None:
        """frame_cache: grey levels below which a frame reuses the last computed features (0: off)."""
        self.cache = CachedEngine(engine, frame_cache) if frame_cache > 0 else None
        self.engine = self.cache or engine
        self.keypoint_config = keypoints
        self.place = place
        self.field_head = field_head
        self.upsample = upsample
        if field_head is not None:
            field_head.require_backbone(engine.fingerprint, engine.size)

    def process(self, rgb: np.ndarray) -> PipelineResult:
        return self.heads(self.backbone(rgb))

    def backbone(self, rgb: np.ndarray) -> PipelineResult:
        """The first half of `process`: resize and one backbone pass (or the frame cache's reuse); no heads yet.
        A node runs it on a thread of its own, overlapping the previous frame's `heads` and publishing."""
        t = time.perf_counter()
        frame = resize_rgb(rgb, self.engine.size)
        features = self.engine.infer(frame)
        timings = {"backbone": _ms(t)}
        return PipelineResult(frame, features, timings_ms=timings, reused=bool(self.cache and self.cache.last_hit))

    def heads(self, result: PipelineResult) -> PipelineResult:
        """The second half of `process`: every head that is on, on `backbone`'s result (filled in and returned)."""
        frame, features, timings = result.frame, result.features, result.timings_ms
        if self.keypoint_config is not None:
            t = time.perf_counter()
            result.keypoints = detect(frame, features.patch_tokens, self.keypoint_config)
            timings["keypoints"] = _ms(t)
        if self.place is not None:
            t = time.perf_counter()
            result.place = self.place.match(features.value_facet)
            timings["place"] = _ms(t)
        if self.field_head is not None:
            from .field import field_mask, mask_polygons

            t = time.perf_counter()
            result.field_mask = field_mask(self.field_head.logits(features.patch_tokens), frame, self.upsample)
            result.polygons = mask_polygons(result.field_mask)
            timings["field"] = _ms(t)
        return result


def _ms(start: float) -> float:
    return 1000.0 * (time.perf_counter() - start)
