"""ERQA (edge restoration quality, msu-video-group): F1 of Canny edges of a distorted image against a reference.

Steps, each chosen to reproduce the `erqa` package (version 1.1.x) exactly:
1. global alignment: the shift in [-3, 3]^2 with the lowest MSE between the overlapping crops (ties go to
   the first shift in row-major order); both images are cropped to that overlap;
2. Canny(100, 200) on each crop (colour images: OpenCV's multi-channel Canny, channels as given);
3. edge matching within +-1 px, zero offset first, then (0,-1), (0,1), (-1,0), ...; offsets wrap around
   the image (cyclic), as in the package. Version 1.1 lets each reference edge pixel be matched once
   (a doubled edge is penalised); 1.0 lets it match any number of distorted edge pixels;
4. F1 of the matches. Where both images have edges but none match, the package divides 0 by 0 and
   returns NaN; this returns 0.0.
"""

from __future__ import annotations

import cv2
import numpy as np

from ..errors import SpatialqError

VERSIONS = ("1.0", "1.1")
SHIFT_RANGE = 3
CANNY_LOW, CANNY_HIGH = 100, 200
MATCH_OFFSETS = [(dy, dx) for dy in (0, -1, 1) for dx in (0, -1, 1)]  # zero offset first


def erqa(distorted: np.ndarray, reference: np.ndarray, version: str = "1.1") -> float:
    """ERQA score in [0, 1] of uint8 images, grey (H, W) or colour (H, W, 3); 1 = every edge restored."""
    if version not in VERSIONS:
        raise SpatialqError(f"ERQA version {version!r}: expected one of {', '.join(VERSIONS)}")
    distorted, reference = checked_pair(distorted, reference)
    distorted, reference = align(distorted, reference)
    edges = cv2.Canny(np.ascontiguousarray(distorted), CANNY_LOW, CANNY_HIGH) > 0
    reference_edges = cv2.Canny(np.ascontiguousarray(reference), CANNY_LOW, CANNY_HIGH) > 0
    matched, missed = match_edges(edges, reference_edges, one_to_one=version == "1.1")
    true_pos = int(matched.sum())
    false_pos = int(edges.sum()) - true_pos
    false_neg = int(missed.sum())
    if true_pos == 0:
        return 0.0
    precision = true_pos / (true_pos + false_pos)
    recall = true_pos / (true_pos + false_neg)
    return 2 * precision * recall / (precision + recall)


def checked_pair(distorted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    images = []
    for name, image in (("distorted", distorted), ("reference", reference)):
        image = np.asarray(image)
        if image.ndim == 3 and image.shape[2] == 1:
            image = image[..., 0]
        if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
            raise SpatialqError(f"ERQA {name} image: expected uint8 grey (H, W) or colour (H, W, 3), "
                                f"got {image.dtype} {image.shape}")
        if min(image.shape[:2]) <= 2 * SHIFT_RANGE:
            raise SpatialqError(f"ERQA {name} image: {image.shape[1]}x{image.shape[0]} is too small "
                                f"(the shift search needs sides > {2 * SHIFT_RANGE})")
        images.append(image)
    if images[0].shape != images[1].shape:
        raise SpatialqError(f"ERQA: distorted image {images[0].shape} and reference {images[1].shape} differ in shape")
    return images[0], images[1]


def overlap(shift: int, length: int) -> tuple[slice, slice]:
    """Slices of (distorted, reference) along one axis so that distorted[i + shift] faces reference[i]."""
    if shift >= 0:
        return slice(shift, length), slice(0, length - shift)
    return slice(0, length + shift), slice(-shift, length)


def align(distorted: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Crop both images to the overlap of the shift with the lowest MSE (exact: integer squared errors)."""
    height, width = distorted.shape[:2]
    d, r = distorted.astype(np.int32), reference.astype(np.int32)
    best, best_mse = (0, 0), np.inf
    for dy in range(-SHIFT_RANGE, SHIFT_RANGE + 1):
        rows_d, rows_r = overlap(dy, height)
        for dx in range(-SHIFT_RANGE, SHIFT_RANGE + 1):
            cols_d, cols_r = overlap(dx, width)
            diff = d[rows_d, cols_d] - r[rows_r, cols_r]
            mse = int(np.square(diff).sum(dtype=np.int64)) / diff.size
            if mse < best_mse:
                best, best_mse = (dy, dx), mse
    (rows_d, rows_r), (cols_d, cols_r) = overlap(best[0], height), overlap(best[1], width)
    return distorted[rows_d, cols_d], reference[rows_r, cols_r]


def match_edges(edges: np.ndarray, reference_edges: np.ndarray, one_to_one: bool) -> tuple[np.ndarray, np.ndarray]:
    """-> (distorted edge pixels with a reference edge within +-1 px, reference edge pixels left unmatched)."""
    matched = np.zeros_like(edges)
    free = reference_edges.copy()
    for dy, dx in MATCH_OFFSETS:
        candidates = np.roll(free if one_to_one else reference_edges, (dy, dx), axis=(0, 1))
        new = edges & candidates & ~matched
        matched |= new
        if one_to_one:
            free &= ~np.roll(new, (-dy, -dx), axis=(0, 1))
    missed = free if one_to_one else reference_edges & ~matched
    return matched, missed
