"""Image messages -> RGB uint8, for rosbags messages and rclpy messages alike (same field names).

ROS-free on purpose: bag readers, the replay report and the nodes share one decoder. Every way a frame
can be broken raises `BadFrame` with a short, stable reason that diagnostics count per reason.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

MAX_SIDE = 16384

# encoding -> (channels, numpy dtype, conversion to RGB or None when already RGB)
_RAW = {
    "rgb8": (3, np.uint8, None),
    "bgr8": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "rgba8": (4, np.uint8, cv2.COLOR_RGBA2RGB),
    "bgra8": (4, np.uint8, cv2.COLOR_BGRA2RGB),
    "mono8": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8uc1": (1, np.uint8, cv2.COLOR_GRAY2RGB),
    "8uc3": (3, np.uint8, cv2.COLOR_BGR2RGB),
    "mono16": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "16uc1": (1, np.uint16, cv2.COLOR_GRAY2RGB),
    "rgb16": (3, np.uint16, None),
    "bgr16": (3, np.uint16, cv2.COLOR_BGR2RGB),
    "bayer_rggb8": (1, np.uint8, cv2.COLOR_BayerBG2RGB),
    "bayer_bggr8": (1, np.uint8, cv2.COLOR_BayerRG2RGB),
    "bayer_gbrg8": (1, np.uint8, cv2.COLOR_BayerGR2RGB),
    "bayer_grbg8": (1, np.uint8, cv2.COLOR_BayerGB2RGB),
    "yuv422": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "uyvy": (2, np.uint8, cv2.COLOR_YUV2RGB_UYVY),
    "yuv422_yuy2": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
    "yuyv": (2, np.uint8, cv2.COLOR_YUV2RGB_YUY2),
}
SUPPORTED_ENCODINGS = tuple(_RAW)


class BadFrame(Exception):
    """A frame that cannot be decoded; `reason` is a stable key for counting."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def decode_image(msg: Any) -> np.ndarray:
    """sensor_msgs/Image -> RGB uint8 (H, W, 3), honouring encoding, step (row padding) and endianness."""
    encoding = str(msg.encoding).lower()
    if encoding not in _RAW:
        raise BadFrame("encoding", f"unsupported encoding {msg.encoding!r}")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise BadFrame("empty", f"image is {width}x{height}")
    if height > MAX_SIDE or width > MAX_SIDE:
        raise BadFrame("size", f"image {width}x{height} is larger than {MAX_SIDE} px")
    channels, dtype, conversion = _RAW[encoding]
    itemsize = np.dtype(dtype).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise BadFrame("step", f"step {step} < width x bytes per pixel = {row_bytes}")
    data = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    if data.size < step * height:
        raise BadFrame("truncated", f"{data.size} bytes for {height} rows of {step}")
    rows = data[: step * height].reshape(height, step)[:, :row_bytes]
    order = ">" if msg.is_bigendian else "<"
    pixels = np.ascontiguousarray(rows).view(np.dtype(dtype).newbyteorder(order))
    if itemsize > 1:
        pixels = (pixels >> 8).astype(np.uint8)
    if channels == 2 and width % 2:
        raise BadFrame("size", f"{encoding} needs an even width, got {width}")
    pixels = pixels.reshape(height, width, channels) if channels > 1 else pixels.reshape(height, width)
    rgb = pixels if conversion is None else cv2.cvtColor(pixels, conversion)
    return np.ascontiguousarray(rgb)


def decode_compressed(msg: Any) -> np.ndarray:
    """sensor_msgs/CompressedImage (jpeg, png, ...) -> RGB uint8."""
    data = np.frombuffer(msg.data, np.uint8) if not isinstance(msg.data, np.ndarray) else msg.data.view(np.uint8)
    if data.size == 0:
        raise BadFrame("empty", "compressed image has no data")
    image = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise BadFrame("decode", f"cannot decode {msg.format or 'compressed'} data ({data.size} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_any(msg: Any) -> np.ndarray:
    return decode_compressed(msg) if hasattr(msg, "format") and not hasattr(msg, "encoding") else decode_image(msg)
