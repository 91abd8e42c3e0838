"""ROS 2 messages of a simulated flight, built with the rosbags type store (no ROS install needed)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from rosbags.typesys import Stores, get_typestore

from .flight import Pose, focal_px

TYPESTORE = get_typestore(Stores.ROS2_HUMBLE)
T = TYPESTORE.types


def header(ns: int, frame_id: str) -> Any:
    stamp = T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)
    return T["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id)


def image_msg(ns: int, frame_id: str, pixels: np.ndarray) -> Any:
    """rgb8 for (H, W, 3), mono8 for (H, W); rows unpadded."""
    encoding, channels = ("rgb8", 3) if pixels.ndim == 3 else ("mono8", 1)
    h, w = pixels.shape[:2]
    return T["sensor_msgs/msg/Image"](header=header(ns, frame_id), height=h, width=w, encoding=encoding,
                                      is_bigendian=0, step=w * channels,
                                      data=np.ascontiguousarray(pixels, np.uint8).reshape(-1))


def compressed_msg(ns: int, frame_id: str, rgb: np.ndarray, quality: int = 90) -> Any:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not encode a JPEG")
    return T["sensor_msgs/msg/CompressedImage"](header=header(ns, frame_id), format="jpeg", data=data.reshape(-1))


def camera_info(ns: int, frame_id: str, size: tuple[int, int]) -> Any:
    """Pinhole intrinsics that reproduce the renderer's ground resolution (altitude / focal)."""
    width, height = size
    f, cx, cy = focal_px(width), (width - 1) / 2, (height - 1) / 2
    return T["sensor_msgs/msg/CameraInfo"](
        header=header(ns, frame_id), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array([f, 0.0, cx, 0.0, f, cy, 0.0, 0.0, 1.0]), r=np.eye(3).reshape(-1),
        p=np.array([f, 0.0, cx, 0.0, 0.0, f, cy, 0.0, 0.0, 0.0, 1.0, 0.0]), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def odometry(ns: int, pose: Pose, velocity: tuple[float, float, float]) -> Any:
    """Pose in `map`; twist (forward, left, yaw rate) in `base_link`, as REP 105 / nav_msgs expect."""
    forward, left, yaw_rate = velocity
    qx, qy, qz, qw = pose.quaternion
    vector = T["geometry_msgs/msg/Vector3"]
    geometry = T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=pose.x, y=pose.y, z=pose.z),
        orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
    twist = T["geometry_msgs/msg/Twist"](linear=vector(x=forward, y=left, z=0.0),
                                         angular=vector(x=0.0, y=0.0, z=yaw_rate))
    return T["nav_msgs/msg/Odometry"](
        header=header(ns, "map"), child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](
            pose=geometry, covariance=np.diag([0.01, 0.01, 0.04, 1e-4, 1e-4, 1e-3]).reshape(-1)),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=twist, covariance=np.diag([0.04, 0.04, 0.04, 1e-3, 1e-3, 1e-3]).reshape(-1)))


def place(ns: int, place_id: int) -> Any:
    """The ground-truth place of a frame: a std_msgs/Header whose frame_id is `place/<id>`."""
    return header(ns, f"place/{place_id}")
