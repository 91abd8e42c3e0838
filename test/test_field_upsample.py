"""Edge-aware upsampling of patch logits: the key claim is that the RGB frame puts the border back where a
14 px patch grid cannot: guided (and joint bilateral) beat bilinear on boundary F when field borders run
through the middle of patch cells."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.metrics.segmentation import boundary_f, iou
from spatialq_ros.perception.field import field_mask, fit_linear_head, fit_prototype_head, upsample
from spatialq_ros.perception.field.references import patch_fractions
from spatialq_ros.perception.field.upsample import box, guided_filter

PATCH, SIDE, DIM = 14, 448, 384
GRID = (SIDE // PATCH, SIDE // PATCH)
# Colours of about equal brightness: only the colour guide can see the border (as green crop vs brown soil).
FIELD_RGB, SOIL_RGB = np.array([70, 140, 50]), np.array([150, 110, 70])
FIELD_TOKEN, SOIL_TOKEN = (v / np.linalg.norm(v) for v in np.random.default_rng(7).normal(size=(2, DIM)))


def farm_frame(corners: list[tuple[int, int]], seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A field polygon on soil: crop rows inside, sensor noise everywhere -> (RGB uint8, mask 0/255)."""
    rng = np.random.default_rng(seed)
    mask = np.zeros((SIDE, SIDE), np.uint8)
    cv2.fillPoly(mask, [np.array(corners, np.int32)], 255)
    inside = mask[..., None] > 0
    rows = 12 * np.sin(np.arange(SIDE) / 3.0)[:, None, None] * np.array([0.3, 1.0, 0.3])
    rgb = np.where(inside, FIELD_RGB + rows, SOIL_RGB) + rng.normal(0, 10, (SIDE, SIDE, 3))
    return np.clip(rgb, 0, 255).astype(np.uint8), mask


def tokens_for(mask: np.ndarray, seed: int) -> np.ndarray:
    """A patch token looks like whatever covers most of its cell, plus noise: a half-covered border cell
    is all field or all soil, so patch masks land on cell edges, up to half a cell off the border."""
    majority = (patch_fractions(mask, GRID) >= 0.5)[..., None]
    noise = np.random.default_rng(seed).normal(0, 0.6 / np.sqrt(DIM), (*GRID, DIM))
    return (np.where(majority, FIELD_TOKEN, SOIL_TOKEN) + noise).astype(np.float32)


def mid_cell(k: int) -> int:
    return PATCH * k + PATCH // 2


# Left, top and bottom borders run through the middle of patch cells; the right one is slanted.
QUERY_RGB, QUERY_MASK = farm_frame([(mid_cell(6), mid_cell(5)), (mid_cell(25), mid_cell(5)),
                                    (mid_cell(25) + 40, mid_cell(26)), (mid_cell(6), mid_cell(26))], seed=0)
REF_RGB, REF_MASK = farm_frame([(mid_cell(3), mid_cell(8)), (mid_cell(20), mid_cell(2)),
                                (mid_cell(28), mid_cell(22)), (mid_cell(9), mid_cell(29))], seed=1)


@pytest.fixture(scope="module", params=["prototype", "linear"])
def query_logits(request):
    fit = fit_prototype_head if request.param == "prototype" else fit_linear_head
    head = fit([(tokens_for(REF_MASK, 2), REF_MASK)], "synthetic", (SIDE, SIDE))
    return head.logits(tokens_for(QUERY_MASK, 3))


def scores(method: str, logits: np.ndarray) -> tuple[float, float, float]:
    mask = field_mask(logits, QUERY_RGB, method)
    return boundary_f(mask, QUERY_MASK).f, boundary_f(mask, QUERY_MASK, tolerance=2).f, iou(mask, QUERY_MASK)


