"""The skeptic's baseline beside an artifact in `spatialq eval`: ORT's quantize_dynamic W8A8 of the artifact's own
fp32.onnx, on the same frames, both scored against that fp32.onnx. numpy and onnxruntime only.

The field head and the map of an eval were fitted on the artifact's features, so they would not be fair to the
baseline; the calibration report scores every head for each model on a head and map of its own.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import cv2
import numpy as np

from ..metrics.repeatability import matching_accuracy
from ..perception.keypoints import KeypointConfig, detect
from ..quant.job import DYNAMIC, label
from ..runtime.onnx_engine import OnnxEngine
from .baselines import int8_dynamic

DYNAMIC_LABEL = label(DYNAMIC)
METRICS = {"patch_cosine": "patch cosine", "cls_cosine": "CLS cosine", "nn_agreement": "patch NN agreement",
           "matching_accuracy": "descriptor matching"}


def _unit(x: np.ndarray) -> np.ndarray:
    x = x.reshape(-1, x.shape[-1]).astype(np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def nearest_other(tokens: np.ndarray) -> np.ndarray:
    """Each patch's nearest other patch of the same frame, by cosine."""
    unit = _unit(tokens)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -2.0)
    return similarity.argmax(axis=1)


class SkepticComparison:
    """The artifact's deployed graph and ORT's dynamic INT8 of its fp32.onnx, each against fp32.onnx."""

    def __init__(self, artifact: str | Path, keypoints: KeypointConfig) -> None:
        self.reference = OnnxEngine(artifact, "fp32")
        ours = OnnxEngine(artifact)
        self.ours = f"W4A8 artifact ({ours.graph} graph)"
        with tempfile.TemporaryDirectory() as work:  # the session keeps the graph in memory
            dynamic = int8_dynamic(Path(artifact) / "fp32.onnx", Path(work) / "dynamic.onnx")
            self.engines = {self.ours: ours, DYNAMIC_LABEL: OnnxEngine(artifact, DYNAMIC, path=dynamic)}
        self.keypoints = keypoints
        self.rows: dict[str, list[dict]] = {name: [] for name in self.engines}

    def add(self, rgb: np.ndarray, homography: np.ndarray) -> None:
        """One frame, and the frame warped by the homography for descriptor matching."""
        size = (rgb.shape[1], rgb.shape[0])
        warped = cv2.warpPerspective(rgb, homography, size)
        ref = self.reference.infer(rgb)
        ref_nn = nearest_other(ref.patch_tokens)
        for name, engine in self.engines.items():
            out, out_warped = engine.infer(rgb), engine.infer(warped)
            a, b = detect(rgb, out.patch_tokens, self.keypoints), detect(warped, out_warped.patch_tokens, self.keypoints)
            self.rows[name].append({
                "patch_cosine": float(np.mean(np.sum(_unit(out.patch_tokens) * _unit(ref.patch_tokens), axis=1))),
                "cls_cosine": float(np.sum(_unit(out.cls_token[None]) * _unit(ref.cls_token[None]))),
                "nn_agreement": float(np.mean(nearest_other(out.patch_tokens) == ref_nn)),
                "matching_accuracy": matching_accuracy(a.uv, a.descriptors, b.uv, b.descriptors, homography, size)})

    def summary(self) -> dict:
        """Mean of each metric per model, the frames scored, and the metrics where ours is not ahead."""
        means = {name: {m: float(np.nanmean([r[m] for r in rows])) if rows else float("nan") for m in METRICS}
                 for name, rows in self.rows.items()}
        mine, theirs = means[self.ours], means[DYNAMIC_LABEL]
        behind = [(METRICS[m], mine[m], theirs[m]) for m in METRICS
                  if np.isfinite(mine[m]) and np.isfinite(theirs[m]) and mine[m] <= theirs[m]]
        return {"models": means, "frames": len(self.rows[self.ours]), "ours": self.ours,
                "not_ahead": {DYNAMIC_LABEL: behind}}


def summary_markdown(summary: dict) -> list[str]:
    lines = ["## Against ORT quantize_dynamic", "",
             f"Both against the artifact's fp32.onnx on {summary['frames']} frames (every 5th); descriptor matching "
             "under the keypoint homography. The baseline's field head and map would have to be its own: the "
             "calibration report scores those.", "",
             "| model | " + " | ".join(METRICS.values()) + " |", "| --- " * (len(METRICS) + 1) + "|"]
    for name, scores in summary["models"].items():
        lines.append(f"| {name} | " + " | ".join(f"{scores[m]:.4f}" for m in METRICS) + " |")
    for other, rows in summary["not_ahead"].items():
        lines += ["", f"**The artifact is not ahead of {other} on: "
                  + "; ".join(f"{metric} {a:.3f} vs {b:.3f}" for metric, a, b in rows) + ".**" if rows
                  else f"The artifact is ahead of {other} on every metric above."]
    return lines + [""]
