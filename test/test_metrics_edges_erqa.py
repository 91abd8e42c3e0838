"""ERQA: our implementation against the `erqa` package (1.1.x) on varied images, plus its own contract."""

from __future__ import annotations

import warnings

import cv2
import numpy as np
import pytest

from spatialq_ros.errors import SpatialqError
from spatialq_ros.metrics.erqa import erqa, match_edges


def shapes_image(seed: int, height: int = 96, width: int = 128) -> np.ndarray:
    """Random filled circles and rectangles: plenty of edges, corners and flat areas."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), rng.integers(0, 256, 3), np.uint8)
    for _ in range(12):
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        if rng.random() < 0.5:
            cv2.circle(image, (x, y), int(rng.integers(3, 30)), colour, -1)
        else:
            cv2.rectangle(image, (x, y), (int(rng.integers(0, width)), int(rng.integers(0, height))), colour, -1)
    return image


def distortions(reference: np.ndarray, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    small = cv2.resize(reference, (32, 24), interpolation=cv2.INTER_AREA)
    return {
        "identical": reference.copy(),
        "shifted": np.roll(reference, (int(rng.integers(-4, 5)), int(rng.integers(-4, 5))), axis=(0, 1)),
        "blurred": cv2.GaussianBlur(reference, (5, 5), 1.2),
        "noisy": np.clip(reference + rng.normal(0, 20, reference.shape), 0, 255).astype(np.uint8),
        "blank": np.zeros_like(reference),
        "jpeg": cv2.imdecode(cv2.imencode(".jpg", reference, [cv2.IMWRITE_JPEG_QUALITY, 15])[1], cv2.IMREAD_COLOR),
        "upscaled": cv2.resize(small, reference.shape[1::-1], interpolation=cv2.INTER_CUBIC),
        "random": rng.integers(0, 256, reference.shape, dtype=np.uint8),
    }


def package_score(distorted: np.ndarray, reference: np.ndarray, version: str) -> float:
    erqa_package = pytest.importorskip("erqa", reason="the erqa package (pip install --no-deps erqa) is the oracle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the package divides 0 by 0 when no edge matches
        return float(erqa_package.ERQA(version=version)(distorted, reference))


@pytest.mark.parametrize("version", ["1.1", "1.0"])
@pytest.mark.parametrize("seed", range(6))
def test_equal_to_the_erqa_package_on_colour_and_grey_images(seed, version):
    reference = shapes_image(seed)
    scores = set()
    for name, distorted in distortions(reference, seed).items():
        expected = package_score(distorted, reference, version)
        assert erqa(distorted, reference, version) == pytest.approx(expected, abs=1e-6), name
        grey, grey_reference = (cv2.cvtColor(x, cv2.COLOR_BGR2GRAY) for x in (distorted, reference))
        expected_grey = package_score(np.dstack([grey] * 3), np.dstack([grey_reference] * 3), version)
        assert erqa(grey, grey_reference, version) == pytest.approx(expected_grey, abs=1e-6), name
        scores.add(round(expected, 3))
    assert len(scores) >= 5  # the cases really differ


def test_version_1_1_matches_each_reference_edge_pixel_once():
    """A doubled edge (two parallel lines around one reference line): 1.0 counts both as found, 1.1 one."""
    reference_edges = np.zeros((20, 20), bool)
    reference_edges[:, 10] = True
    doubled = np.zeros((20, 20), bool)
    doubled[:, [9, 11]] = True
    matched, missed = match_edges(doubled, reference_edges, one_to_one=False)
    assert matched.sum() == 40 and missed.sum() == 20  # 1.0: missed = reference pixels not under a match
    matched, missed = match_edges(doubled, reference_edges, one_to_one=True)
    assert matched.sum() == 20 and missed.sum() == 0


def test_versions_differ_on_real_distortions():
    reference = shapes_image(0)
    differing = [name for name, distorted in distortions(reference, 0).items()
                 if erqa(distorted, reference, "1.0") != erqa(distorted, reference, "1.1")]
    assert differing


def test_no_matching_edge_scores_zero_where_the_package_gives_nan():
    reference = np.zeros((64, 64), np.uint8)
    reference[:, 10:] = 255
    distorted = np.zeros((64, 64), np.uint8)
    distorted[:, 50:] = 255
    assert erqa(distorted, reference) == 0.0
    assert np.isnan(package_score(np.dstack([distorted] * 3), np.dstack([reference] * 3), "1.1"))


def test_contract_without_the_package():
    reference = shapes_image(1)
    assert erqa(reference, reference) == 1.0
    assert erqa(np.roll(reference, (2, -3), axis=(0, 1)), reference) > 0.95  # the global shift search
    assert erqa(np.zeros_like(reference), reference) == 0.0
    assert erqa(np.zeros_like(reference), np.zeros_like(reference)) == 0.0  # no edges anywhere: as the package
    assert 0 < erqa(cv2.GaussianBlur(reference, (7, 7), 2), reference) < 0.9


def test_bad_input_raises_one_line_errors():
    image = shapes_image(0)
    with pytest.raises(SpatialqError, match="differ in shape"):
        erqa(image, image[:-1])
    with pytest.raises(SpatialqError, match="expected uint8"):
        erqa(image.astype(np.float32), image)
    with pytest.raises(SpatialqError, match="expected uint8"):
        erqa(np.dstack([image, image[..., :1]]), np.dstack([image, image[..., :1]]))
    with pytest.raises(SpatialqError, match="too small"):
        erqa(image[:5, :5], image[:5, :5])
    with pytest.raises(SpatialqError, match="ERQA version '2.0'"):
        erqa(image, image, version="2.0")
