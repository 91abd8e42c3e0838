"""A Linear's own SmoothQuant migration (input multiplier, weight columns divided by it) and its statistics."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from spatialq_ros.quant.layer_search import fold_ratio
from spatialq_ros.quant.qlinear import QuantLinear
from spatialq_ros.quant.stats import InputStats
from spatialq_ros.quant.weight_scales import weight_scales


def wide_channel_input(seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(4, 50, 64, generator=g)
    x[..., :3] *= 30.0
    return x


def test_smoothing_keeps_the_float_function_and_equalises_the_quantizer_input():
    torch.manual_seed(0)
    x = wide_channel_input()
    layer = QuantLinear(nn.Linear(64, 32))
    layer.quantize_input = False
    before = layer(x)
    ratio = fold_ratio(x.abs().amax(dim=(0, 1)), 1.0)
    layer.smooth_input(ratio)
    assert torch.allclose(layer(x), before, atol=1e-5)
    seen = layer.smoothed(x).abs().amax(dim=(0, 1))
    assert seen.max() / seen.min() < 1.01  # alpha 1: every channel at the mean range


def test_smoothing_pays_at_w4a8_where_the_wide_channels_are_read_with_small_weights():
    x = wide_channel_input(1)
    errors = {}
    for alpha in (0.0, 0.5):
        torch.manual_seed(0)
        layer = QuantLinear(nn.Linear(64, 32))
        with torch.no_grad():
            layer.inner.weight[:, :3] /= 30.0
            reference = layer.inner(x)
            if alpha:
                layer.smooth_input(fold_ratio(x.abs().amax(dim=(0, 1)), alpha))
            layer.act_scale.fill_(float(layer.smoothed(x).abs().max()) / 127)
            layer.set_weight_scale(weight_scales(layer.quantizable_weight()))
            errors[alpha] = float((layer(x) - reference).pow(2).mean())
    assert errors[0.5] < 0.5 * errors[0.0], errors


def test_smoothing_comes_before_the_float_channels_and_the_grid():
    layer = QuantLinear(nn.Linear(64, 32))
    layer.keep_float(torch.tensor([0]))
    with pytest.raises(ValueError, match="before"):
        layer.smooth_input(torch.ones(64))
    with pytest.raises(ValueError, match="Linear"):
        QuantLinear(nn.Conv2d(3, 8, 2, stride=2)).smooth_input(torch.ones(12))


def test_scaled_statistics_are_those_of_the_scaled_input():
    x = wide_channel_input(2)
    stats = InputStats()
    g = torch.Generator().manual_seed(0)
    stats.add(x, g)
    multiplier = 1.0 / fold_ratio(stats.channel_max, 1.0)
    scaled = stats.scaled(multiplier)
    direct = InputStats()
    direct.add(x * multiplier, torch.Generator().manual_seed(0))
    assert torch.allclose(scaled.channel_max, direct.channel_max)
    assert scaled.tensor_max == pytest.approx(direct.tensor_max)
    assert scaled.percentile(99.0) == pytest.approx(direct.percentile(99.0), rel=0.05)
    assert torch.allclose(scaled.row_sample(), direct.row_sample())
