"""Skip the backbone while the view stands still: reuse the last computed Features for near-identical frames.

A hovering drone or a stopped tractor sends the same view over and over, yet the backbone costs the same
for every frame. `CachedEngine` wraps any engine and decides per frame, for a fraction of a millisecond,
whether the view has changed since the frame whose features it last computed.

The change measure, in 8-bit grey levels:
  1. the frame is turned grey and shrunk (area filter) to a THUMB x THUMB thumbnail in float, so sensor
     noise averages out (at 224x224 each thumbnail pixel averages 49 pixels);
  2. structure: the thumbnail is scaled so that its mean is 128 (mid-grey), and the mean absolute
     difference to the key frame's scaled thumbnail is taken: grey levels of a mid-grey image, blind to
     a global gain. A 1 px shift of a 224 px wide farmland frame measures about 1.2 to 2, a view that
     moved by a few percent of its width 10 or more; fresh sensor noise (sigma 2) alone about 0.25, a
     simulated hover (centimetre jitter, drifting cloud shadows) 0.4 to 1;
  3. exposure: a global brightness change beyond FLICKER (3 %) from the key frame adds
     EXPOSURE_WEIGHT * 128 grey levels per unit of log brightness ratio beyond it. Frame-to-frame
     flicker (auto-exposure jitter of 1 to 2 %) so adds nothing, while a 5 % drift adds about 1.2 and
     a 10 % drift about 4. The weight is set so that equal grey levels cost about equal feature
     error: on the seeded (untrained) ViT-S/14 at 224x224, a 5 % gain change and a 1 px shift both
     give a patch cosine of about 0.99, a 10 % change and a 3 px shift about 0.97-0.98 (alike for its
     FP32 and W4A8 graphs). Trained DINOv2, trained with colour jitter, should be less sensitive to
     exposure, so the weight errs on the safe side.
Frames are compared with the *key frame* (the last frame the engine actually ran on), not with the
previous frame, so slow drift (clouds, exposure, a creeping vehicle) cannot pile up below the threshold.
After `max_reuse` consecutive hits the engine runs anyway, bounding whatever the measure cannot see.

numpy and cv2 only, no torch: this runs on the deploy path next to the ONNX engine.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from ..errors import SpatialqError
from .engine import Engine, Features

DEFAULT_THRESHOLD = 2.0  # grey levels: about a 1 to 1.5 px shift at 224 px width, under 1/10 of a patch
DEFAULT_MAX_REUSE = 30  # frames: 3 s at 10 Hz
THUMB = 32  # thumbnail side in pixels
MID_GREY = 128.0
FLICKER = 0.03  # global brightness changes up to 3 % (log ratio) are exposure flicker and count nothing
EXPOSURE_WEIGHT = 0.5  # beyond that, half their size in mid-grey levels


def thumbnail(rgb: np.ndarray) -> tuple[np.ndarray, float]:
    """RGB uint8 (H, W, 3) -> (float32 (THUMB, THUMB) grey thumbnail scaled to mean MID_GREY, its mean before)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32)
    small = cv2.resize(grey, (THUMB, THUMB), interpolation=cv2.INTER_AREA)
    # a (near) black frame gets a large gain, so its noise reads as change: such frames are recomputed
    brightness = max(float(small.mean()), 1.0)
    return small * np.float32(MID_GREY / brightness), brightness


def change_between(a: tuple[np.ndarray, float], b: tuple[np.ndarray, float]) -> float:
    """Change in grey levels between two `thumbnail` results: structure plus weighted exposure."""
    structure = float(np.abs(a[0] - b[0]).mean())
    exposure = max(abs(math.log(a[1] / b[1])) - FLICKER, 0.0)
    return structure + EXPOSURE_WEIGHT * MID_GREY * exposure


def frame_change(a: np.ndarray, b: np.ndarray) -> float:
    """Change between two RGB uint8 frames in grey levels (see the module docstring)."""
    return change_between(thumbnail(a), thumbnail(b))


def check_threshold(threshold: float) -> float:
    """A finite number >= 0 of grey levels (0 switches the cache off), else a one-line SpatialqError."""
    try:
        value = float(threshold)
    except (TypeError, ValueError):
        raise SpatialqError(f"frame cache threshold {threshold!r}: expected a number of grey levels") from None
    if not math.isfinite(value) or value < 0:
        raise SpatialqError(f"frame cache threshold {threshold!r}: must be a finite number >= 0 "
                            "(grey levels; 0 switches the cache off)")
    return value


class CachedEngine:
    """An Engine that returns the key frame's Features while a frame changed by <= `threshold` from it.

    threshold: grey levels (module docstring); 0 disables the cache, every frame runs the engine.
    max_reuse: at most this many consecutive frames are served from one key frame, then the engine runs.
    Counters for diagnostics: `hits`, `misses`, `last_hit`, and `last_change` (grey levels vs the key
    frame, None when there was nothing to compare with). A hit returns the very Features object computed
    for the key frame: treat it as read-only.
    """

    def __init__(self, engine: Engine, threshold: float = DEFAULT_THRESHOLD,
                 max_reuse: int = DEFAULT_MAX_REUSE) -> None:
        self.engine = engine
        self.threshold = check_threshold(threshold)
        if isinstance(max_reuse, bool) or not isinstance(max_reuse, (int, np.integer)) or max_reuse < 1:
            raise SpatialqError(f"frame cache max_reuse {max_reuse!r}: must be a whole number of frames >= 1")
        self.max_reuse = int(max_reuse)
        self.hits = 0
        self.misses = 0
        self.last_hit = False
        self.last_change: float | None = None
        self._key: tuple[np.ndarray, float] | None = None  # key frame thumbnail and brightness
        self._key_shape: tuple[int, ...] | None = None
        self._features: Features | None = None
        self._reused = 0  # hits since the key frame

    @property
    def size(self) -> tuple[int, int]:
        return self.engine.size

    @property
    def patch_size(self) -> int:
        return self.engine.patch_size

    @property
    def fingerprint(self) -> str:
        return self.engine.fingerprint

    @property
    def trained(self) -> bool:
        return self.engine.trained

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def reset(self) -> None:
        """Forget the key frame (e.g. after a camera or engine switch); the counters stay."""
        self._key = self._key_shape = self._features = None
        self._reused = 0

    def infer(self, rgb: np.ndarray) -> Features:
        if not self.enabled:
            return self._run(rgb, None)
        if not isinstance(rgb, np.ndarray) or rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            got = f"{rgb.dtype} {rgb.shape}" if isinstance(rgb, np.ndarray) else type(rgb).__name__
            raise SpatialqError(f"expected an RGB uint8 image (H, W, 3), got {got}")
        thumb = thumbnail(rgb)
        comparable = self._key is not None and rgb.shape == self._key_shape
        self.last_change = change_between(thumb, self._key) if comparable else None
        if comparable and self._reused < self.max_reuse and self.last_change <= self.threshold:
            self._reused += 1
            self.hits += 1
            self.last_hit = True
            return self._features
        return self._run(rgb, thumb)

    def _run(self, rgb: np.ndarray, thumb: tuple[np.ndarray, float] | None) -> Features:
        features = self.engine.infer(rgb)
        self.misses += 1
        self.last_hit = False
        if thumb is not None:
            self._key, self._key_shape, self._features, self._reused = thumb, rgb.shape, features, 0
        return features
