"""Gumbel-Rao Monte Carlo (Paulus et al. 2021): ST-Gumbel-Softmax, Rao-Blackwellized.

Forward: the exact sample D = one_hot(i), i ~ Categorical(softmax theta). Backward: the ST
Gumbel-Softmax gradient averaged over num_draws Gumbel perturbations drawn from their
conditional distribution given argmax = i. With Z = sum_j exp(theta_j) and E ~ Exp(1):

    theta_i + G_i = -log E_i + log Z
    theta_j + G_j = -log(E_j exp(-theta_j) + E_i / Z),  j != i

Same expected gradient as ST-Gumbel-Softmax, lower variance. The conditional Gumbels carry no
gradient; theta enters the relaxed sample directly. Computed in log space from normalized
log-probabilities (log Z = 0), so no exp can overflow.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.errors import require_positive_int
from vae.estimators.base import PathwiseEstimator, straight_through
from vae.gumbel import check_temperature, exponential_noise, gumbel_max


class GumbelRao(PathwiseEstimator):
    name = "gumbel_rao"
    relaxes = True

    def __init__(self, num_draws: int = 10) -> None:
        """num_draws: conditional Gumbel draws per sample (the paper's K)."""
        super().__init__()
        require_positive_int("num_draws", num_draws)
        self.num_draws = num_draws

    def settings(self) -> dict[str, int]:
        return {"num_draws": self.num_draws}

    def sample(
        self, q: Distribution, temperature: float | Tensor | None, generator: torch.Generator | None = None
    ) -> Tensor:
        tau = check_temperature(temperature)
        logits = q.logits  # (*batch, N, K)
        one_hot = gumbel_max(logits, generator=generator)  # (*batch, N, K): D
        log_p = torch.log_softmax(logits.to(one_hot.dtype), dim=-1)  # (*batch, N, K), log Z = 0
        noise = conditional_gumbel(log_p.detach(), one_hot, self.num_draws, generator)  # (M, *batch, N, K)
        relaxed = torch.softmax((log_p + noise) / tau, dim=-1).mean(0)  # (*batch, N, K)
        return straight_through(one_hot, relaxed)


def conditional_gumbel(
    log_p: Tensor, one_hot: Tensor, num_draws: int, generator: torch.Generator | None
) -> Tensor:
    """G (num_draws, *log_p.shape) ~ Gumbel noise conditioned on argmax(log_p + G) = one_hot.

    Args:
        log_p: (..., K) normalized log-probabilities, no gradient.
        one_hot: (..., K) the observed argmax.
    """
    exp = exponential_noise(
        (num_draws, *log_p.shape), dtype=log_p.dtype, device=log_p.device, generator=generator
    )
    log_e = exp.log()  # (M, ..., K), finite: the draws lie in [6e-8, 87.3]
    log_e_top = (log_e * one_hot).sum(-1, keepdim=True)  # (M, ..., 1): log E_i of the sampled class
    top = -log_e_top  # log p_i + G_i = -log E_i + log Z, log Z = 0
    others = -torch.logaddexp(log_e - log_p, log_e_top)  # -log(E_j / p_j + E_i)
    scores = torch.where(one_hot.bool(), top, others)
    return scores - log_p
