"""Where the ground of one simulated frame appears in another: homographies from /odom and camera_info.

The simulated camera looks straight down over flat ground with the top of the image pointing along the
yaw, so each frame is an affine image of the ground plane, and any two frames are related by a 3x3
homography. Evaluation uses it for ground-truth correspondences (keypoint repeatability, revisits).
"""

from __future__ import annotations

import numpy as np


def yaw_of(quaternion: np.ndarray) -> float:
    """Yaw (radians, counter-clockwise from east) of an (x, y, z, w) quaternion."""
    x, y, z, w = quaternion
    return float(np.arctan2(2 * (w * z + x * y), 1 - 2 * (y * y + z * z)))


def ground_to_image(pose: np.ndarray, k: np.ndarray) -> np.ndarray:
    """3x3 map from ground (map metres, z = 0) to pixels, for a pose (x, y, z, qx, qy, qz, qw) as read_poses
    returns it and a camera matrix K."""
    x, y, z = pose[:3]
    yaw = yaw_of(pose[3:7])
    up = np.array([np.cos(yaw), np.sin(yaw)])
    right = np.array([np.sin(yaw), -np.cos(yaw)])
    fx, fy, cx, cy = k[0, 0] / z, k[1, 1] / z, k[0, 2], k[1, 2]
    centre = np.array([x, y])
    return np.array([[fx * right[0], fx * right[1], cx - fx * right @ centre],
                     [-fy * up[0], -fy * up[1], cy + fy * up @ centre],
                     [0.0, 0.0, 1.0]])


def frame_homography(pose_from: np.ndarray, pose_to: np.ndarray, k: np.ndarray) -> np.ndarray:
    """3x3 H with pixel_to ~ H @ pixel_from for the same ground point."""
    return ground_to_image(pose_to, k) @ np.linalg.inv(ground_to_image(pose_from, k))
