"""Field heads on synthetic token grids: prototype (Swiss-DINO threshold) and linear, their files, bad input."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.perception.field import fit_linear_head, fit_prototype_head, load_head, save_head
from spatialq_ros.perception.field.references import patch_fractions

DIM = 96
GRID = (16, 20)  # (h, w) patch grid of a 280x224 frame
SIZE = (280, 224)
FIELD_TOKEN, SOIL_TOKEN = (v / np.linalg.norm(v) for v in np.random.default_rng(100).normal(size=(2, DIM)))


def field_mask(x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
    mask = np.zeros((GRID[0] * 14, GRID[1] * 14), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return mask


def tokens_for(mask: np.ndarray, seed: int, noise: float = 0.5) -> np.ndarray:
    """A patch looks like the class covering most of it, plus isotropic noise (as ViT tokens near borders)."""
    majority = (patch_fractions(mask, GRID) >= 0.5)[..., None]
    noise_vectors = np.random.default_rng(seed).normal(0, noise / np.sqrt(DIM), (*GRID, DIM))
    return (np.where(majority, FIELD_TOKEN, SOIL_TOKEN) + noise_vectors).astype(np.float32)


REF_MASK = field_mask(40, 30, 200, 170)
REFERENCE = (tokens_for(REF_MASK, 1), REF_MASK)
QUERY_MASK = field_mask(100, 60, 270, 220)
QUERY = tokens_for(QUERY_MASK, 2)
QUERY_TRUTH = patch_fractions(QUERY_MASK, GRID) >= 0.5


def accuracy(logits: np.ndarray) -> float:
    return float(((logits > 0) == QUERY_TRUTH).mean())


def recall_and_false_alarms(logits: np.ndarray) -> tuple[float, float]:
    field = logits > 0
    return float(field[QUERY_TRUTH].mean()), float(field[~QUERY_TRUTH].mean())


def test_prototype_is_unit_mean_of_field_tokens_and_tau_follows_the_percentile_rule():
    head = fit_prototype_head([REFERENCE], "fp-test", SIZE)
    tokens = REFERENCE[0].reshape(-1, DIM)
    unit = tokens / np.linalg.norm(tokens, axis=1, keepdims=True)
    inside = (patch_fractions(REF_MASK, GRID) >= 0.5).ravel()
    mean = unit[inside].mean(axis=0)
    np.testing.assert_allclose(head.weights[0], mean / np.linalg.norm(mean), atol=1e-6)
    cos = unit @ head.weights[0]
    tau = max(np.percentile(cos[~inside], 95), np.percentile(cos[inside], 5))
    assert head.threshold == pytest.approx(tau, abs=1e-6)
    assert head.kind == "prototype" and head.dim == DIM
    logits = head.logits(REFERENCE[0]).ravel()
    np.testing.assert_array_equal(logits > 0, cos > head.threshold)  # the scales never move the decision
    assert np.median(logits[inside & (logits > 0)]) == pytest.approx(4.0, rel=1e-3)
    assert np.median(logits[~inside & (logits < 0)]) == pytest.approx(-4.0, rel=1e-3)


def test_prototype_head_keeps_most_field_and_rejects_soil_on_a_new_view():
    """tau = max(P95 soil, P5 field): ~95 % of field kept; soil passes only in the overlap of the tails."""
    head = fit_prototype_head([REFERENCE], "fp-test", SIZE)
    recall, false_alarms = recall_and_false_alarms(head.logits(QUERY))
    assert recall > 0.85 and false_alarms < 0.02


def test_prototype_per_reference_keeps_one_prototype_per_view():
    other_mask = field_mask(0, 0, 120, 100)
    second = (tokens_for(other_mask, 3), other_mask)
    assert fit_prototype_head([REFERENCE, second], "fp", SIZE).weights.shape == (1, DIM)
    head = fit_prototype_head([REFERENCE, second], "fp", SIZE, per_reference=True)
    assert head.weights.shape == (2, DIM)
    np.testing.assert_allclose(np.linalg.norm(head.weights, axis=1), 1, atol=1e-6)
    recall, false_alarms = recall_and_false_alarms(head.logits(QUERY))
    assert recall > 0.85 and false_alarms < 0.02


def test_linear_head_is_accurate_and_deterministic():
    head = fit_linear_head([REFERENCE], "fp-test", SIZE)
    again = fit_linear_head([REFERENCE], "fp-test", SIZE)
    assert head.kind == "linear" and head.threshold == 0 and head.weights.shape == (1, DIM)
    np.testing.assert_array_equal(head.weights, again.weights)
    assert head.bias == again.bias
    assert accuracy(head.logits(QUERY)) > 0.97


def test_class_balancing_matters_when_the_field_is_small():
    small = field_mask(98, 98, 140, 140)  # 3x3 cells of field among 320
    reference = (tokens_for(small, 4, noise=1.5), small)
    balanced = fit_linear_head([reference], "fp", SIZE, balanced=True)
    plain = fit_linear_head([reference], "fp", SIZE, balanced=False)
    mean_field_logit = lambda head: head.logits(QUERY)[QUERY_TRUTH].mean()  # noqa: E731
    assert mean_field_logit(balanced) > mean_field_logit(plain)


def test_weight_decay_shrinks_the_weights():
    loose = fit_linear_head([REFERENCE], "fp", SIZE, weight_decay=1e-4)
    tight = fit_linear_head([REFERENCE], "fp", SIZE, weight_decay=1.0)
    assert np.linalg.norm(tight.weights) < 0.5 * np.linalg.norm(loose.weights)


@pytest.mark.parametrize("fit", [fit_prototype_head, fit_linear_head])
def test_head_file_round_trip_keeps_logits_and_metadata(tmp_path, fit):
    head = fit([REFERENCE], "dinov2_vits14/w4a8/abc123", SIZE)
    path = tmp_path / "field.npz"
    save_head(path, head)
    loaded = load_head(path)
    assert (loaded.kind, loaded.dim, loaded.fingerprint, loaded.size) == (head.kind, DIM, head.fingerprint, SIZE)
    assert (loaded.bias, loaded.threshold) == (head.bias, head.threshold)
    assert (loaded.scale_above, loaded.scale_below) == (head.scale_above, head.scale_below)
    np.testing.assert_array_equal(loaded.logits(QUERY), head.logits(QUERY))
    assert str(path) in loaded.name
    assert os.listdir(tmp_path) == ["field.npz"]  # no temp file left behind


def test_wrong_token_dimension_names_the_head_file(tmp_path):
    path = tmp_path / "field.npz"
    save_head(path, fit_prototype_head([REFERENCE], "fp", SIZE))
    head = load_head(path)
    with pytest.raises(SpatialqError, match=rf"field head {path} expects C={DIM} tokens, got C=384"):
        head.logits(np.zeros((*GRID, 384), np.float32))
    with pytest.raises(SpatialqError, match="expects a \\(h, w, C\\) token grid"):
        head.logits(np.zeros((10, DIM), np.float32))


def test_require_backbone_rejects_another_fingerprint_or_size():
    head = fit_prototype_head([REFERENCE], "fp-a", SIZE)
    head.require_backbone("fp-a", SIZE)
    with pytest.raises(SpatialqError, match="fitted on backbone 'fp-a', not 'fp-b'"):
        head.require_backbone("fp-b", SIZE)
    with pytest.raises(SpatialqError, match="fitted at 280x224, not 448x448"):
        head.require_backbone("fp-a", (448, 448))


@pytest.mark.parametrize("fit", [fit_prototype_head, fit_linear_head])
def test_bad_references_raise_one_line_errors(fit):
    tokens = REFERENCE[0]
    with pytest.raises(SpatialqError, match="reference 0 mask is empty"):
        fit([(tokens, np.zeros_like(REF_MASK))], "fp", SIZE)
    with pytest.raises(SpatialqError, match="need some background"):
        fit([(tokens, np.full_like(REF_MASK, 255))], "fp", SIZE)
    with pytest.raises(SpatialqError, match="aspect .* does not match the 20x16 patch grid"):
        fit([(tokens, REF_MASK[:, :100])], "fp", SIZE)
    with pytest.raises(SpatialqError, match="smaller than the 20x16 patch grid"):
        fit([(tokens, np.ones((8, 10), np.uint8))], "fp", SIZE)
    with pytest.raises(SpatialqError, match="single-channel"):
        fit([(tokens, np.dstack([REF_MASK] * 3))], "fp", SIZE)
    with pytest.raises(SpatialqError, match="reference 1: tokens have C=32, reference 0 has C=96"):
        fit([REFERENCE, (tokens[..., :32], REF_MASK)], "fp", SIZE)
    with pytest.raises(SpatialqError, match="no reference"):
        fit([], "fp", SIZE)
    bad = tokens.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(SpatialqError, match="NaN"):
        fit([(bad, REF_MASK)], "fp", SIZE)


def test_bad_head_files_are_refused(tmp_path):
    with pytest.raises(SpatialqError, match="no such field head file"):
        load_head(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file")
    with pytest.raises(SpatialqError, match="not a readable field head file"):
        load_head(garbage)
    other = tmp_path / "other.npz"
    np.savez(other, weights=np.zeros((1, 4)))
    with pytest.raises(SpatialqError, match="field head file"):
        load_head(other)
    newer = tmp_path / "newer.npz"
    np.savez(newer, header=np.array('{"format": "spatialq-field-head", "version": 99}'), weights=np.zeros((1, 4)))
    with pytest.raises(SpatialqError, match="version 99, this spatialq reads 1"):
        load_head(newer)
    mismatched = tmp_path / "mismatched.npz"
    head = fit_linear_head([REFERENCE], "fp", SIZE)
    save_head(mismatched, head)
    with np.load(mismatched) as data:
        header = str(data["header"]).replace(f'"dim": {DIM}', '"dim": 50')
    np.savez(mismatched, header=np.array(header), weights=head.weights)
    with pytest.raises(SpatialqError, match="do not fit a linear head of dim 50"):
        load_head(mismatched)


def test_saving_into_a_missing_folder_fails_cleanly(tmp_path):
    head = fit_prototype_head([REFERENCE], "fp", SIZE)
    with pytest.raises(SpatialqError, match="does not exist"):
        save_head(tmp_path / "nope" / "field.npz", head)
    assert os.listdir(tmp_path) == []


def test_field_and_metrics_modules_load_without_torch():
    """The deploy path runs heads and metrics next to an ONNX/TensorRT engine, where torch is not installed."""
    code = ("import sys; import spatialq_ros.perception.field, spatialq_ros.metrics.erqa, "
            "spatialq_ros.metrics.segmentation; sys.exit('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
