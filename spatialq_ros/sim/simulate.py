"""A whole simulated flight: world, path, frames and ground truth, written as one rosbag2.

Every frame writes, all with one header stamp (sim time from START_NS at 10 Hz):
  /camera/image_raw           sensor_msgs/Image rgb8, frame `camera`
                              (or /camera/image_raw/compressed, sensor_msgs/CompressedImage jpeg)
  /camera/camera_info         sensor_msgs/CameraInfo, frame `camera`: the same pinhole for every frame
  /odom                       nav_msgs/Odometry, frame `map`, child `base_link`: camera position (m)
                              and yaw, twist in `base_link` from the path
  /ground_truth/field_mask    sensor_msgs/Image mono8, frame `camera`: 255 inside a cultivated field,
                              0 on tracks, margins, hedges, trees, yards and buildings
  /ground_truth/place         std_msgs/Header with frame_id `place/<id>`: the 25 m ground cell under
                              the camera (flight.place_id), so revisits share ids. A Header is the
                              smallest standard message that is stamped and carries a label.
The same arguments (output folder name included: it names the data file) give the same bytes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..atomic import atomic_dir
from ..errors import SpatialqError
from . import messages as M
from .bag import (CAMERA_INFO_TOPIC, COMPRESSED_TOPIC, IMAGE_TOPIC, MASK_TOPIC, ODOM_TOPIC, PLACE_TOPIC,
                  STORAGES, BagWriter)
from .flight import Pose, place_id
from .render import render_flight

START_NS = 1_700_000_000 * 1_000_000_000
FRAME_PERIOD_NS = 100_000_000  # 10 Hz
MAX_SIDE = 4096


@dataclass(frozen=True)
class SimConfig:
    frames: int
    size: tuple[int, int]  # (W, H)
    seed: int = 0
    storage: str = "mcap"
    compressed: bool = False
    hover: int = 0

    def __post_init__(self) -> None:
        width, height = self.size
        if not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            raise SpatialqError(f"--size {width}x{height}: both sides must be between 1 and {MAX_SIDE} px")
        if self.seed < 0:
            raise SpatialqError(f"--seed {self.seed}: must be 0 or more")
        if self.frames < 1:
            raise SpatialqError(f"--frames {self.frames}: need at least 1 frame")
        if not 0 <= self.hover < self.frames:
            raise SpatialqError(f"--hover {self.hover}: must be between 0 and frames - 1 ({self.frames - 1})")
        if self.storage not in STORAGES:
            raise SpatialqError(f"--storage {self.storage}: expected one of {', '.join(STORAGES)}")


def simulate(out: str | Path, config: SimConfig, force: bool = False, progress: bool = True) -> Path:
    """Render the flight into a temp folder beside `out`, then rename: no half-written bag is ever left."""
    out = Path(out)
    try:
        return _simulate(out, config, force, progress)
    except OSError as exc:  # e.g. a folder that only root's permission bits called writable, or a full disk
        raise SpatialqError(f"{out}: cannot write the bag ({exc.strerror or exc})") from None


def _simulate(out: Path, config: SimConfig, force: bool, progress: bool) -> Path:
    with atomic_dir(out, force=force) as tmp, \
            tqdm(total=config.frames, desc="sim: drawing the world", unit="frame", disable=not progress) as bar:
        poses, rendered = render_flight(config.frames, config.size, config.hover, config.seed)
        bar.set_description("sim")
        bag_dir = tmp / out.name  # rosbags names the data file after its folder
        with BagWriter(bag_dir, config.storage) as writer:
            for i, (pose, (rgb, mask)) in enumerate(zip(poses, rendered)):
                ns = START_NS + i * FRAME_PERIOD_NS
                write_frame(writer, ns, rgb, mask, pose, _velocity(poses, i), config)
                bar.update()
        for item in bag_dir.iterdir():  # the bag's files become the target folder's content
            item.rename(tmp / item.name)
        bag_dir.rmdir()
    return out


def write_frame(writer: BagWriter, ns: int, rgb: np.ndarray, mask: np.ndarray, pose: Pose,
                velocity: tuple[float, float, float], config: SimConfig) -> None:
    if config.compressed:
        writer.write(COMPRESSED_TOPIC, M.compressed_msg(ns, "camera", rgb), ns)
    else:
        writer.write(IMAGE_TOPIC, M.image_msg(ns, "camera", rgb), ns)
    writer.write(CAMERA_INFO_TOPIC, M.camera_info(ns, "camera", config.size), ns)
    writer.write(ODOM_TOPIC, M.odometry(ns, pose, velocity), ns)
    writer.write(MASK_TOPIC, M.image_msg(ns, "camera", mask), ns)
    writer.write(PLACE_TOPIC, M.place(ns, place_id(pose)), ns)


def _velocity(poses: list[Pose], i: int) -> tuple[float, float, float]:
    """(forward, left, yaw rate) in `base_link`, by central differences along the path."""
    lo, hi = max(i - 1, 0), min(i + 1, len(poses) - 1)
    if lo == hi:
        return 0.0, 0.0, 0.0
    a, b = poses[lo], poses[hi]
    dt = (hi - lo) * FRAME_PERIOD_NS / 1e9
    vx, vy = (b.x - a.x) / dt, (b.y - a.y) / dt
    c, s = math.cos(poses[i].yaw), math.sin(poses[i].yaw)
    dyaw = math.atan2(math.sin(b.yaw - a.yaw), math.cos(b.yaw - a.yaw))
    return c * vx + s * vy, -s * vx + c * vy, dyaw / dt
