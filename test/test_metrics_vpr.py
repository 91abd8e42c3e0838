"""Recall@K with a distance threshold, on constructed retrievals with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from spatialq_ros.metrics.vpr import recall_at_k

MAP = np.array([[0, 0], [100, 0], [200, 0], [300, 0], [400, 0], [500, 0]], float)
QUERIES = np.array([[5, 0], [195, 0], [310, 10], [480, 0]], float)
RETRIEVED = np.array([[0, 1, 2, 3, 4],  # right at rank 1
                      [1, 2, 3, 4, 5],  # right at rank 2
                      [0, 1, 2, 4, 3],  # right at rank 5 ((300, 0) is 14.1 m away)
                      [0, 1, 2, 3, 4]])  # (500, 0), 20 m away, never retrieved


def test_recall_counts_a_true_neighbour_within_the_first_k():
    assert recall_at_k(QUERIES, MAP, RETRIEVED, ks=(1, 2, 5), threshold_m=25) == {1: 0.25, 2: 0.5, 5: 0.75}


def test_queries_without_a_place_within_the_threshold_are_left_out():
    # at 10 m only the first two queries have a true neighbour in the map
    assert recall_at_k(QUERIES, MAP, RETRIEVED, ks=(1, 5), threshold_m=10) == {1: 0.5, 5: 1.0}
    far = recall_at_k(QUERIES + 1000, MAP, RETRIEVED, threshold_m=25)
    assert set(far) == {1, 5} and all(math.isnan(v) for v in far.values())


def test_padding_and_short_lists():
    padded = np.array([[-1, 0], [-1, -1]])  # FAISS pads with -1 when the map is smaller than k
    assert recall_at_k(QUERIES[:2], MAP, padded, ks=(1, 2, 5), threshold_m=25) == {1: 0.0, 2: 0.5, 5: 0.5}


def test_altitude_counts_when_positions_are_3d():
    map_3d = np.c_[MAP, np.zeros(len(MAP))]
    low, high = np.array([[5, 0, 0]], float), np.array([[5, 0, 40]], float)
    assert recall_at_k(low, map_3d, np.array([[0]]), ks=(1,), threshold_m=25) == {1: 1.0}
    assert math.isnan(recall_at_k(high, map_3d, np.array([[0]]), ks=(1,), threshold_m=25)[1])
    assert recall_at_k(high[:, :2], MAP, np.array([[0]]), ks=(1,), threshold_m=25) == {1: 1.0}


def test_shape_mistakes_are_refused():
    with pytest.raises(ValueError, match="positions"):
        recall_at_k(QUERIES, np.c_[MAP, MAP[:, :1]], RETRIEVED)
    with pytest.raises(ValueError, match="retrieved_indices"):
        recall_at_k(QUERIES, MAP, RETRIEVED[:2])
    with pytest.raises(ValueError, match="retrieved_indices"):
        recall_at_k(QUERIES, MAP, RETRIEVED + 3)
