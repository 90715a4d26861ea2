"""What the discrete latents (categorical, Bernoulli) share: z is an exact sample, and training
differentiates E_q[cost(z)] through a gradient estimator, built from the estimator families the
latent accepts (Latent.estimators; vae/estimators/)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vae.estimators import Cost, Estimator, PathwiseEstimator, build_estimator
from vae.latents.base import Latent


class DiscreteLatent(Latent):
    """Base of the discrete latents. A subclass sets its sizes, then calls use_estimator."""

    estimator: Estimator

    def use_estimator(self, estimator: str | dict[str, Any] | Estimator) -> None:
        """Build the estimator (a name, a config node or an Estimator) and check it serves this latent."""
        self.estimator = build_estimator(estimator, self.estimators)
        self.estimator.check_latent(self)
        self.estimator.bind_latent(self)

    @property
    def uses_temperature(self) -> bool:
        return self.estimator.uses_temperature

    @property
    def relaxes(self) -> bool:
        return self.estimator.relaxes

    @property
    def estimator_name(self) -> str:
        return self.estimator.name

    @property
    def decoder_passes(self) -> int:
        return self.estimator.decoder_passes

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        """The estimator's surrogate for E_q[cost(z)], (*batch,)."""
        return self.estimator.surrogate(q, cost, temperature, inputs=inputs)

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {**super().parameter_groups(), **self.estimator.parameter_groups()}

    @property
    def has_pathwise_sample(self) -> bool:
        return isinstance(self.estimator, PathwiseEstimator)

    def pathwise_sample(
        self,
        q: Distribution,
        sample_shape: tuple[int, ...],
        temperature: float | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """The estimator's sample for each of sample_shape copies of q, drawn independently."""
        if not self.has_pathwise_sample:
            return super().pathwise_sample(q, sample_shape, temperature, generator)
        expanded = type(q)(q.logits.expand(*sample_shape, *q.logits.shape))  # q's logits, shared
        return self.estimator.sample(expanded, temperature, generator)

    def training_terms(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None = None,
        inputs: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """The estimator decides how the KL enters the training gradient (Estimator.elbo_terms)."""
        return self.estimator.elbo_terms(q, cost, self.prior(), temperature, inputs=inputs)

    def bind_inputs(self, input_shape: tuple[int, ...]) -> None:
        self.estimator.bind_inputs(input_shape)

    def reconstruction_codes(
        self, q: Distribution, temperature: float | None = None, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """An exact z ~ q(z|x) (the model that is evaluated) and, given tau, the relaxed sample at tau
        beneath it."""
        codes = [q.sample(generator=generator)]
        if temperature is not None:
            codes.append(self.relaxed_sample(q, temperature, generator))
        return codes
