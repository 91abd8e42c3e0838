"""QwT compensation: a closed-form linear correction per block, out = block_q(x) + x W + b."""

from __future__ import annotations

import torch
from torch import nn

RIDGE = 1e-3
OUTLIER_FACTOR = 8.0


class CompensatedBlock(nn.Module):
    def __init__(self, block: nn.Module, dim: int) -> None:
        super().__init__()
        self.block = block
        self.qwt = nn.Linear(dim, dim, device=next(block.parameters()).device)  # beside the block it corrects
        nn.init.zeros_(self.qwt.weight)
        nn.init.zeros_(self.qwt.bias)

    def forward(self, x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor] | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """`rope`: the grid's (sin, cos) for a RoPE block, passed on to it."""
        out, qkv = self.block(x, rope)
        return out + self.qwt(x), qkv


@torch.no_grad()
def fit_compensation(inputs: torch.Tensor, error: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Least squares [x 1] @ [W; b] = error, ridge-regularised relative to the data scale.

    Tokens whose error is far above the median (clipped massive activations of high-norm tokens) are
    left out: a linear map cannot restore them, and fitting them spoils the correction of all others.
    """
    x = inputs.reshape(-1, inputs.shape[-1]).double()
    e = error.reshape(-1, error.shape[-1]).double()
    err_norm = e.norm(dim=1)
    keep = err_norm <= OUTLIER_FACTOR * err_norm.median()
    x, e = x[keep], e[keep]
    x1 = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype, device=x.device)], dim=1)
    gram = x1.T @ x1
    gram += RIDGE * gram.diagonal().mean() * torch.eye(len(gram), dtype=x.dtype, device=x.device)
    solution = torch.linalg.solve(gram, x1.T @ e)
    return solution[:-1].T.float(), solution[-1].float()  # nn.Linear layout: (out, in)
