"""ReinMax (Liu et al. 2023): a second-order (Heun's method) straight-through estimator.

Forward: D ~ Categorical(pi_0), pi_0 = softmax(theta), exactly one-hot. Backward, with
g = dL/dD and J(q) = diag(q) - q q^T, the Jacobian of softmax at probabilities q:

    pi_1 = (D + softmax(theta / tau)) / 2
    grad_theta = 2 J(pi_1) g - 1/2 J(pi_0) g

pi_1 enters as softmax(theta + stop_grad(log pi_1 - theta)): its value is pi_1 and its
Jacobian with respect to theta is J(pi_1). The authors use tau >= 1 (1.1 to 1.5).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import PathwiseEstimator, straight_through
from vae.gumbel import check_temperature, gumbel_max


class ReinMax(PathwiseEstimator):
    name = "reinmax"

    def sample(
        self, q: Distribution, temperature: float | Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        tau = check_temperature(temperature)
        logits = q.logits  # (*batch, N, K)
        one_hot = gumbel_max(logits, generator=generator)  # (*batch, N, K): D ~ pi_0
        logits = logits.to(one_hot.dtype)
        pi_0 = torch.softmax(logits, dim=-1)
        pi_1 = (one_hot + torch.softmax(logits / tau, dim=-1).detach()) / 2
        # Value pi_1, Jacobian J(pi_1). pi_1 >= D / 2, so only classes other than D can reach 0.
        log_pi_1 = pi_1.clamp_min(torch.finfo(pi_1.dtype).tiny).log()
        pi_1 = torch.softmax(logits + (log_pi_1 - logits).detach(), dim=-1)
        return straight_through(one_hot, 2 * pi_1 - pi_0 / 2)
