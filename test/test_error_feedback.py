"""Stage 2's error-feedback rounding of the 4-bit weights: same grid, smaller output error than rounding
to nearest, and exactly rounding to nearest when the inputs are uncorrelated."""

from __future__ import annotations

import torch

from spatialq_ros.quant.error_feedback import round_with_feedback
from spatialq_ros.quant.fake_quant import INT4, fake_quant
from spatialq_ros.quant.weight_scales import weight_scales


def _layer(seed: int = 0, correlated: bool = True):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(48, 64, generator=g, dtype=torch.float64) * 0.05
    mix = torch.randn(64, 64, generator=g, dtype=torch.float64) if correlated else torch.eye(64, dtype=torch.float64)
    x = torch.randn(2000, 64, generator=g, dtype=torch.float64) @ mix
    x[:, :4] *= 20.0  # a few busy channels, as after LayerNorm in a trained ViT
    return w, x


def test_weights_stay_on_the_int4_grid():
    w, x = _layer()
    scale = weight_scales(w.float(), "mse").double()
    q = round_with_feedback(w, scale, 2 * x.T @ x / len(x))
    codes = q / scale[:, None]
    assert torch.allclose(codes, codes.round(), atol=1e-6)
    assert codes.min() >= INT4[0] and codes.max() <= INT4[1]


def test_feedback_moves_the_layer_output_less_than_nearest_rounding():
    for seed in range(3):
        w, x = _layer(seed)
        scale = weight_scales(w.float(), "mse").double()
        nearest = fake_quant(w, scale[:, None], INT4)
        feedback = round_with_feedback(w, scale, 2 * x.T @ x / len(x))
        err_nearest = torch.linalg.norm(x @ (nearest - w).T)
        err_feedback = torch.linalg.norm(x @ (feedback - w).T)
        assert err_feedback < 0.8 * err_nearest, (seed, float(err_feedback / err_nearest))


def test_uncorrelated_inputs_give_round_to_nearest_and_dead_inputs_are_zeroed():
    w, _ = _layer(correlated=False)
    scale = weight_scales(w.float(), "mse").double()
    hessian = torch.diag(torch.linspace(1.0, 3.0, 64, dtype=torch.float64))
    assert torch.allclose(round_with_feedback(w, scale, hessian, damp=0.0), fake_quant(w, scale[:, None], INT4))
    hessian[5, 5] = 0.0  # an input that never fires: its weights cannot matter
    assert (round_with_feedback(w, scale, hessian)[:, 5] == 0).all()
