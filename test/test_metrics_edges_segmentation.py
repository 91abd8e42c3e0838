"""Segmentation scores: pixel IoU, DAVIS boundary F, object F1 at IoU > 0.5, on masks with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.metrics.segmentation import boundary, boundary_f, davis_tolerance, iou, object_f1


def rectangle(shape=(200, 200), top=50, left=50, bottom=150, right=150) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    mask[top:bottom, left:right] = 255
    return mask


def test_iou_of_overlapping_rectangles():
    a, b = rectangle(), rectangle(left=100, right=200)  # 100x100 and 100x100 sharing 100x50
    assert iou(a, b) == pytest.approx(5000 / 15000)
    assert iou(a, a) == 1.0
    assert iou(a > 0, b.astype(bool)) == iou(a, b)  # bool and 0/255 alike
    assert iou(np.zeros((5, 5)), np.zeros((5, 5))) == 1.0
    assert iou(a, np.zeros_like(a)) == 0.0


def test_davis_tolerance_is_ceil_of_0_008_of_the_diagonal():
    assert davis_tolerance((448, 448)) == 6  # 0.008 * 633.6 = 5.07
    assert davis_tolerance((480, 854)) == 8  # DAVIS 480p: 0.008 * 979.6 = 7.84


def test_boundary_is_one_pixel_inside_and_ignores_the_image_frame():
    mask = rectangle((20, 20), 0, 0, 10, 20) > 0  # touches three sides of the image
    edge = boundary(mask)
    assert edge.sum() == 20 and edge[9].all()


@pytest.mark.parametrize("shift", [0, 3, 6])
def test_boundary_f_forgives_shifts_within_the_tolerance(shift):
    truth = rectangle((448, 448), 100, 100, 300, 300)
    scores = boundary_f(np.roll(truth, shift, axis=1), truth)
    assert scores.f == 1.0 and scores.precision == 1.0 and scores.recall == 1.0


def test_boundary_f_counts_what_lies_beyond_the_tolerance():
    truth = rectangle((448, 448), 100, 100, 300, 300)
    shifted = np.roll(truth, 10, axis=1)
    scores = boundary_f(shifted, truth)
    # left and right sides (200 px each) are 10 px off; top and bottom stay within 6 px except 4 px ends
    assert 0.45 < scores.precision < 0.55 and 0.45 < scores.recall < 0.55
    assert boundary_f(shifted, truth, tolerance=10).f == 1.0
    assert boundary_f(shifted, truth, tolerance=1).f < scores.f


def test_boundary_f_of_empty_masks():
    empty, truth = np.zeros((50, 50), np.uint8), rectangle((50, 50), 10, 10, 40, 40)
    assert boundary_f(empty, empty).f == 1.0
    missed = boundary_f(empty, truth)
    assert (missed.precision, missed.recall, missed.f) == (1.0, 0.0, 0.0)
    invented = boundary_f(truth, empty)
    assert (invented.precision, invented.recall, invented.f) == (0.0, 1.0, 0.0)


def test_object_f1_matches_components_at_iou_above_one_half():
    truth = np.zeros((100, 300), np.uint8)
    truth[10:90, 10:90] = 255  # field A
    truth[10:90, 110:190] = 255  # field B
    truth[10:90, 210:290] = 255  # field C
    pred = np.zeros_like(truth)
    pred[10:90, 15:95] = 255  # A, slightly shifted: IoU 0.88
    pred[10:50, 110:190] = 255  # half of B: IoU 0.5, not > 0.5
    pred[95:99, 0:300] = 255  # a strip nobody asked for
    scores = object_f1(pred, truth)
    assert scores.precision == pytest.approx(1 / 3) and scores.recall == pytest.approx(1 / 3)
    assert object_f1(pred, truth, iou_thresh=0.4).recall == pytest.approx(2 / 3)
    assert object_f1(truth, truth).f == 1.0


def test_object_f1_separates_corner_touching_fields_with_4_connectivity():
    truth = np.zeros((40, 40), np.uint8)
    truth[0:20, 0:20] = 255
    truth[20:40, 20:40] = 255  # touches the first field only at a corner
    pred = truth.copy()
    pred[20, 20:40] = pred[20:40, 20] = 0  # the same two fields, apart
    assert object_f1(pred, truth, connectivity=4).f == 1.0
    assert object_f1(pred, truth, connectivity=8).f == 0.0  # truth merges into one blob: IoU 0.5 each
    labels = np.zeros((40, 40), np.int32)
    labels[0:20, 0:20], labels[20:40, 20:40] = 7, 3
    assert object_f1(labels, labels, labelled=True).f == 1.0
    assert object_f1((labels > 0).astype(np.int32), labels, labelled=True).recall == 0.0


def test_object_f1_one_to_one_and_empty_cases():
    truth = rectangle((60, 60), 10, 10, 50, 50)
    labels = np.zeros((60, 60), np.int64)
    labels[10:50, 10:50] = 5
    assert object_f1(labels, labels, labelled=True).f == 1.0
    empty = np.zeros_like(truth)
    assert object_f1(empty, empty).f == 1.0
    assert object_f1(empty, truth).recall == 0.0
    assert object_f1(truth, empty).precision == 0.0


def test_bad_inputs_raise_one_line_errors():
    a = rectangle((100, 100))
    with pytest.raises(SpatialqError, match="predicted mask 90x100 and ground-truth mask 100x100 differ in size"):
        iou(a[:, :90], a)
    with pytest.raises(SpatialqError, match="differ in size"):
        boundary_f(a, a[:50])
    with pytest.raises(SpatialqError, match="expected an \\(H, W\\) mask"):
        object_f1(np.dstack([a] * 3), np.dstack([a] * 3))
    with pytest.raises(SpatialqError, match="connectivity 6"):
        object_f1(a, a, connectivity=6)
    with pytest.raises(SpatialqError, match="integer arrays"):
        object_f1(a.astype(float), a.astype(float), labelled=True)
    with pytest.raises(SpatialqError, match="negative"):
        object_f1(-np.ones((5, 5), int), np.ones((5, 5), int), labelled=True)
