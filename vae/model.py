"""The VAE as a plain nn.Module: encoder -> latent -> decoder, its ELBO and its training objective.

    -ELBO(x) = -E_q(z|x)[log p(x|z)] + KL(q(z|x) || p(z))
             =          recon        +        kl              (nats per image)

with the analytic KL. Every number comes from three distributions a user also gets:
`encode(x)` = q(z|x), `decode(z)` = p(x|z), `prior()` = p(z). In training, E_q[recon] and its
gradient come from the latent (reparameterization, or its gradient estimator); in evaluation z is
one exact sample of q(z|x) (one-hot for a categorical latent), so the reported -ELBO is the
bound of the model that is evaluated.

Nothing here knows Lightning, Hydra or W&B: vae.load returns this module, and the training
system (vae/training.py) holds one.

The model's contract, all that the training system, the objectives (vae/objectives/) and the
tools (evaluate, sample, diagnose, report, bench) call on a model:

    encode(x) -> q(z|x)            decode(z) -> p(x|z)            prior() -> p(z)
    log_weights(x, z, q, gen)      log p(x, z) - log q(z|x) and log p(x|z) for k samples z
    negative_elbo(x, z, q, gen)    recon, kl, neg_elbo at a given z
    training_terms(x, tau)         the objective's loss and its terms (what training minimizes)
    evaluation_terms(x, tau, gen)  what validation and test report (float32)
    parameter_groups()             named parameter groups that may have an optimizer of their own
    latent, objective, image_shape, step, tau, and what the objective reads of the latent:
    uses_temperature, relaxes, estimator_name, decoder_passes
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent

from vae.latents.base import Latent
from vae.networks import MNIST_SHAPE
from vae.objectives import OBJECTIVES, Objective, build_objective


class VAE(nn.Module):
    """p(x|z) p(z) with the amortized posterior q(z|x).

    Args:
        latent: q(z|x), p(z), the KL and the training estimate (vae/latents/).
        encoder: images (B, C, H, W) -> (B, latent.num_params).
        decoder: (B, latent.code_size) -> Bernoulli logits (B, C, H, W).
        image_shape: (C, H, W) of the images.
        objective: what training minimizes (vae/objectives/): a name, a config node
            {name: ..., **settings}, an Objective, or None for the one-sample ELBO.
    """

    def __init__(
        self,
        latent: Latent,
        encoder: nn.Module,
        decoder: nn.Module,
        image_shape: Sequence[int] = MNIST_SHAPE,
        objective: str | dict[str, Any] | Objective | None = None,
    ) -> None:
        super().__init__()
        self.latent = latent
        self.encoder = encoder
        self.decoder = decoder
        self.image_shape = tuple(image_shape)  # (C, H, W)
        latent.bind_inputs(self.image_shape)
        # What vae.load sets from a checkpoint: the optimizer steps the weights have had, and the
        # temperature tau at that step (None for latents without one), which relaxed samples use.
        self.step = 0
        self.tau: float | None = None
        self.use_objective(objective)

    def use_objective(self, objective: str | dict[str, Any] | Objective | None) -> None:
        """Train with this objective; vae.errors.InvalidValue if it cannot train the latent
        with its estimator (Objective.check_latent)."""
        built = build_objective(objective, OBJECTIVES)
        built.check_latent(self.latent)
        self.objective = built

    # What the objective reads of the latent: the training system and the records ask the model.

    @property
    def uses_temperature(self) -> bool:
        """Whether training reads a temperature tau (the training system then anneals one)."""
        return self.objective.uses_temperature(self.latent)

    @property
    def relaxes(self) -> bool:
        """Whether training follows a relaxation at tau: evaluation then also reports the relaxed ELBO."""
        return self.objective.relaxes(self.latent)

    @property
    def estimator_name(self) -> str:
        """The gradient estimator training uses, by name (the run records it)."""
        return self.objective.estimator_name(self.latent)

    @property
    def decoder_passes(self) -> int:
        """Decoder passes per image and training step, for comparisons at equal compute."""
        return self.objective.decoder_passes(self.latent)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Named groups of parameters that can have an optimizer of their own ("prior", an
        estimator's "control_variate": Latent.parameter_groups); the rest train with the main one."""
        return self.latent.parameter_groups()

    @property
    def wants_data_mean(self) -> bool:
        """Whether a block adapts to the training images' mean (adapt_to_data)."""
        return any(getattr(block, "wants_data_mean", False) for block in (self.encoder, self.decoder))

    def adapt_to_data(self, mean_image: Tensor) -> None:
        """Pass the training images' mean (C, H, W) to the blocks that use it: an encoder that
        centres its input, a decoder whose output bias starts at logit(mean)."""
        for block in (self.encoder, self.decoder):
            if getattr(block, "wants_data_mean", False):
                block.adapt_to_data(mean_image.to(next(block.parameters()).device))

    def encode(self, x: Tensor) -> Distribution:
        """q(z|x) for binarized images x (B, C, H, W): batch_shape (B,)."""
        return self.latent.posterior(self.encoder(x))

    def decode(self, z: Tensor) -> Distribution:
        """p(x|z), Bernoulli over pixels, for z (*batch, *event): batch_shape (*batch,)."""
        batch_shape = z.shape[: z.dim() - len(self.latent.event_shape)]
        logits = self.decoder(z.reshape(-1, self.latent.code_size)).float()  # (prod(batch), C, H, W)
        logits = logits.view(*batch_shape, *logits.shape[1:])  # (*batch, C, H, W)
        return Independent(Bernoulli(logits=logits, validate_args=False), 3)

    def prior(self) -> Distribution:
        """p(z)."""
        return self.latent.prior()

    def log_weights(
        self, x: Tensor, z: Tensor, q: Distribution, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor]:
        """For k samples z (k, *batch, *event) of q(z|x) and images x (*batch, C, H, W): the
        log-weights log p(x|z) + log p(z) - log q(z|x) and log p(x|z), each (k, *batch).

        The one computation of the importance weights: the multi-sample objectives train on it
        and the k-sample bound of evaluation (vae/evaluation.py) reports it. log p(z) is the
        latent's log_prior (for the two-layer latent a sampled estimate, its noise from generator).
        """
        log_likelihood = self.decode(z).log_prob(x.expand(z.shape[0], *x.shape))  # (k, *batch)
        return log_likelihood + self.latent.log_prior(z, generator) - q.log_prob(z), log_likelihood

    def negative_elbo(
        self, x: Tensor, z: Tensor, q: Distribution, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """Per-image recon = -log p(x|z), kl = KL(q || p(z)) (Latent.kl_estimate: the closed form,
        or its estimate at z) and their sum, each (B,)."""
        recon = -self.decode(z).log_prob(x)
        kl = self.latent.kl_estimate(q, lambda: (q.log_prob(z) - self.latent.log_prior(z, generator))[None])
        return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}

    def training_terms(self, x: Tensor, temperature: float | Tensor | None = None) -> dict[str, Tensor]:
        """Per-image loss, neg_elbo, recon and kl (B,): loss is what training minimizes, its
        gradient the objective's estimate (vae/objectives/).

        With the default objective (the ELBO) loss is neg_elbo, its value an estimate of the
        -ELBO and its gradient the latent's estimate of the -ELBO's gradient (vae/latents/base.py,
        vae/estimators/base.py): most add the analytic KL to a surrogate of E_q[-log p(x|z)]; the
        score-function family puts the KL inside its learning signal, as its papers do.
        """
        return self.objective.training_terms(self, x, temperature)

    @torch.no_grad()
    def evaluation_terms(
        self, x: Tensor, temperature: float | None = None, generator: torch.Generator | None = None
    ) -> dict[str, Tensor]:
        """What validation and test report, per image (B,): recon, kl and neg_elbo with one exact
        z ~ q(z|x) drawn from `generator`, and neg_elbo_relaxed (the relaxed sample at tau) for
        latents trained through a relaxation.

        Always in float32: under mixed precision (trainer.precision=bf16-mixed) autocast is turned
        off here, so evaluation numbers do not depend on the precision training used.
        """
        with torch.autocast(x.device.type, enabled=False):
            x = x.float()
            q = self.encode(x)
            terms = self.negative_elbo(x, q.sample(generator=generator), q, generator)
            if self.relaxes and temperature is not None:
                relaxed = self.latent.relaxed_sample(q, temperature, generator=generator)
                terms["neg_elbo_relaxed"] = self.negative_elbo(x, relaxed, q, generator)["neg_elbo"]
        return terms


def build_vae(
    latent: str | type[Latent],
    encoder: Callable[..., nn.Module],
    decoder: Callable[..., nn.Module],
    image_shape: Sequence[int] = MNIST_SHAPE,
    objective: str | dict[str, Any] | Objective | None = None,
    **settings: Any,
) -> VAE:
    """A VAE from configs/model/*.yaml: the latent class (or its import path) built with
    `settings`, and encoder and decoder blocks sized for it and for the data's image shape;
    objective: as for VAE (configs/objective/; None: the ELBO).

    Args:
        encoder: called as encoder(out_features=latent.num_params, image_shape=image_shape).
        decoder: called as decoder(in_features=latent.code_size, image_shape=image_shape).
    """
    if isinstance(latent, str):
        from hydra.utils import get_class

        latent = get_class(latent)
    built: Latent = latent(**settings)
    return VAE(
        built,
        encoder(out_features=built.num_params, image_shape=tuple(image_shape)),
        decoder(in_features=built.code_size, image_shape=tuple(image_shape)),
        image_shape,
        objective,
    )
