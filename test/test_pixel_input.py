"""The patch embedding reads the frame's 8-bit pixels: same float function, and its INT8 input rounds nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from checkpoint_helpers import outlier_model

from spatialq_ros.backbone.preprocess import IMAGENET_MEAN, IMAGENET_STD, preprocess
from spatialq_ros.quant.input_window import input_window
from spatialq_ros.quant.pixel_input import PIXEL_STEP, read_pixels
from spatialq_ros.quant.qlinear import QuantLinear


def frames(count: int = 3, size: int = 56) -> torch.Tensor:
    rng = np.random.default_rng(3)
    rgbs = [rng.integers(0, 256, (size + 10, size + 6, 3), dtype=np.uint8) for _ in range(count)]  # resized too
    return torch.from_numpy(np.concatenate([preprocess(rgb, (size, size)) for rgb in rgbs]))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


@torch.no_grad()
def test_pixel_input_keeps_the_conv_and_rounds_no_pixel():
    images = frames()
    conv = outlier_model(depth=1).patch_embed.proj
    exact = conv(images)
    windowed = QuantLinear(conv)  # what every other layer gets: a per-tensor window from the values
    step, windowed.act_low = input_window(images.reshape(-1), 99.99)
    windowed.act_scale.fill_(step)
    window_error = relative_error(windowed(images), exact)

    layer = QuantLinear(outlier_model(depth=1).patch_embed.proj)
    read_pixels(layer, IMAGENET_MEAN, IMAGENET_STD)
    z = round(float(IMAGENET_MEAN.mean()) * 255)
    assert layer.act_codes == (-z, 255 - z) and float(layer.act_scale) == pytest.approx(PIXEL_STEP)
    assert not layer.act_scale.requires_grad
    pixels = layer.affine_input(images)
    assert torch.allclose(pixels * 255, torch.round(pixels * 255), atol=1e-3)  # (p - z)/255 on the pixel grid
    layer.quantize_input = False
    assert relative_error(layer(images), exact) < 1e-5  # the fold leaves the float function as it was
    layer.quantize_input = True
    pixel_error = relative_error(layer(images), exact)
    assert pixel_error < 1e-5 < 0.1 * window_error, (pixel_error, window_error)


def test_pixel_input_is_for_the_patch_embedding_conv():
    with pytest.raises(ValueError, match="patch-embedding conv"):
        read_pixels(QuantLinear(torch.nn.Linear(4, 4)), IMAGENET_MEAN, IMAGENET_STD)
