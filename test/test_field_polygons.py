"""Mask -> polygons: holes stay holes, islands become fields, specks vanish, largest field first."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.perception.field import mask_polygons


def test_field_with_a_pond_is_one_polygon_with_one_hole():
    mask = np.zeros((200, 300), np.uint8)
    mask[20:180, 30:270] = 255  # field: 240 x 160
    cv2.circle(mask, (150, 100), 30, 0, -1)  # pond
    (field,) = mask_polygons(mask)
    assert len(field.holes) == 1
    x, y = field.exterior[:, 0], field.exterior[:, 1]
    assert (x.min(), x.max(), y.min(), y.max()) == (30, 269, 20, 179)  # pixel centres of the border pixels
    assert len(field.exterior) == 4  # a rectangle simplifies to its corners
    hole = field.holes[0]
    assert np.hypot(hole[:, 0] - 150, hole[:, 1] - 100).max() == pytest.approx(31, abs=1.5)
    pixel_area = np.count_nonzero(mask)
    assert field.area == pytest.approx(pixel_area, rel=0.03)
    assert field.exterior.dtype == np.float64 and field.exterior.shape[1] == 2


def test_island_in_a_hole_is_its_own_field_and_order_is_by_area():
    mask = np.zeros((200, 200), np.uint8)
    mask[10:190, 10:190] = 255
    mask[50:150, 50:150] = 0  # farmyard
    mask[80:120, 80:120] = 255  # a paddock inside the farmyard
    mask[5:8, 195:198] = 255  # a speck
    polygons = mask_polygons(mask, min_area=20)
    assert len(polygons) == 2
    big, island = polygons
    assert len(big.holes) == 1 and island.holes == []
    assert big.area > island.area
    assert island.area == pytest.approx(39 * 39, rel=1e-6)


def test_min_area_drops_small_fields_and_pinholes():
    mask = np.zeros((120, 120), np.uint8)
    mask[10:110, 10:110] = 255
    mask[50:53, 50:53] = 0  # pinhole
    mask[2:5, 2:5] = 255  # speck
    (field,) = mask_polygons(mask, min_area=50)
    assert field.holes == []
    everything = mask_polygons(mask, epsilon=0, min_area=0)
    assert len(everything) == 2 and len(everything[0].holes) == 1


def test_epsilon_trades_vertices_for_accuracy():
    mask = np.zeros((200, 200), np.uint8)
    cv2.circle(mask, (100, 100), 80, 255, -1)
    exact = mask_polygons(mask, epsilon=0)[0].exterior
    coarse = mask_polygons(mask, epsilon=4)[0].exterior
    assert len(coarse) < len(exact) / 10
    radius = np.hypot(coarse[:, 0] - 100, coarse[:, 1] - 100)
    assert np.abs(radius - 80).max() < 2  # vertices stay on the circle


def test_empty_mask_has_no_polygons_and_bad_input_is_refused():
    assert mask_polygons(np.zeros((50, 50), np.uint8)) == []
    with pytest.raises(SpatialqError, match="\\(H, W\\) array"):
        mask_polygons(np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(SpatialqError, match="must be >= 0"):
        mask_polygons(np.zeros((50, 50), np.uint8), epsilon=-1)
