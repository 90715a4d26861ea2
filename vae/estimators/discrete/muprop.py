"""MuProp (Gu et al. 2016): the cost's first-order expansion at the mean-field point mu = E_q[z]
as the baseline, and its analytic expectation added back:

    grad = E[(f(z) - f(mu) - f'(mu) . (z - mu)) grad log q(z|x)] + f'(mu) . grad mu,

unbiased; the learning signal variance-normalized as for SF (which rescales the score term only).
Two decoder passes (and the gradient of one).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import Cost
from vae.estimators.discrete.score_function import (
    ScoreFunctionEstimator,
    event_sum,
    score_term,
    taylor_baseline,
)


class MuProp(ScoreFunctionEstimator):
    name = "muprop"
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
        mu = q.mean  # (*batch, *event), with the gradient to q's parameters
        baseline, slope = taylor_baseline(q, cost, z, mu.expand_as(z))
        correction = event_sum(slope.detach() * mu, q)  # its gradient: f'(mu) . grad mu
        score = score_term(self.normalizer(f.detach() - baseline), q.log_prob(z))
        return f + score + (correction - correction.detach())
