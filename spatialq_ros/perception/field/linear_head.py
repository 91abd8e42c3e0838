"""Linear field head: logistic regression on patch tokens, soft targets = fraction of the patch inside the mask.

Soft targets teach the head that a half-covered border cell scores 0, so the logit's zero crossing sits
on the border rather than on a cell edge. Channels are standardised for the fit (DINOv2 tokens have a few
huge channels) and the scaling is folded back into the weights; L-BFGS from zero is deterministic.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, log_expit

from .head import FieldHead
from .references import Reference, gather_references


def fit_linear_head(
    references: Sequence[Reference],
    fingerprint: str,
    size: tuple[int, int],
    weight_decay: float = 1e-3,
    balanced: bool = True,
    max_iter: int = 300,
) -> FieldHead:
    """weight_decay: L2 on the standardised weights; balanced: field and background weigh the same in total."""
    features, targets, _ = gather_references(references)
    x = features.astype(np.float64)
    mean, std = x.mean(axis=0), x.std(axis=0) + 1e-6
    x = (x - mean) / std
    y = targets.astype(np.float64)
    field_share = float(np.clip(y.mean(), 1e-6, 1 - 1e-6))
    w_field, w_back = (0.5 / field_share, 0.5 / (1 - field_share)) if balanced else (1.0, 1.0)
    n, dim = x.shape

    def loss_and_grad(params: np.ndarray) -> tuple[float, np.ndarray]:
        w, b = params[:dim], params[dim]
        z = x @ w + b
        # -[a y log s(z) + c (1-y) log s(-z)]: cross-entropy with soft targets and class weights
        loss = -(w_field * y * log_expit(z) + w_back * (1 - y) * log_expit(-z)).sum() / n
        dz = (-w_field * y * expit(-z) + w_back * (1 - y) * expit(z)) / n
        loss += 0.5 * weight_decay * w @ w
        grad = np.concatenate([x.T @ dz + weight_decay * w, [dz.sum()]])
        return loss, grad

    result = minimize(loss_and_grad, np.zeros(dim + 1), jac=True, method="L-BFGS-B",
                      options={"maxiter": max_iter})
    w, b = result.x[:dim] / std, result.x[dim] - (result.x[:dim] / std) @ mean
    return FieldHead("linear", w[None].astype(np.float32), float(b), 0.0, 1.0, 1.0, fingerprint, tuple(size))
