"""Grid keypoints: one per cell at most, inside their cell, inside the frame, deterministic, fast."""

from __future__ import annotations


import cv2
import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.perception.keypoints import (KeypointConfig, dequantize_descriptors, detect,
                                               quantize_descriptors)

ALL = KeypointConfig(max_keypoints=10_000, nms_radius=0, threshold=0)


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
    assert 20 < len(kp) <= 8 * 10
    assert len(set(zip(kp.row.tolist(), kp.col.tolist()))) == len(kp)  # at most one per cell
    assert np.array_equal(kp.u // 14, kp.col) and np.array_equal(kp.v // 14, kp.row)  # inside its cell
    assert np.all((kp.u >= 0) & (kp.u < 140) & (kp.v >= 0) & (kp.v < 112))
    assert kp.u.dtype == kp.v.dtype == kp.score.dtype == kp.descriptors.dtype == np.float32
    assert np.all(np.diff(kp.score) <= 0)  # strongest first
    raw = tokens[kp.row, kp.col]
    assert np.allclose(kp.descriptors, raw / np.linalg.norm(raw, axis=1, keepdims=True), atol=1e-6)


def test_bit_identical_whatever_the_buffer_alignment():
    """SIMD code paths depend on where a buffer starts (cv2.magnitude did): copies at odd offsets must agree."""
    img = scene(seed=5)
    tokens = tokens_for(img)
    first = detect(img, tokens)
    for offset in range(1, 20, 3):
        buffer = np.empty(img.size + 32, np.uint8)
        moved = buffer[offset:offset + img.size].reshape(img.shape)
        moved[...] = img
        again = detect(moved, tokens.copy())
        for field in ("u", "v", "score", "row", "col", "descriptors"):
            assert np.array_equal(getattr(first, field), getattr(again, field)), (offset, field)


def test_candidate_is_the_strongest_smoothed_gradient_pixel_of_its_cell():
    img = scene(seed=2)
    kp = detect(img, tokens_for(img), ALL)
    grey = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY).astype(np.float32)
    blurred = cv2.GaussianBlur(grey, (0, 0), 1.0)
    strength = np.hypot(cv2.Sobel(blurred, cv2.CV_32F, 1, 0), cv2.Sobel(blurred, cv2.CV_32F, 0, 1))
    for u, v, r, c, s in zip(kp.u, kp.v, kp.row, kp.col, kp.score):
        cell = strength[r * 14:(r + 1) * 14, c * 14:(c + 1) * 14]
        peak = cell.max()
        assert abs(s - peak) <= 1e-3 * peak and abs(strength[int(v), int(u)] - peak) <= 1e-3 * peak
    assert len(kp) == int((strength.reshape(8, 14, 10, 14).max(axis=(1, 3)) > 0).sum())


def test_a_vertical_edge_gives_one_column_of_keypoints_on_the_edge():
    img = np.zeros((28, 42), np.uint8)
    img[:, 20:] = 200  # the edge lies in the middle column of cells, between pixels 19 and 20
    kp = detect(img, tokens_for(img), KeypointConfig(nms_radius=0))
    assert kp.col.tolist() == [1, 1] and np.all((kp.u == 19) | (kp.u == 20))


def test_top_k_and_threshold():
    img = scene(seed=3)
    tokens = tokens_for(img)
    every = detect(img, tokens, ALL)
    top7 = detect(img, tokens, KeypointConfig(max_keypoints=7, nms_radius=0, threshold=0))
    assert len(top7) == 7 and np.array_equal(top7.score, every.score[:7])
    cut = float(np.median(every.score))
    above = detect(img, tokens, KeypointConfig(max_keypoints=10_000, nms_radius=0, threshold=cut))
    assert len(above) == int((every.score > cut).sum()) and np.all(above.score > cut)
    assert len(detect(img, tokens, KeypointConfig(threshold=1e9))) == 0
    assert len(detect(np.full((28, 28), 77, np.uint8), np.ones((2, 2, 4), np.float32))) == 0  # flat: no keypoints


