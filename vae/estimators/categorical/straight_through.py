"""Straight-through (Bengio et al. 2013), for categorical variables.

Forward: D ~ Categorical(softmax theta), exactly one-hot. Backward: the gradient of
softmax(theta / tau), a deterministic function of theta (no noise in the backward path).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import PathwiseEstimator, straight_through
from vae.gumbel import check_temperature, gumbel_max


class StraightThrough(PathwiseEstimator):
    name = "straight_through"

    def sample(
        self, q: Distribution, temperature: float | Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        tau = check_temperature(temperature)
        logits = q.logits  # (*batch, N, K)
        one_hot = gumbel_max(logits, generator=generator)  # (*batch, N, K), float32 or float64
        probs = torch.softmax(logits.to(one_hot.dtype) / tau, dim=-1)  # never in half precision
        return straight_through(one_hot, probs)
