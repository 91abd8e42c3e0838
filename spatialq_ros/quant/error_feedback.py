"""4-bit weight rounding with error feedback (GPTQ, Frantar et al. 2022) for stage 2 of GPLQ.

The grid stays the same (per-output-channel symmetric INT4, scales from the MSE search): only the choice
of code per weight changes. Rounding column by column, each column's rounding error is pushed onto the
columns not yet rounded, weighted by the inverse Hessian of the layer's calibration inputs, so the
layer's *output* on those inputs moves as little as possible; round-to-nearest only minimises each
weight's own error. The deployed artifact is unchanged in form: the returned weights lie on the grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .fake_quant import fake_quant, signed_range
from .qlinear import QuantLinear


class InputHessian:
    """Accumulates 2 X^T X of a layer's (quantized) inputs, one row per token or patch."""

    def __init__(self, layer: QuantLinear) -> None:
        self.layer = layer
        self.sum = None
        self.rows = 0
        self._hook = layer.register_forward_pre_hook(self._collect)

    def _collect(self, module: QuantLinear, inputs) -> None:
        x = module.affine_input(inputs[0].detach())
        if module.quantize_input:
            x = fake_quant(x, module.act_scale.abs().clamp_min(1e-8), module.act_codes)
        if module.float_channels.numel():  # their columns stay zero: no error may be pushed onto them
            x = x.index_fill(-1, module.float_channels, 0.0)
        inner = module.inner
        if isinstance(inner, torch.nn.Conv2d):  # patch embedding: one row per patch
            x = F.unfold(x, inner.kernel_size, stride=inner.stride).transpose(1, 2)
        x = x.reshape(-1, x.shape[-1]).double()
        self.sum = x.T @ x if self.sum is None else self.sum + x.T @ x
        self.rows += len(x)

    def close(self) -> torch.Tensor:
        self._hook.remove()
        return 2.0 * self.sum / max(self.rows, 1)


@torch.no_grad()
def round_with_feedback(weight: torch.Tensor, scale: torch.Tensor, hessian: torch.Tensor, bits: int = 4,
                        damp: float = 0.01, block: int = 128) -> torch.Tensor:
    """(out, in) weight, (out,) scale, (in, in) Hessian -> (out, in) weight on the `bits`-bit grid."""
    grid = signed_range(bits)
    w = weight.detach().double().clone()
    h = hessian.double().clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    order = torch.argsort(torch.diag(h), descending=True)  # the busiest inputs first ("act order")
    w, h = w[:, order], h[order][:, order]
    h += damp * torch.diag(h).mean() * torch.eye(len(h), dtype=h.dtype, device=h.device)
    inverse = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    s = scale.double().reshape(-1)
    out = torch.zeros_like(w)
    columns = w.shape[1]
    for start in range(0, columns, block):
        end = min(start + block, columns)
        wb, errors, hb = w[:, start:end].clone(), torch.zeros_like(w[:, start:end]), inverse[start:end, start:end]
        for j in range(end - start):
            column = wb[:, j]
            q = torch.clamp(torch.round(column / s), *grid) * s
            out[:, start + j] = q
            error = (column - q) / hb[j, j]
            wb[:, j:] -= error[:, None] * hb[j, j:][None, :]
            errors[:, j] = error
        w[:, end:] -= errors @ inverse[start:end, end:]
    return out[:, torch.argsort(order)].to(weight.dtype)


@torch.no_grad()
def quantize_with_feedback(layers: dict[str, QuantLinear], hessians: dict[str, torch.Tensor]) -> None:
    """Replace each layer's float weight by its error-feedback rounding (its weight_scale must be set)."""
    for name, layer in layers.items():
        weight = layer.inner.weight
        flat = weight.reshape(weight.shape[0], -1)
        rounded = round_with_feedback(flat, layer.weight_scale, hessians[name], layer.weight_bits)
        weight.copy_(rounded.reshape(weight.shape))
