"""Decoding every supported image encoding, and the reason each broken frame is rejected with."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from spatialq_ros.frames import BadFrame, decode_any, decode_compressed, decode_image

RGB = np.random.default_rng(0).integers(0, 256, (6, 8, 3), dtype=np.uint8)


def msg(encoding, pixels, pad=0, big=False):
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1).view(np.uint8) if pixels.dtype != np.uint8 else pixels.reshape(h, -1)
    rows = np.hstack([rows, np.full((h, pad), 7, np.uint8)])
    return SimpleNamespace(encoding=encoding, height=h, width=w, step=rows.shape[1], is_bigendian=big,
                           data=rows.tobytes())


@pytest.mark.parametrize("pad", [0, 5])
def test_lossless_encodings_decode_exactly_with_row_padding(pad):
    grey = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY)
    cases = {
        "rgb8": (RGB, RGB),
        "bgr8": (RGB[..., ::-1].copy(), RGB),
        "rgba8": (np.dstack([RGB, np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
        "bgra8": (np.dstack([RGB[..., ::-1], np.full(RGB.shape[:2], 9, np.uint8)]), RGB),
        "mono8": (grey, np.dstack([grey] * 3)),
        "rgb16": ((RGB.astype(np.uint16) << 8) | 0x55, RGB),
        "mono16": (grey.astype(np.uint16) << 8, np.dstack([grey] * 3)),
    }
    for encoding, (pixels, expected) in cases.items():
        assert np.array_equal(decode_image(msg(encoding, pixels, pad)), expected), encoding


def test_big_endian_16_bit():
    grey = cv2.cvtColor(RGB, cv2.COLOR_RGB2GRAY).astype(np.uint16) << 8
    m = msg("mono16", grey.astype(">u2"), big=True)
    assert np.array_equal(decode_image(m)[..., 0], (grey >> 8).astype(np.uint8))


def test_bayer_and_yuv_decode_close_to_original():
    smooth = cv2.GaussianBlur(cv2.resize(RGB, (32, 24), interpolation=cv2.INTER_CUBIC), (5, 5), 0)
    bayer = np.zeros(smooth.shape[:2], np.uint8)  # RGGB pattern
    bayer[0::2, 0::2] = smooth[0::2, 0::2, 0]
    bayer[0::2, 1::2] = smooth[0::2, 1::2, 1]
    bayer[1::2, 0::2] = smooth[1::2, 0::2, 1]
    bayer[1::2, 1::2] = smooth[1::2, 1::2, 2]
    out = decode_image(msg("bayer_rggb8", bayer))
    assert np.abs(out[2:-2, 2:-2].astype(int) - smooth[2:-2, 2:-2]).mean() < 12
    uyvy = np.zeros((24, 32, 2), np.uint8)
    yuv = cv2.cvtColor(smooth, cv2.COLOR_RGB2YUV)
    uyvy[..., 1] = yuv[..., 0]
    uyvy[:, 0::2, 0] = yuv[:, 0::2, 1]
    uyvy[:, 1::2, 0] = yuv[:, 0::2, 2]
    out = decode_image(msg("uyvy", uyvy))
    # chroma is subsampled and cv2's YUV variants differ in range: check the picture, not the bits
    assert np.corrcoef(out.reshape(-1), smooth.reshape(-1))[0, 1] > 0.9


@pytest.mark.parametrize("change, reason", [
    (dict(encoding="32FC1"), "encoding"),
    (dict(height=0), "empty"),
    (dict(step=3), "step"),
    (dict(data=b"\x00" * 10), "truncated"),
    (dict(width=100000, step=300000), "size"),
])
def test_broken_raw_frames(change, reason):
    m = msg("rgb8", RGB)
    for k, v in change.items():
        setattr(m, k, v)
    with pytest.raises(BadFrame) as err:
        decode_image(m)
    assert err.value.reason == reason


def test_compressed_roundtrip_and_corruption():
    ok, data = cv2.imencode(".png", cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR))
    good = SimpleNamespace(format="png", data=data.tobytes())
    assert np.array_equal(decode_compressed(good), RGB) and np.array_equal(decode_any(good), RGB)
    for data, reason in ((b"", "empty"), (b"\xff\xd8\xff garbage", "decode")):
        with pytest.raises(BadFrame) as err:
            decode_compressed(SimpleNamespace(format="jpeg", data=data))
        assert err.value.reason == reason
