"""A whole simulated flight: world, path, frames and ground truth, written as one rosbag2."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_dir
from . import bag as B
from .flight import FOOTPRINT_M, Pose, flight_path, place_id
from .render import make_clouds, render_frame
from .world import make_world

START_NS = 1_700_000_000 * 1_000_000_000
FRAME_PERIOD_NS = 100_000_000  # 10 Hz


@dataclass(frozen=True)
class SimConfig:
    frames: int
    size: tuple[int, int]  # (W, H)
    seed: int = 0
    storage: str = "mcap"
    compressed: bool = False
    hover: int = 0


def simulate(out: str | Path, config: SimConfig, force: bool = False, progress: bool = True) -> Path:
    """Render the flight into a temp folder beside `out`, then rename: no half-written bag is ever left."""
    world = make_world(config.seed)
    clouds = make_clouds(world, config.seed)
    poses = flight_path(config.frames, world.size_m, config.hover, config.seed)
    rng = np.random.default_rng(config.seed + 3)
    with atomic_dir(out, force=force) as tmp:
        bag_dir = tmp / "bag"
        with B.BagWriter(bag_dir, config.storage) as writer:
            for i, pose in enumerate(tqdm(poses, desc="sim", unit="frame", disable=not progress)):
                ns = START_NS + i * FRAME_PERIOD_NS
                gain = 1.0 + 0.18 * math.sin(2 * math.pi * i / 140.0) + rng.normal(0, 0.015)
                drift = (0.8 * i, 0.3 * i)  # clouds move with the wind
                rgb, mask = render_frame(world, clouds, pose, config.size, gain, drift, rng)
                write_frame(writer, ns, rgb, mask, pose, config)
        # the rename target is the bag itself: move its files up one level
        for item in bag_dir.iterdir():
            item.rename(tmp / item.name)
        bag_dir.rmdir()
    return Path(out)


def write_frame(writer: B.BagWriter, ns: int, rgb: np.ndarray, mask: np.ndarray, pose: Pose, config: SimConfig) -> None:
    if config.compressed:
        writer.write(B.COMPRESSED_TOPIC, B.compressed_msg(ns, "camera", rgb), ns)
    else:
        writer.write(B.IMAGE_TOPIC, B.image_msg(ns, "camera", rgb), ns)
    writer.write(B.CAMERA_INFO_TOPIC, camera_info(ns, config.size), ns)
    writer.write(B.ODOM_TOPIC, odometry(ns, pose), ns)
    writer.write(B.MASK_TOPIC, B.image_msg(ns, "camera", mask), ns)
    writer.write(B.PLACE_TOPIC, B.header(ns, f"place/{place_id(pose)}"), ns)


def camera_info(ns: int, size: tuple[int, int]):
    width, height = size
    focal = width / 2 / math.tan(math.atan(FOOTPRINT_M / 2 / 80.0))
    k = [focal, 0.0, width / 2, 0.0, focal, height / 2, 0.0, 0.0, 1.0]
    p = [focal, 0.0, width / 2, 0.0, 0.0, focal, height / 2, 0.0, 0.0, 0.0, 1.0, 0.0]
    T = B.T
    return T["sensor_msgs/msg/CameraInfo"](
        header=B.header(ns, "camera"), height=height, width=width, distortion_model="plumb_bob",
        d=np.zeros(5), k=np.array(k), r=np.eye(3).reshape(-1), p=np.array(p), binning_x=0, binning_y=0,
        roi=T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False))


def odometry(ns: int, pose: Pose):
    T = B.T
    qx, qy, qz, qw = pose.quaternion
    covariance = np.diag([0.01, 0.01, 0.04, 1e-4, 1e-4, 1e-3]).reshape(-1)
    geometry = T["geometry_msgs/msg/Pose"](
        position=T["geometry_msgs/msg/Point"](x=pose.x, y=pose.y, z=pose.z),
        orientation=T["geometry_msgs/msg/Quaternion"](x=qx, y=qy, z=qz, w=qw))
    zero = T["geometry_msgs/msg/Vector3"](x=0.0, y=0.0, z=0.0)
    return T["nav_msgs/msg/Odometry"](
        header=B.header(ns, "map"), child_frame_id="base_link",
        pose=T["geometry_msgs/msg/PoseWithCovariance"](pose=geometry, covariance=covariance),
        twist=T["geometry_msgs/msg/TwistWithCovariance"](
            twist=T["geometry_msgs/msg/Twist"](linear=zero, angular=zero), covariance=np.zeros(36)))
