"""Our ERQA equals the `erqa` package (pinned 1.1.x) on varied images."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spatialq_ros.metrics.erqa import erqa

reference_erqa = pytest.importorskip("erqa", reason="the erqa package is the reference (installed by make setup)")


def scene(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.full((96, 128, 3), 60, np.uint8)
    for _ in range(8):
        x, y = rng.integers(0, 110, 2)
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(img, (int(x), int(y)), (int(x) + int(rng.integers(8, 40)), int(y) + int(rng.integers(8, 40))),
                      colour, -1)
    cv2.line(img, (0, 90), (127, 5), (250, 250, 250), 2)
    return img


def variants(ref: np.ndarray, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    noisy = np.clip(ref.astype(int) + rng.normal(0, 25, ref.shape), 0, 255).astype(np.uint8)
    return [ref.copy(), cv2.GaussianBlur(ref, (5, 5), 1.5), np.roll(ref, (2, -1), axis=(0, 1)), noisy,
            cv2.resize(cv2.resize(ref, (32, 24)), (128, 96), interpolation=cv2.INTER_NEAREST),
            np.roll(cv2.GaussianBlur(ref, (3, 3), 0), (-3, 3), axis=(0, 1))]


@pytest.mark.parametrize("version", ["1.0", "1.1"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_reference_package(version, seed):
    ref = scene(seed)
    metric = reference_erqa.ERQA(version=version)
    for distorted in variants(ref, seed):
        assert abs(erqa(distorted, ref, version) - metric(distorted, ref)) <= 1e-6


def test_identical_is_one_blank_is_zero():
    ref = scene(5)
    assert erqa(ref, ref) == 1.0
    assert erqa(np.zeros_like(ref), ref) == 0.0


def test_versions_differ_on_doubled_edges():
    ref = np.zeros((40, 40, 3), np.uint8)
    ref[:, 20:] = 255
    wide = ref.copy()
    wide[:, 19] = 128  # a second edge beside the first
    assert erqa(wide, ref, "1.1") <= erqa(wide, ref, "1.0")


def test_bad_shapes():
    with pytest.raises(ValueError):
        erqa(np.zeros((4, 4, 3), np.uint8), np.zeros((4, 5, 3), np.uint8))
