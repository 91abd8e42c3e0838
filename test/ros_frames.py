"""Frames in every encoding perception_node supports, and broken ones, written into rosbag2 files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spatialq_ros.frames import SUPPORTED_ENCODINGS
from spatialq_ros.sim.bag import BagWriter
from spatialq_ros.sim.messages import T, header


def encode(rgb: np.ndarray, encoding: str) -> tuple[np.ndarray, bool]:
    """RGB -> (pixels as the encoding lays them out, big-endian?)."""
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if encoding in ("rgb8",):
        return rgb, False
    if encoding in ("bgr8", "8uc3"):
        return rgb[..., ::-1], False
    if encoding in ("rgba8", "bgra8"):
        base = rgb if encoding == "rgba8" else rgb[..., ::-1]
        return np.dstack([base, np.full(rgb.shape[:2], 255, np.uint8)]), False
    if encoding in ("mono8", "8uc1"):
        return grey, False
    if encoding in ("mono16", "16uc1"):
        return grey.astype(">u2") * 257, True
    if encoding in ("rgb16", "bgr16"):
        base = rgb if encoding == "rgb16" else rgb[..., ::-1]
        return base.astype("<u2") * 257, False
    if encoding.startswith("bayer_"):
        pattern = encoding[6:10]
        mosaic = np.zeros(rgb.shape[:2], np.uint8)
        channel = {"r": 0, "g": 1, "b": 2}
        for k, (dy, dx) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
            mosaic[dy::2, dx::2] = rgb[dy::2, dx::2, channel[pattern[k]]]
        return mosaic, False
    yuv = cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV)
    packed = np.zeros((*rgb.shape[:2], 2), np.uint8)
    if encoding in ("yuv422", "uyvy"):
        packed[..., 1] = yuv[..., 0]
        packed[:, 0::2, 0], packed[:, 1::2, 0] = yuv[:, 0::2, 1], yuv[:, 0::2, 2]
    else:  # yuy2 / yuyv
        packed[..., 0] = yuv[..., 0]
        packed[:, 0::2, 1], packed[:, 1::2, 1] = yuv[:, 0::2, 1], yuv[:, 0::2, 2]
    return packed, False


def image_msg(ns: int, rgb: np.ndarray, encoding: str):
    pixels, big = encode(rgb, encoding)
    h, w = pixels.shape[:2]
    data = np.ascontiguousarray(pixels).view(np.uint8).reshape(-1)
    return T["sensor_msgs/msg/Image"](header=header(ns, "camera"), height=h, width=w, encoding=encoding,
                                      is_bigendian=int(big), step=data.size // h, data=data)


BROKEN = {  # reason perception_node counts -> how the frame is broken
    "encoding": lambda m: setattr(m, "encoding", "32FC1"),
    "truncated": lambda m: setattr(m, "data", m.data[:10]),
    "empty": lambda m: (setattr(m, "width", 0), setattr(m, "height", 0)),
    "step": lambda m: setattr(m, "step", 3),
}


def write_torture_bag(path: Path, rgb: np.ndarray, start_ns: int = 1_000_000_000) -> dict:
    """One frame per supported encoding, then one broken frame per reason; returns the expected counts."""
    ns = start_ns
    with BagWriter(path) as bag:
        for encoding in SUPPORTED_ENCODINGS:
            bag.write("/camera/image_raw", image_msg(ns, rgb, encoding), ns)
            ns += 100_000_000
        for breaks in BROKEN.values():
            msg = image_msg(ns, rgb, "rgb8")
            breaks(msg)
            bag.write("/camera/image_raw", msg, ns)
            ns += 100_000_000
    return {"processed": len(SUPPORTED_ENCODINGS), "bad": {reason: 1 for reason in BROKEN}}


def write_compressed_bag(path: Path, rgb: np.ndarray, start_ns: int = 1_000_000_000) -> dict:
    """JPEG and PNG frames, then an empty and a corrupt one."""
    ns = start_ns
    payloads = [("jpeg", cv2.imencode(".jpg", rgb[..., ::-1])[1].reshape(-1)),
                ("png", cv2.imencode(".png", rgb[..., ::-1])[1].reshape(-1)),
                ("jpeg", np.zeros(0, np.uint8)), ("jpeg", np.frombuffer(b"\xff\xd8\xff garbage", np.uint8))]
    with BagWriter(path) as bag:
        for fmt, data in payloads:
            msg = T["sensor_msgs/msg/CompressedImage"](header=header(ns, "camera"), format=fmt, data=data)
            bag.write("/camera/image_raw/compressed", msg, ns)
            ns += 100_000_000
    return {"processed": 2, "bad": {"empty": 1, "decode": 1}}
