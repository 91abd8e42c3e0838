"""Keypoint repeatability under a known homography: constructed cases with known answers, then the detector."""

from __future__ import annotations

import math

import cv2
import numpy as np

from spatialq_ros.metrics.repeatability import WARP_DEG, WARP_SHIFT, known_homography, matching_accuracy, repeatability
from spatialq_ros.perception.keypoints import KeypointConfig, detect

SHIFT = 20  # px: 1 cell + 6 px, so the dots land at another offset inside their new cells


def translation(du, dv):
    return np.array([[1, 0, du], [0, 1, dv], [0, 0, 1]], float)


def test_identity_is_one_and_nothing_visible_is_nan():
    uv = np.random.default_rng(0).uniform(0, 100, (30, 2))
    assert repeatability(uv, uv, np.eye(3), (100, 100)) == 1.0
    assert repeatability(uv, uv, 2 * np.eye(3), (100, 100)) == 1.0  # a homography is defined up to scale
    assert math.isnan(repeatability(uv, uv, translation(500, 0), (100, 100)))
    assert repeatability(uv, np.zeros((0, 2)), np.eye(3), (100, 100)) == 0.0


def test_constructed_fraction_counts_only_what_both_frames_see():
    h = translation(5, -3)
    uv_a = np.array([[10, 10], [20, 30], [40, 50], [60, 20], [70, 70], [30, 80], [50, 40], [80, 60],
                     [97, 40], [50, 1]], float)  # the last two warp outside B (u > 99.5, v < -0.5)
    warped = uv_a[:8] + [5, -3]
    uv_b = np.vstack([warped[:6] + [[1, 1], [0, 2], [-2, 0], [0, 0], [2, -2], [0, 0]],  # within eps = 3
                      warped[6:] + [[4, 0], [0, -5]],  # too far
                      [[2, 90]]])  # warps back outside A: ignored
    assert repeatability(uv_a, uv_b, h, (100, 100), eps=3.0) == 6 / 8
    assert repeatability(uv_a, uv_b, h, (100, 100), eps=5.0) == 1.0


def test_rotation_with_exact_keypoints_is_one():
    h = np.vstack([cv2.getRotationMatrix2D((50, 50), 6.0, 1.0), [0, 0, 1]])
    uv_a = np.random.default_rng(1).uniform(5, 95, (40, 2))
    uv_b = (np.c_[uv_a, np.ones(40)] @ h.T)[:, :2]
    inside = np.all((uv_b >= -0.5) & (uv_b < 99.5), axis=1)
    assert repeatability(uv_a, uv_b[inside], h, (100, 100)) == 1.0


def dots(h=224, w=224, skip_every_other=False):
    """A bright 2x2 dot at offset (4, 4) of every cell (of every other cell, row-major, if asked)."""
    img = np.zeros((h, w), np.uint8)
    for n, (r, c) in enumerate((r, c) for r in range(0, h, 14) for c in range(0, w, 14)):
        if not (skip_every_other and n % 2):
            img[r + 4:r + 6, c + 4:c + 6] = 255
    return img


def test_detector_on_a_shifted_image_repeats_exactly_where_expected():
    tokens = np.ones((16, 16, 8), np.float32)
    config = KeypointConfig(max_keypoints=1000)
    img_a = dots()
    kp_a = detect(img_a, tokens, config)
    assert len(kp_a) == 256
    img_b = np.zeros_like(img_a)
    img_b[:, SHIFT:] = img_a[:, :-SHIFT]  # the camera moved left by SHIFT px
    kp_b = detect(img_b, tokens, config)
    h = translation(SHIFT, 0)
    assert repeatability(kp_a.uv, kp_b.uv, h, (224, 224)) == 1.0
    assert repeatability(kp_a.uv, kp_b.uv, np.eye(3), (224, 224)) == 0.0  # the wrong homography repeats nothing
    # every other dot gone in B: of the 15 cell columns A sees in B, 8 keep their dot in every row
    img_half = np.zeros_like(img_a)
    img_half[:, SHIFT:] = dots(skip_every_other=True)[:, :-SHIFT]
    kp_half = detect(img_half, tokens, config)
    visible = (kp_a.u + SHIFT) < 223.5
    kept_dot = (kp_a.row * 16 + kp_a.col) % 2 == 0
    assert visible.sum() == 15 * 16 and (visible & kept_dot).sum() == 8 * 16
    assert repeatability(kp_a.uv, kp_half.uv, h, (224, 224)) == 8 / 15


def test_matching_accuracy_counts_mutual_matches_that_land_where_the_homography_says():
    uv = np.array([[10.0, 10.0], [40.0, 12.0], [25.0, 40.0], [50.0, 50.0]])
    desc = np.eye(4, dtype=np.float32)
    shift = translation(5, -3)
    moved = uv + [5, -3]
    assert matching_accuracy(uv, desc, moved, desc, shift, (64, 64)) == 1.0
    swapped = desc[[1, 0, 2, 3]]  # two descriptors traded places: those two mutual matches land wrong
    assert matching_accuracy(uv, desc, moved, swapped, shift, (64, 64)) == 0.5
    far = translation(500, 0)  # nothing of A is visible in B
    assert math.isnan(matching_accuracy(uv, desc, moved, desc, far, (64, 64)))


def test_the_known_homography_is_opencvs_rotation_about_the_centre_then_the_shift():
    size = (126, 98)
    rotation = cv2.getRotationMatrix2D((size[0] / 2, size[1] / 2), WARP_DEG, 1.0)
    rotation[:, 2] += WARP_SHIFT
    assert np.allclose(known_homography(size), np.vstack([rotation, [0, 0, 1]]), atol=1e-12)
