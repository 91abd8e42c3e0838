"""The INT8 input window: its 256 codes go where a layer's inputs are, and every graph computes the same numbers."""

from __future__ import annotations

import pytest
import torch

from spatialq_ros.quant.fake_quant import fake_quant
from spatialq_ros.quant.input_window import clipping_level, input_window, window_codes

PERCENTILE = 99.99


def values(kind: str) -> torch.Tensor:
    x = torch.randn(200_000, generator=torch.Generator().manual_seed(0)) * 3.0
    return {"symmetric": x, "gelu": torch.nn.functional.gelu(x), "relu": x.clamp_min(0), "negative": -x.abs()}[kind]


def test_a_symmetric_input_keeps_the_symmetric_window():
    x = values("symmetric")
    step, low = input_window(x, PERCENTILE)
    assert -131 <= low <= -125
    assert step == pytest.approx(clipping_level(x, PERCENTILE) / 127.5, rel=0.03)


def test_a_gelu_output_gets_twice_the_resolution_at_the_same_clipping():
    """GELU never goes below -0.17: a symmetric grid would leave it the 128 positive codes."""
    x = values("gelu")
    step, low = input_window(x, PERCENTILE)
    top = clipping_level(x, PERCENTILE)
    assert -8 <= low < 0  # -0.17 is a few steps below 0
    assert step < 0.52 * top / 127
    assert (low + 255) * step == pytest.approx(top, rel=0.01)  # clipped where the symmetric window clips
    rounded = fake_quant(x, torch.tensor(step), window_codes(low))
    inside = x <= top
    assert (rounded - x)[inside].abs().max() <= step / 2 + 1e-6


@pytest.mark.parametrize("kind, low", [("relu", 0), ("negative", -255)])
def test_one_signed_inputs_use_every_code_on_their_side(kind, low):
    assert input_window(values(kind), PERCENTILE)[1] == low


def test_zero_is_always_a_code():
    """A zero input (padding, a dead unit) must stay exactly zero: the window always holds code 0."""
    for kind in ("symmetric", "gelu", "relu", "negative"):
        step, low = input_window(values(kind), PERCENTILE)
        assert low <= 0 <= low + 255
        assert float(fake_quant(torch.zeros(1), torch.tensor(step), window_codes(low))) == 0.0
