"""Grid keypoints: one per cell at most, inside their cell, described by their cell's token."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.metrics.repeatability import repeatability
from spatialq_ros.perception.keypoints import (KeypointConfig, dequantize_descriptors, detect,
                                               quantize_descriptors)


def scene(h=112, w=140, seed=0):
    rng = np.random.default_rng(seed)
    img = np.full((h, w, 3), 90, np.uint8)
    for _ in range(25):
        x, y = (int(v) for v in rng.integers(0, (w - 10, h - 10)))
        cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 20)), y + int(rng.integers(4, 20))),
                      tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    return img


def tokens_for(img, d=16, seed=1):
    h, w = img.shape[0] // 14, img.shape[1] // 14
    return np.random.default_rng(seed).normal(size=(h, w, d)).astype(np.float32)


def test_invariants():
    img = scene()
    tokens = tokens_for(img)
    kp = detect(img, tokens, KeypointConfig(max_keypoints=1000, nms_radius=0))
    cells = set(zip(kp.row.tolist(), kp.col.tolist()))
    assert len(cells) == len(kp) and len(kp) <= 8 * 10
    assert np.all(kp.u // 14 == kp.col) and np.all(kp.v // 14 == kp.row)
    assert np.all((kp.u >= 0) & (kp.u < 140) & (kp.v >= 0) & (kp.v < 112))
    assert np.allclose(np.linalg.norm(kp.descriptors, axis=1), 1, atol=1e-5)
    raw = tokens[kp.row, kp.col]
    assert np.allclose(kp.descriptors, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)
    assert np.all(np.diff(np.round(kp.score, 3)) <= 0)
    again = detect(img, tokens, KeypointConfig(max_keypoints=1000, nms_radius=0))
    assert np.array_equal(again.u, kp.u) and np.array_equal(again.descriptors, kp.descriptors)


def test_keypoint_sits_on_the_strongest_edge_of_its_cell():
    img = np.zeros((28, 28, 3), np.uint8)
    img[:, 20:] = 255  # one vertical edge in the right column of cells
    kp = detect(img, tokens_for(img), KeypointConfig(nms_radius=0, threshold=1.0))
    assert set(kp.col.tolist()) == {1} and np.all(np.abs(kp.u - 19.5) <= 1.5)


def test_topk_threshold_and_nms():
    img = scene(seed=3)
    tokens = tokens_for(img)
    assert len(detect(img, tokens, KeypointConfig(max_keypoints=7))) == 7
    assert len(detect(img, tokens, KeypointConfig(threshold=1e9))) == 0
    kp = detect(img, tokens, KeypointConfig(max_keypoints=500, nms_radius=20))
    d = np.sqrt((kp.u[:, None] - kp.u[None]) ** 2 + (kp.v[:, None] - kp.v[None]) ** 2)
    assert (d + np.eye(len(kp)) * 1e9).min() >= 20


def test_subpixel_descriptors_interpolate_tokens():
    img = scene(seed=4)
    tokens = np.zeros((8, 10, 2), np.float32)
    tokens[..., 0] = np.arange(10)[None, :]  # varies along x only
    tokens[..., 1] = 1.0
    kp = detect(img, tokens, KeypointConfig(nms_radius=0, subpixel_descriptors=True))
    x = np.clip((kp.u + 0.5) / 14 - 0.5, 0, 9)
    expected = np.stack([x, np.ones_like(x)], 1)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    assert np.allclose(kp.descriptors, expected, atol=1e-5)


def test_wire_quantization_roundtrip():
    desc = np.random.default_rng(0).normal(size=(50, 384)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    codes, scale = quantize_descriptors(desc)
    assert codes.dtype == np.int8 and np.abs(dequantize_descriptors(codes, scale) - desc).max() <= scale / 2 + 1e-7


def test_mismatched_grid_is_an_error():
    with pytest.raises(SpatialqError, match="do not match"):
        detect(scene(), np.zeros((3, 3, 8), np.float32))


def test_repeatability_identity_and_shift():
    img = scene(seed=5)
    kp = detect(img, tokens_for(img), KeypointConfig(nms_radius=0))
    uv = np.c_[kp.u, kp.v]
    assert repeatability(uv, uv, np.eye(3), (140, 112)) == 1.0
    shifted = np.roll(img, 7, axis=1)
    kp2 = detect(shifted, tokens_for(shifted), KeypointConfig(nms_radius=0))
    h = np.array([[1, 0, 7], [0, 1, 0], [0, 0, 1]], float)
    good = repeatability(uv, np.c_[kp2.u, kp2.v], h, (140, 112))
    wrong = repeatability(uv, np.c_[kp2.u, kp2.v], np.eye(3), (140, 112))
    assert good > 0.5 and good > wrong + 0.1, (good, wrong)

