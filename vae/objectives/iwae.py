"""The importance-weighted bound (Burda et al. 2016) as the training objective:

    L_k(x) = log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x),    z_1..z_k ~ q(z|x) independently,

a lower bound on log p(x) that tightens as k grows (L_1 is the ELBO), trained through pathwise
samples: the Gaussian's reparameterization z = mu + sigma * eps, or a discrete latent's pathwise
estimator (the Gumbel-Softmax family, straight-through, ReinMax, Gumbel-Rao). For a relaxed
sample (Gumbel-Softmax, binary Concrete) log q(z|x) and log p(z) are the discrete
log-probabilities extended linearly off the one-hot codes (sum_n z_n . log pi_n), as the ELBO
here uses the discrete KL; a straight-through sample is exactly one-hot forward, so its value is
the exact k-sample bound. The gradient is the plain IWAE one (no doubly-reparameterized
correction). k decoder passes per image, each with the estimator's own passes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import Tensor

from vae.errors import InvalidValue
from vae.objectives.base import Objective, log_mean_exp, sampled_terms

if TYPE_CHECKING:
    from vae.latents.base import Latent
    from vae.model import VAE


class IWAE(Objective):
    name = "iwae"

    def __init__(self, num_samples: int = 5) -> None:
        """num_samples: k, the samples of z per image."""
        super().__init__(num_samples)

    def check_latent(self, latent: Latent) -> None:
        self.require_prior_density(latent)
        if not latent.has_pathwise_sample:
            raise InvalidValue(
                "objective",
                self.name,
                "trains through pathwise samples (the Gaussian latent, or a discrete latent's"
                " Gumbel-Softmax, straight-through, ReinMax or Gumbel-Rao estimator);"
                f" model.estimator={latent.estimator_name} is not one (objective=vimco is the"
                " k-sample bound for exact samples)",
            )

    def training_terms(self, model: VAE, x: Tensor, temperature: float | Tensor | None) -> dict[str, Tensor]:
        q = model.encode(x)
        z = model.latent.pathwise_sample(q, (self.num_samples,), temperature)  # (k, *batch, *event)
        log_weights, log_likelihood = model.log_weights(x, z, q)  # (k, *batch) each
        return sampled_terms(-log_mean_exp(log_weights), log_weights, log_likelihood)
