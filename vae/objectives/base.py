"""What a training objective is: the per-image loss whose gradient trains the VAE.

An objective reads only the model's contract (vae/model.py: encode, decode, prior, log_weights,
latent) and returns, per image (*batch,):

    loss      what training minimizes: its value a bound on -log p(x), its gradient the
              objective's gradient estimate
    neg_elbo  an estimate of the one-sample -ELBO, recon + kl (for the logs)
    recon     -log p(x|z), averaged over the objective's samples
    kl        KL(q(z|x) || p(z)) or its sampled estimate log q(z|x) - log p(z)

Objectives are chosen with objective=NAME (configs/objective/). Each states which latents and
estimators it admits (check_latent, refused before any work) and what it changes of what the
training system reads (the temperature, the relaxed ELBO in evaluation, the estimator's name and
decoder passes). To add one: a file here with a subclass of Objective, a line in __init__.py,
and a config in configs/objective/.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import Tensor

from vae.errors import InvalidValue, require_positive_int

if TYPE_CHECKING:
    from vae.latents.base import Latent
    from vae.model import VAE


class Objective:
    """Base class: an objective with num_samples samples of z per image."""

    name: ClassVar[str]  # what objective= calls it
    # Whether the loss is the one-sample -ELBO itself (then logged as train/neg_elbo alone).
    loss_is_neg_elbo: ClassVar[bool] = False

    def __init__(self, num_samples: int = 1) -> None:
        require_positive_int("num_samples", num_samples)
        self.num_samples = num_samples

    def settings(self) -> dict[str, Any]:
        """The constructor arguments that built it (what its config sets)."""
        return {"num_samples": self.num_samples}

    def __repr__(self) -> str:
        settings = ", ".join(f"{key}={value!r}" for key, value in self.settings().items())
        return f"{type(self).__name__}({settings})"

    def check_latent(self, latent: Latent) -> None:
        """Raise InvalidValue if the objective cannot train this latent with its estimator."""

    def require_prior_density(self, latent: Latent) -> None:
        """For an objective that differentiates the log-weights: refuse a latent whose log p(z) is
        a sampled estimate (Latent.prior_has_density), whose own noise would get no gradient."""
        if not latent.prior_has_density:
            raise InvalidValue(
                "objective",
                self.name,
                f"cannot train the {latent.describe()} latent: its log p(z) is a one-sample estimate"
                " (a second stochastic layer) that the k-sample objectives do not differentiate;"
                " use objective=elbo",
            )

    def training_terms(self, model: VAE, x: Tensor, temperature: float | Tensor | None) -> dict[str, Tensor]:
        """{"loss", "neg_elbo", "recon", "kl"} per image (*batch,) for images x (*batch, C, H, W)."""
        raise NotImplementedError

    # What the training system and the records read -----------------------------------------

    def uses_temperature(self, latent: Latent) -> bool:
        """Whether training reads a temperature tau (and so anneals one)."""
        return latent.uses_temperature

    def relaxes(self, latent: Latent) -> bool:
        """Whether training follows a relaxation at tau (evaluation then reports the relaxed ELBO)."""
        return latent.relaxes

    def estimator_name(self, latent: Latent) -> str:
        """The gradient estimator a run records."""
        return latent.estimator_name

    def decoder_passes(self, latent: Latent) -> int:
        """Decoder passes per image and step."""
        return self.num_samples * latent.decoder_passes


def registry(*classes: type[Objective]) -> dict[str, type[Objective]]:
    """{name: class}."""
    return {cls.name: cls for cls in classes}


def build_objective(
    spec: str | dict[str, Any] | Objective | None, available: dict[str, type[Objective]]
) -> Objective:
    """An Objective from a name, a config node {name: ..., **settings}, an Objective, or None (the
    ELBO); a bad setting raises InvalidValue naming it (num_samples, ...)."""
    if isinstance(spec, Objective):
        return spec
    settings = {} if spec is None else ({"name": spec} if isinstance(spec, str) else dict(spec))
    name = settings.pop("name", "elbo")
    if name not in available:
        raise InvalidValue("name", name, f"must be one of {', '.join(available)}")
    try:
        return available[name](**settings)
    except TypeError as e:  # an unknown setting
        raise InvalidValue("settings", settings, f"{name} takes no such setting ({e})") from None


def log_mean_exp(log_weights: Tensor) -> Tensor:
    """log (1/k) sum_j exp(log_weights_j) over the first dim: (k, *batch) -> (*batch,).

    For log-weights log w_j = log p(x, z_j) - log q(z_j|x), z_j ~ q(z|x), this is the k-sample
    importance-weighted bound on log p(x) (Burda et al. 2016), computed with logsumexp.
    """
    return torch.logsumexp(log_weights, dim=0) - math.log(log_weights.shape[0])


def sampled_terms(loss: Tensor, log_weights: Tensor, log_likelihood: Tensor) -> dict[str, Tensor]:
    """The terms of a multi-sample objective from its loss (*batch,) and the log-weights and
    log p(x|z_j) of its k samples (k, *batch): recon and the sampled KL, each averaged over the
    samples, and their sum, the one-sample -ELBO averaged over the k samples."""
    neg_elbo = -log_weights.mean(0)
    recon = -log_likelihood.mean(0)
    return {"loss": loss, "neg_elbo": neg_elbo, "recon": recon, "kl": neg_elbo - recon}
