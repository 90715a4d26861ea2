"""Gumbel-Softmax / Concrete (Jang et al. 2017; Maddison et al. 2017): the relaxed estimator.

z = softmax((theta + G) / tau), G_i ~ Gumbel(0, 1). The decoder sees the relaxed sample, so the
gradient is exact for the relaxed objective and biased for the discrete one; the bias falls and
the variance grows as tau -> 0.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import PathwiseEstimator
from vae.gumbel import gumbel_softmax


class GumbelSoftmax(PathwiseEstimator):
    name = "gumbel_softmax"
    relaxes = True

    def sample(
        self, q: Distribution, temperature: float | Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        return gumbel_softmax(q.logits, temperature, generator=generator)
