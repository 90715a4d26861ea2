"""What every latent variable implements: the interface the model, the tools and the tests use.

A latent turns the encoder's flat output (*batch, num_params) into q(z|x), gives the prior p(z),
the KL between them, and the training estimate of E_q[cost(z)]; it also says what the pictures
and the latent-health numbers mean for it. Code outside vae/latents/ never asks which latent it
has: everything that differs between latents is a method here (as torch.distributions puts
`rsample` and `enumerate_support` on the distribution).

The distributions a latent returns follow torch.distributions (batch_shape (*batch,),
event_shape the latent's `event_shape`), and their `sample(sample_shape, generator=None)` also
takes a torch.Generator, so that evaluation can draw from noise of its own.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, kl_divergence

from vae.errors import InvalidValue

Cost = Callable[[Tensor], Tensor]  # z (*sample, *batch, *event) -> cost (*sample, *batch)

# Latents with at most this many codes can be enumerated: the exact estimator, the exact NLL and
# vae.diagnose's exact gradient sum over every code (2^14 codes, one decoder pass each).
MAX_ENUMERATED_CODES = 2**14


class Latent(nn.Module, ABC):
    """Base class. Subclasses set num_params, code_size and event_shape in __init__."""

    num_params: int  # encoder outputs per image
    code_size: int  # decoder inputs per image: z flattened
    event_shape: tuple[int, ...]  # the shape of one image's z
    # The gradient estimators this latent can be trained with, by name ({} when it needs none).
    estimators: ClassVar[dict[str, type]] = {}

    # q(z|x), p(z), KL -------------------------------------------------------------------

    @abstractmethod
    def posterior(self, params: Tensor) -> Distribution:
        """q(z|x) from the encoder's output (*batch, num_params): batch_shape (*batch,)."""

    @abstractmethod
    def prior(self) -> Distribution:
        """p(z): batch_shape (), event_shape the latent's. Fixed, or with learned parameters."""

    def kl(self, q: Distribution) -> Tensor:
        """KL(q(z|x) || p(z)) per image, (*batch,), in closed form."""
        return kl_divergence(q, self.prior())

    def kl_estimate(self, q: Distribution, log_ratio: Callable[[], Tensor]) -> Tensor:
        """The KL that is reported, (*batch,): the closed form here; a latent without one (the
        two-layer) averages log_ratio(), log q(z|x) - log p(z) at samples z of q, (k, *batch) (a
        function, so that a latent with a closed form computes nothing more)."""
        return self.kl(q)

    def log_prior(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log p(z), (*sample, *batch), for z (*sample, *batch, *event): prior().log_prob. A latent
        whose prior has no closed form (the two-layer) returns an estimate whose exp is unbiased for
        p(z), drawing its own noise from `generator` (prior_has_density is then False)."""
        return self.prior().log_prob(z)

    @property
    def prior_has_density(self) -> bool:
        """Whether log_prior is log p(z) itself (False: a sampled estimate, which the multi-sample
        objectives cannot differentiate)."""
        return True

    def prior_parameters(self) -> list[nn.Parameter]:
        """The parameters of a learned prior (none for a fixed one)."""
        return []

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """The named groups of the latent's parameters that the training system can give an
        optimizer of their own (group_optimizers in configs/train.yaml): "prior" for a learned
        prior; a discrete latent adds its estimator's (Estimator.parameter_groups)."""
        prior = self.prior_parameters()
        return {"prior": prior} if prior else {}

    def bind_inputs(self, input_shape: tuple[int, ...]) -> None:
        """Called when the VAE is built, with the shape of one input image: a latent whose
        estimator reads the inputs (NVIL's baseline) passes it on."""

    # Training ---------------------------------------------------------------------------

    @property
    def uses_temperature(self) -> bool:
        """Whether training reads a temperature tau (the training system then anneals one)."""
        return False

    @property
    def estimator_name(self) -> str:
        """How training differentiates E_q[cost(z)]: a discrete latent's gradient estimator, by name."""
        return "reparameterization"

    @property
    def decoder_passes(self) -> int:
        """Decoder passes per image in a training step: the estimator's cost, for comparisons at
        equal compute (a gradient of the cost at a point counts as one more pass)."""
        return 1

    @property
    def relaxes(self) -> bool:
        """Whether training follows the gradient of a relaxed z (at tau): evaluation then also
        reports the relaxed ELBO, the objective such training optimizes."""
        return False

    def training_terms(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None = None,
        inputs: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """Per-image recon, kl and neg_elbo (*batch,) whose gradient is the training gradient of
        -ELBO = E_q[cost(z)] + KL(q || p): here the surrogate of E_q[cost] plus the analytic KL."""
        recon = self.surrogate(q, cost, temperature, inputs=inputs)
        kl = self.kl(q)
        return {"neg_elbo": recon + kl, "recon": recon, "kl": kl}

    @abstractmethod
    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        """A per-image surrogate (*batch,) whose value estimates E_q[cost(z)] and whose gradient
        is the latent's gradient estimate (reparameterization, or its estimator); inputs are the
        images (*batch, C, H, W), for estimators whose baselines read them."""

    @property
    def has_pathwise_sample(self) -> bool:
        """Whether pathwise_sample gives samples to backpropagate through (what objective=iwae needs)."""
        return False

    def pathwise_sample(
        self,
        q: Distribution,
        sample_shape: tuple[int, ...],
        temperature: float | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """z (*sample_shape, *batch, *event) with a backward path to q's parameters: the
        reparameterization, or a discrete latent's pathwise estimator (its forward value and
        gradient)."""
        raise NotImplementedError(f"{self.describe()} with {self.estimator_name} has no pathwise sample")

    def relaxed_sample(
        self, q: Distribution, temperature: float, generator: torch.Generator | None = None
    ) -> Tensor:
        """A relaxed sample at temperature tau, (*batch, *event), for latents that have one."""
        raise NotImplementedError(f"{type(self).__name__} has no relaxed sample")

    # Enumeration ------------------------------------------------------------------------

    @property
    def num_codes(self) -> int | None:
        """How many values z can take; None for a continuous latent."""
        return None

    @property
    def can_enumerate(self) -> bool:
        return self.num_codes is not None and self.num_codes <= MAX_ENUMERATED_CODES

    def all_codes(self) -> Tensor:
        """Every value of z, (num_codes, *event_shape), when there are at most MAX_ENUMERATED_CODES."""
        if not self.can_enumerate:
            raise InvalidValue("latent", self.describe(), self.enumeration_limit_message())
        return self.prior().enumerate_support(expand=False)

    def enumeration_limit_message(self) -> str:
        if self.num_codes is None:
            return "it is continuous: its codes cannot be enumerated"
        return (
            f"it has {self.num_codes:.3g} codes, more than the {MAX_ENUMERATED_CODES} that can be enumerated"
        )

    def describe(self) -> str:
        """A short name for messages, e.g. '20x10 categorical'."""
        return type(self).__name__

    # Pictures and latent health ---------------------------------------------------------

    @abstractmethod
    def reconstruction_codes(
        self, q: Distribution, temperature: float | None = None, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """The codes a reconstruction picture decodes, one (*batch, *event) tensor per row."""

    @abstractmethod
    def coordinate_information(self, posteriors: Sequence[Distribution]) -> Tensor:
        """(num_coordinates,) how much each latent coordinate carries about x, over the images
        whose posteriors are given: what ranks the coordinates of a traversal."""

    @abstractmethod
    def traversal(self, q: Distribution, coordinate: int, steps: int) -> Tensor:
        """For q of one image (batch_shape (1,)): codes (T, *event) that step one coordinate
        through its values, the others held at their most likely value."""

    @abstractmethod
    def health(self, posteriors: Sequence[Distribution]) -> dict[str, Any]:
        """Whether the latent is used, over the images whose posteriors are given:
        {"latent/<name>": number or list}. Every latent's has "latent/in_use", how many of its
        "latent/coordinates" carry information about x by its own criterion (active bits,
        variables that do not ignore x, active units): the number a table compares across
        latents; the rest is in the latent's own terms."""

    def manifold(self, steps: int) -> Tensor | None:
        """Codes (steps^2, *event) on a grid over a 2-D latent's prior, or None (no such picture)."""
        return None
