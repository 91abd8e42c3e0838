"""Where the mimicking loss must be sharp: edges of the FP32 feature map and corners of the frame.

w(h, w) = 1 + beta * |grad A| / mean + gamma * harris / mean, per patch cell. This is the product's
addition to GPLQ's PCA feature mimicking: corners, edges and field borders drive keypoints, VLAD
and the field head, so their tokens get the most weight.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch


def feature_edge_map(tokens: torch.Tensor) -> torch.Tensor:
    """(B, h, w, C) -> (B, h, w) gradient magnitude of the token map across the patch grid."""
    dx = torch.zeros_like(tokens[..., 0])
    dy = torch.zeros_like(tokens[..., 0])
    dx[:, :, 1:-1] = (tokens[:, :, 2:] - tokens[:, :, :-2]).norm(dim=-1) / 2
    dy[:, 1:-1] = (tokens[:, 2:] - tokens[:, :-2]).norm(dim=-1) / 2
    return torch.sqrt(dx**2 + dy**2)


def corner_map(rgb: np.ndarray, grid: tuple[int, int], patch: int) -> np.ndarray:
    """Strongest positive Harris response in each patch cell (the backbone's patch, px) of an RGB frame
    already at model size."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    harris = np.clip(cv2.cornerHarris(grey, 2, 3, 0.04), 0, None)
    h, w = grid
    return harris[: h * patch, : w * patch].reshape(h, patch, w, patch).max(axis=(1, 3))


def spatial_weights(tokens: torch.Tensor, corners: torch.Tensor, beta: float, gamma: float) -> torch.Tensor:
    edges = feature_edge_map(tokens)
    weight = 1 + beta * edges / edges.mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)
    return weight + gamma * corners / corners.mean(dim=(1, 2), keepdim=True).clamp_min(1e-8)
