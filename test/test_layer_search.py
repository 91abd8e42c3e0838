"""The per-layer search: it finds what a layer needs from its own inputs, not from knowing the model."""

from __future__ import annotations

import torch

from spatialq_ros.quant.layer_search import choose

OUTLIERS = torch.tensor([5, 17, 40, 99])


def layer(read_outliers_at: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Post-LayerNorm-like rows with four channels 25x the rest, and a Linear that reads them with weight
    columns `read_outliers_at` x the others'."""
    g = torch.Generator().manual_seed(seed)
    rows = torch.randn(2048, 128, generator=g)
    rows[:, OUTLIERS] *= 25.0
    weight = torch.randn(256, 128, generator=g) / 128**0.5
    weight[:, OUTLIERS] *= read_outliers_at
    return rows, weight, rows.abs().amax(dim=0)


def test_outliers_read_at_full_weight_go_float():
    rows, weight, channel_max = layer(read_outliers_at=1.0)
    choice = choose(rows, weight, channel_max, 99.99, 8)
    assert set(OUTLIERS.tolist()) <= set(choice.float_channels)
    assert choice.error < 0.2 * choice.baseline_error


def test_outliers_read_with_small_weights_stay_quantized_and_fold():
    rows, weight, channel_max = layer(read_outliers_at=1 / 25)
    choice = choose(rows, weight, channel_max, 99.99, 8)
    assert choice.float_channels == () and choice.alpha > 0  # folding alone equalises them
    assert choice.error <= choice.baseline_error


def test_a_fixed_strength_and_no_float_budget_are_respected():
    rows, weight, channel_max = layer(read_outliers_at=1.0)
    choice = choose(rows, weight, channel_max, 99.99, 0, alphas=(0.5,))
    assert choice.alpha == 0.5 and choice.float_channels == () and choice.error == choice.baseline_error
    without_norm = choose(rows, weight, None, 99.99, 2)  # nothing before the layer to fold into
    assert without_norm.alpha is None and len(without_norm.float_channels) <= 2


def test_the_choice_is_deterministic():
    rows, weight, channel_max = layer(read_outliers_at=1.0, seed=3)
    assert choose(rows, weight, channel_max, 99.99, 8) == choose(rows.clone(), weight.clone(), channel_max, 99.99, 8)


def test_the_default_is_scored_even_when_the_user_fixed_another_strength():
    """`spatialq calibrate --alpha 0.8` once failed here: the default's error was never measured."""
    rows, weight, channel_max = layer(read_outliers_at=1 / 25)
    fixed = choose(rows, weight, channel_max, 99.99, 0, alphas=(1.0,))
    default = choose(rows, weight, channel_max, 99.99, 0, alphas=(0.5,))
    assert fixed.alpha == 1.0 and fixed.baseline_error == default.error
    assert fixed.as_dict()["baseline_error"] == round(default.error, 6)
