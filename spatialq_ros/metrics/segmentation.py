"""Field segmentation scores as the field-boundary benchmarks report them (Fields of The World, AI4Boundaries).

iou: pixel IoU. boundary_f: DAVIS boundary F, where a boundary pixel counts as found when the other mask's
boundary lies within a disk of radius ceil(0.008 * image diagonal). object_f1: instances (connected
components, or given labels) matched one-to-one at IoU > 0.5.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import SpatialqError

DAVIS_TOLERANCE = 0.008  # boundary tolerance as a fraction of the image diagonal


@dataclass(frozen=True)
class Scores:
    precision: float
    recall: float
    f: float


def binary(mask: np.ndarray, what: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2:
        raise SpatialqError(f"{what}: expected an (H, W) mask, got shape {mask.shape}")
    return mask > 0


def same_size(pred: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred, gt = binary(pred, "predicted mask"), binary(gt, "ground-truth mask")
    if pred.shape != gt.shape:
        raise SpatialqError(f"predicted mask {pred.shape[1]}x{pred.shape[0]} and ground-truth mask "
                            f"{gt.shape[1]}x{gt.shape[0]} differ in size")
    return pred, gt


def f_score(precision: float, recall: float) -> float:
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def iou(pred: np.ndarray, gt: np.ndarray) -> float:
    """Pixel IoU of two masks; 1.0 when both are empty (nothing to find, nothing found)."""
    pred, gt = same_size(pred, gt)
    union = np.logical_or(pred, gt).sum()
    return 1.0 if union == 0 else float(np.logical_and(pred, gt).sum() / union)


def boundary(mask: np.ndarray) -> np.ndarray:
    """Mask pixels with a 4-neighbour outside the mask; the image frame itself is no boundary."""
    inner = cv2.erode(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3)),
                      borderType=cv2.BORDER_REPLICATE)
    return mask & (inner == 0)


def disk(radius: int) -> np.ndarray:
    y, x = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (x * x + y * y <= radius * radius).astype(np.uint8)


def davis_tolerance(shape: tuple[int, int]) -> int:
    return math.ceil(DAVIS_TOLERANCE * math.hypot(shape[0], shape[1]))


def boundary_f(pred: np.ndarray, gt: np.ndarray, tolerance: int | None = None) -> Scores:
    """DAVIS boundary precision / recall / F; tolerance in pixels, default ceil(0.008 * diagonal)."""
    pred, gt = same_size(pred, gt)
    radius = davis_tolerance(pred.shape) if tolerance is None else int(tolerance)
    pred_edge, gt_edge = boundary(pred), boundary(gt)
    n_pred, n_gt = int(pred_edge.sum()), int(gt_edge.sum())
    if n_pred == 0 and n_gt == 0:
        return Scores(1.0, 1.0, 1.0)
    if n_pred == 0 or n_gt == 0:
        return Scores(float(n_pred == 0), float(n_gt == 0), 0.0)
    kernel = disk(radius)
    near_gt = cv2.dilate(gt_edge.astype(np.uint8), kernel) > 0
    near_pred = cv2.dilate(pred_edge.astype(np.uint8), kernel) > 0
    precision = float((pred_edge & near_gt).sum() / n_pred)
    recall = float((gt_edge & near_pred).sum() / n_gt)
    return Scores(precision, recall, f_score(precision, recall))


def instances(mask: np.ndarray, connectivity: int) -> np.ndarray:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=connectivity)[1]


def object_f1(pred: np.ndarray, gt: np.ndarray, iou_thresh: float = 0.5, connectivity: int = 4,
              labelled: bool = False) -> Scores:
    """Object precision / recall / F1: instances matched one-to-one, greedily by IoU, when IoU > iou_thresh.

    Binary masks are split into connected components (4-connectivity by default: two fields touching
    only at a corner are two fields); labelled=True takes integer instance labels (0 = background).
    """
    if labelled:
        pred_ids, gt_ids = np.asarray(pred), np.asarray(gt)
        if pred_ids.shape != gt_ids.shape or pred_ids.ndim != 2:
            raise SpatialqError(f"instance labels: shapes {pred_ids.shape} and {gt_ids.shape} must be the same (H, W)")
        if not (np.issubdtype(pred_ids.dtype, np.integer) and np.issubdtype(gt_ids.dtype, np.integer)):
            raise SpatialqError("instance labels: expected integer arrays (0 = background)")
        if pred_ids.min(initial=0) < 0 or gt_ids.min(initial=0) < 0:
            raise SpatialqError("instance labels: negative labels (0 = background, 1.. = instances)")
        pred_ids, gt_ids = compact(pred_ids), compact(gt_ids)
    else:
        if connectivity not in (4, 8):
            raise SpatialqError(f"connectivity {connectivity}: expected 4 or 8")
        pred_mask, gt_mask = same_size(pred, gt)
        pred_ids, gt_ids = instances(pred_mask, connectivity), instances(gt_mask, connectivity)
    n_pred, n_gt = int(pred_ids.max()), int(gt_ids.max())
    if n_pred == 0 and n_gt == 0:
        return Scores(1.0, 1.0, 1.0)
    if n_pred == 0 or n_gt == 0:
        return Scores(float(n_pred == 0), float(n_gt == 0), 0.0)
    area_pred = np.bincount(pred_ids.ravel(), minlength=n_pred + 1)
    area_gt = np.bincount(gt_ids.ravel(), minlength=n_gt + 1)
    both = (pred_ids > 0) & (gt_ids > 0)
    pairs, inter = np.unique(pred_ids[both].astype(np.int64) * (n_gt + 1) + gt_ids[both], return_counts=True)
    pair_pred, pair_gt = np.divmod(pairs, n_gt + 1)
    ious = inter / (area_pred[pair_pred] + area_gt[pair_gt] - inter)
    matched = 0
    used_pred, used_gt = np.zeros(n_pred + 1, bool), np.zeros(n_gt + 1, bool)
    for k in np.argsort(-ious, kind="stable"):
        if ious[k] <= iou_thresh:
            break
        i, j = pair_pred[k], pair_gt[k]
        if not used_pred[i] and not used_gt[j]:
            used_pred[i] = used_gt[j] = True
            matched += 1
    precision, recall = matched / n_pred, matched / n_gt
    return Scores(precision, recall, f_score(precision, recall))


def compact(labels: np.ndarray) -> np.ndarray:
    """Renumber instance labels to 0..n without gaps (0 stays background)."""
    values, inverse = np.unique(labels, return_inverse=True)
    if values[0] != 0:
        inverse = inverse + 1
    return inverse.reshape(labels.shape)
