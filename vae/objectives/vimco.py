"""VIMCO (Mnih & Rezende 2016): the k-sample bound with exact samples and per-sample
leave-one-out learning signals, a score-function estimator of the multi-sample objective.

With z_1..z_k ~ q(z|x) exactly, log w_j = log p(x|z_j) + log p(z_j) - log q(z_j|x) and
L = log (1/k) sum_j w_j (the bound IWAE trains), the gradient is

    grad L = sum_j (L - L_{-j}) grad log q(z_j|x)  +  sum_j w~_j grad log w_j,

w~_j = w_j / sum_i w_i, and L_{-j} the bound with w_j replaced by the geometric mean of the
others, exp(mean_{i != j} log w_i): a baseline for sample j that does not depend on z_j, so the
estimate is unbiased. The second sum is the gradient of L at fixed z (the decoder's, a learned
prior's, and the direct term of log q). It serves any latent whose q(z|x) samples and scores
codes; it is its own gradient estimator, so the latent's model.estimator is not used (the run
records estimator=vimco) and there is no temperature. k decoder passes per image.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from vae.errors import require
from vae.objectives.base import Objective, log_mean_exp, sampled_terms

if TYPE_CHECKING:
    from vae.latents.base import Latent
    from vae.model import VAE


def leave_one_out_bounds(log_weights: Tensor) -> Tensor:
    """L_{-j} for each j, (k, *batch): the bound with log w_j replaced by the mean of the others."""
    k = log_weights.shape[0]
    others_mean = (log_weights.sum(0, keepdim=True) - log_weights) / (k - 1)  # (k, *batch)
    own = torch.eye(k, dtype=torch.bool, device=log_weights.device)
    own = own.view(k, k, *[1] * (log_weights.dim() - 1))
    # Row j: log w with its j-th entry replaced, (k, k, *batch).
    replaced = torch.where(own, others_mean.unsqueeze(1), log_weights.unsqueeze(0))
    return torch.logsumexp(replaced, dim=1) - math.log(k)


class VIMCO(Objective):
    name = "vimco"

    def __init__(self, num_samples: int = 5) -> None:
        """num_samples: k, the samples of z per image; the leave-one-out baselines need two."""
        super().__init__(num_samples)
        require(
            num_samples >= 2,
            "num_samples",
            num_samples,
            "must be >= 2 (the leave-one-out baselines need two)",
        )

    def check_latent(self, latent: Latent) -> None:
        self.require_prior_density(latent)

    def training_terms(self, model: VAE, x: Tensor, temperature: float | Tensor | None) -> dict[str, Tensor]:
        q = model.encode(x)
        z = q.sample((self.num_samples,))  # (k, *batch, *event), exact, no gradient
        log_weights, log_likelihood = model.log_weights(x, z, q)  # (k, *batch) each
        bound = log_mean_exp(log_weights)  # (*batch,): its gradient at fixed z is the second sum
        signal = (bound.unsqueeze(0) - leave_one_out_bounds(log_weights)).detach()  # (k, *batch)
        log_q = q.log_prob(z)  # (k, *batch), with the gradient to q's parameters
        score = (signal * (log_q - log_q.detach())).sum(0)  # value 0, gradient the first sum
        return sampled_terms(-(bound + score), log_weights, log_likelihood)

    def uses_temperature(self, latent: Latent) -> bool:
        return False

    def relaxes(self, latent: Latent) -> bool:
        return False

    def estimator_name(self, latent: Latent) -> str:
        return self.name

    def decoder_passes(self, latent: Latent) -> int:
        return self.num_samples
