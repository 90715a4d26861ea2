"""SF, the score-function estimator without a baseline (REINFORCE, Williams 1992): Jang et al.'s
"SF" column. Learning signal L = f(z), variance-normalized (score_function.py). Unbiased in
direction; one decoder pass.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import Cost, Estimator
from vae.estimators.discrete.score_function import RunningNormalizer, score_term


class Reinforce(Estimator):
    name = "reinforce"
    uses_temperature = False

    def __init__(self, normalize: bool = True, decay: float = 0.8) -> None:
        """normalize: divide the learning signal by max(1, its running std); decay: of that average."""
        super().__init__()
        self.normalizer = RunningNormalizer(normalize, decay)

    def settings(self) -> dict[str, object]:
        return {"normalize": self.normalizer.enabled, "decay": self.normalizer.decay}

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
