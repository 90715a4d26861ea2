"""REINFORCE with a leave-one-out baseline (Kool et al. 2019): unbiased, no relaxation.

num_samples codes z_1..z_S ~ q(z|x) per image; each is scored against the mean cost of the
others, b_s = (sum_t f(z_t) - f(z_s)) / (S - 1), which does not depend on z_s:

    grad_theta = 1/S sum_s (f(z_s) - b_s) grad_theta log q(z_s | x)

The surrogate's value is the mean cost 1/S sum_s f(z_s); through f's own parameters (the
decoder) its gradient is the plain Monte-Carlo one. No temperature. Serves any latent whose
q(z|x) samples codes and scores them (log_prob).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.errors import is_int, require
from vae.estimators.base import Cost, Estimator


class ReinforceLOO(Estimator):
    name = "reinforce_loo"
    uses_temperature = False

    def __init__(self, num_samples: int = 4) -> None:
        """num_samples: codes per image; the baseline needs at least 2."""
        super().__init__()
        ok = is_int(num_samples) and num_samples >= 2
        require(
            ok, "num_samples", num_samples, "must be an integer >= 2 (the leave-one-out baseline needs two)"
        )
        self.num_samples = num_samples
        self.decoder_passes = num_samples

    def settings(self) -> dict[str, int]:
        return {"num_samples": self.num_samples}

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        S = self.num_samples
        z = q.sample((S,), generator=generator)  # (S, *batch, *event), exact, no gradient
        log_q = q.log_prob(z)  # (S, *batch): log q(z_s|x), with the gradient to q's parameters
        f = cost(z)  # (S, *batch)
        baseline = (f.sum(0, keepdim=True) - f) / (S - 1)  # (S, *batch), independent of z_s
        score = (f - baseline).detach() * (log_q - log_q.detach())  # value 0, gradient the estimator's
        return (f + score).mean(0)