def test_guided_beats_bilinear_on_boundary_f_when_borders_cross_mid_cell(query_logits):
    bilinear_f, bilinear_tight, bilinear_iou = scores("bilinear", query_logits)
    guided_f, guided_tight, guided_iou = scores("guided", query_logits)
    print(f"\nboundary F (DAVIS 6 px / 2 px), IoU: bilinear {bilinear_f:.3f} / {bilinear_tight:.3f}, "
          f"{bilinear_iou:.4f}; guided {guided_f:.3f} / {guided_tight:.3f}, {guided_iou:.4f}")
    assert guided_f > 0.95 and guided_f > bilinear_f + 0.2
    assert guided_tight > 0.85 and guided_tight > bilinear_tight + 0.3
    assert guided_iou > bilinear_iou


def test_joint_bilateral_also_beats_bilinear(query_logits):
    bilinear_f, bilinear_tight, _ = scores("bilinear", query_logits)
    joint_f, joint_tight, _ = scores("joint_bilateral", query_logits)
    print(f"\njoint bilateral boundary F {joint_f:.3f} / {joint_tight:.3f}")
    assert joint_f > 0.95 and joint_f > bilinear_f + 0.2
    assert joint_tight > 0.85 and joint_tight > bilinear_tight + 0.3


def test_guided_mask_of_a_448_frame_is_a_full_resolution_0_255_mask(query_logits):
    """Its time is the `field` stage of the replay report and /diagnostics, not a bound here."""
    mask = field_mask(query_logits, QUERY_RGB, "guided")
    assert mask.dtype == np.uint8 and mask.shape == (SIDE, SIDE) and set(np.unique(mask)) == {0, 255}


def test_guided_filter_keeps_constants_and_becomes_a_double_box_blur_when_eps_is_huge():
    rng = np.random.default_rng(0)
    guide = rng.random((60, 80, 3)).astype(np.float32)
    flat = np.full((60, 80), 0.3, np.float32)
    np.testing.assert_allclose(guided_filter(guide, flat, 5, 1e-3), 0.3, atol=1e-4)
    src = rng.random((60, 80)).astype(np.float32)
    (once,) = box([src], 5)
    (twice,) = box([once], 5)
    np.testing.assert_allclose(guided_filter(guide, src, 5, 1e6), twice, atol=1e-4)
    np.testing.assert_allclose(guided_filter(guide[..., 0], src, 5, 1e6), twice, atol=1e-4)


def test_self_guided_filter_smooths_noise_but_keeps_a_step():
    rng = np.random.default_rng(1)
    step = np.zeros((64, 64), np.float32)
    step[:, 32:] = 1
    noisy = step + rng.normal(0, 0.05, step.shape).astype(np.float32)
    for subsample in (1, 2):
        out = guided_filter(noisy, noisy, 6, 1e-2, subsample)
        assert np.abs(out - step)[:, :28].std() < 0.5 * 0.05  # flat parts: noise reduced
        assert out[:, 34].mean() - out[:, 29].mean() > 0.9  # the step stays sharp


def test_outputs_are_probabilities_at_frame_size():
    logits = np.random.default_rng(2).normal(0, 3, GRID).astype(np.float32)
    for method in ("guided", "joint_bilateral", "bilinear"):
        probability = upsample(logits, QUERY_RGB, method)
        assert probability.shape == (SIDE, SIDE) and probability.dtype == np.float32
        assert 0 <= probability.min() and probability.max() <= 1


def test_bad_inputs_raise_one_line_errors():
    logits = np.zeros(GRID, np.float32)
    with pytest.raises(SpatialqError, match="expected an \\(h, w\\) grid"):
        upsample(np.zeros((*GRID, 2)), QUERY_RGB)
    with pytest.raises(SpatialqError, match="RGB uint8"):
        upsample(logits, QUERY_RGB.astype(np.float32))
    with pytest.raises(SpatialqError, match="RGB uint8"):
        upsample(logits, QUERY_RGB[..., 0])
    with pytest.raises(SpatialqError, match="smaller than the 32x32 patch grid"):
        upsample(logits, QUERY_RGB[:20, :20])
    with pytest.raises(SpatialqError, match="method 'nearest'"):
        upsample(logits, QUERY_RGB, "nearest")
