"""Straight-through for Bernoulli variables (Bengio et al. 2013), with slope 1/tau.

Forward: z ~ Bernoulli(sigmoid(phi)), exactly 0 or 1. Backward: the gradient of sigmoid(phi / tau)
(no noise in the backward path). With a tau schedule that decreases, the slope 1/tau grows
during training: Jang et al.'s "Annealed ST" (slope annealing, Chung et al. 2017); with
tau=constant tau.tau0=1, plain ST.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import PathwiseEstimator, straight_through
from vae.gumbel import check_temperature


class StraightThrough(PathwiseEstimator):
    name = "straight_through"

    def sample(self, q: Distribution, temperature: float | Tensor | None, generator=None) -> Tensor:
        tau = check_temperature(temperature)
        z = q.sample(generator=generator)  # (*batch, N), float32 or wider, no gradient
        return straight_through(z, torch.sigmoid(q.logits.to(z.dtype) / tau))
