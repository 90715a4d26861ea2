"""SF, the score-function estimator without a baseline (REINFORCE, Williams 1992): Jang et al.'s
"SF" column. Learning signal L = f(z), variance-normalized (score_function.py). Unbiased in
direction; one decoder pass.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import Cost
from vae.estimators.discrete.score_function import ScoreFunctionEstimator, score_term


class Reinforce(ScoreFunctionEstimator):
    name = "reinforce"

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
        return f + score_term(self.normalizer(f.detach()), q.log_prob(z))
