"""The one-sample ELBO (Kingma & Welling 2014), the default objective:

    -ELBO(x) = E_q(z|x)[-log p(x|z)] + KL(q(z|x) || p(z)),

its gradient the latent's: the reparameterization trick, or the discrete latent's gradient
estimator (most add the analytic KL; the score-function family puts the KL inside its learning
signal: vae/estimators/base.py, Estimator.elbo_terms). Admits every latent and estimator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor

from vae.objectives.base import Objective

if TYPE_CHECKING:
    from vae.model import VAE


class ELBO(Objective):
    name = "elbo"
    loss_is_neg_elbo = True

    def __init__(self) -> None:
        super().__init__(num_samples=1)

    def settings(self) -> dict[str, Any]:
        return {}

    def decoder_passes(self, latent) -> int:
        return latent.decoder_passes

    def training_terms(self, model: VAE, x: Tensor, temperature: float | Tensor | None) -> dict[str, Tensor]:
        q = model.encode(x)
        terms = model.latent.training_terms(q, lambda z: -model.decode(z).log_prob(x), temperature, inputs=x)
        return {"loss": terms["neg_elbo"], **terms}
