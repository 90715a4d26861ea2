"""Straight-through Gumbel-Softmax (Jang et al. 2017), the "hard" mode.

Forward: the exact Gumbel-Max sample D = one_hot(argmax(theta + G)), distributed as
Categorical(softmax theta). Backward: the gradient of softmax((theta + G) / tau) with the same G.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import PathwiseEstimator
from vae.gumbel import gumbel_softmax


class STGumbel(PathwiseEstimator):
    name = "st_gumbel"
    relaxes = True

    def sample(
        self, q: Distribution, temperature: float | Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        return gumbel_softmax(q.logits, temperature, hard=True, generator=generator)