def greedy_nms_reference(u, v, score, radius):
    """Strongest first (ties: lower cell), drop anything within `radius` of something kept; plain loops."""
    order = sorted(range(len(u)), key=lambda i: (-score[i], i))
    kept = []
    for i in order:
        if all((u[i] - u[j]) ** 2 + (v[i] - v[j]) ** 2 > radius**2 for j in kept):
            kept.append(i)
    return kept


@pytest.mark.parametrize("radius", [3.0, 7.0, 14.0, 20.0, 30.0])
def test_nms_is_greedy_nms(radius):
    for seed in range(4):
        img = scene(seed=seed)
        tokens = tokens_for(img)
        every = detect(img, tokens, ALL)
        cell = (every.row * 10 + every.col).tolist()
        kept = greedy_nms_reference(every.u.tolist(), every.v.tolist(), every.score.tolist(), radius)
        expected = sorted(kept, key=lambda i: (-every.score[i], cell[i]))
        kp = detect(img, tokens, KeypointConfig(max_keypoints=10_000, nms_radius=radius, threshold=0))
        assert (kp.row * 10 + kp.col).tolist() == [cell[i] for i in expected]
        gaps = np.hypot(kp.u[:, None] - kp.u[None], kp.v[:, None] - kp.v[None]) + np.eye(len(kp)) * 1e9
        assert gaps.min() > radius


def test_subpixel_descriptors_interpolate_the_token_grid():
    img = scene(seed=4)
    tokens = np.zeros((8, 10, 2), np.float32)
    tokens[..., 0] = np.arange(10)[None, :]  # varies along x only
    tokens[..., 1] = 1.0
    kp = detect(img, tokens, KeypointConfig(nms_radius=0, subpixel_descriptors=True))
    x = np.clip((kp.u + 0.5) / 14 - 0.5, 0, 9)  # token c sits at pixel 14 c + 6.5
    expected = np.stack([x, np.ones_like(x)], 1)
    assert np.allclose(kp.descriptors, expected / np.linalg.norm(expected, axis=1, keepdims=True), atol=1e-6)
    assert np.array_equal(kp.u // 14, kp.col)


def test_wire_quantization_roundtrip():
    desc = np.random.default_rng(0).normal(size=(50, 384)).astype(np.float32)
    desc /= np.linalg.norm(desc, axis=1, keepdims=True)
    codes, scale = quantize_descriptors(desc)
    assert codes.dtype == np.int8 and isinstance(scale, float) and np.abs(codes).max() == 127
    assert np.abs(dequantize_descriptors(codes, scale) - desc).max() <= scale / 2 + 1e-7
    empty, one = quantize_descriptors(np.zeros((0, 384), np.float32))
    assert empty.shape == (0, 384) and one == 1.0


def test_bad_inputs_are_user_errors():
    with pytest.raises(SpatialqError, match="do not match"):
        detect(scene(), np.zeros((3, 3, 8), np.float32))
    with pytest.raises(SpatialqError, match="grid times the backbone's patch"):
        detect(np.zeros((100, 140, 3), np.uint8), np.zeros((7, 10, 8), np.float32))  # 140 = 10 x 14, 100 != 7 x 14
    with pytest.raises(SpatialqError, match=r"an \(h, w, D\) token grid"):
        detect(scene(), np.zeros((0, 3, 8), np.float32))
    with pytest.raises(SpatialqError, match="uint8"):
        detect(np.zeros((28, 28, 3), np.float32), np.zeros((2, 2, 8), np.float32))


def test_a_448_frame_gives_the_top_512_of_its_1024_cells():
    """Its time is the `keypoints` stage of the replay report and /diagnostics, not a bound here."""
    rng = np.random.default_rng(0)
    img = cv2.GaussianBlur(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8), (0, 0), 2)
    tokens = rng.normal(size=(32, 32, 384)).astype(np.float32)
    kp = detect(img, tokens)
    assert len(kp) == 512 and len(set(zip(kp.row.tolist(), kp.col.tolist()))) == 512
