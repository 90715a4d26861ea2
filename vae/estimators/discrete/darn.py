"""DARN's baseline (Gregor et al. 2014): the cost's first-order expansion at a fixed point z_bar,

    L = f(z) - f(z_bar) - f'(z_bar) . (z - z_bar),

z_bar the mean of the uniform distribution over codes (1/2 per bit for a Bernoulli latent, 1/K
per class for a categorical one: our choice for the categorical case), variance-normalized. The
correction term is left out, so it is biased for a cost that is not linear. Two decoder passes
(and the gradient of one).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import Cost
from vae.estimators.discrete.score_function import ScoreFunctionEstimator, score_term, taylor_baseline


def uniform_point(q: Distribution) -> Tensor:
    """The mean of the uniform distribution over q's codes, shaped like q's mean: q's own family
    at logits 0."""
    return type(q)(torch.zeros_like(q.logits)).mean


class DARN(ScoreFunctionEstimator):
    name = "darn"
    decoder_passes = 2

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        z = q.sample(generator=generator)  # (*batch, *event), exact
        f = cost(z)  # (*batch,)
        point = uniform_point(q).expand_as(z)
        baseline, _ = taylor_baseline(q, cost, z, point)
        return f + score_term(self.normalizer(f.detach() - baseline), q.log_prob(z))
