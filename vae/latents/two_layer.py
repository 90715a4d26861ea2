"""Two stochastic layers of Bernoulli variables, z2 -> z1 -> x: the "two-layer" model of the
REBAR, RELAX and DisARM benchmarks.

    p(x, z1, z2) = p(x|z1) p(z1|z2) p(z2),        q(z1, z2 | x) = q(z1|x) q(z2|z1),

z1 in {0, 1}^N1 the code the decoder reads (the VAE's encoder gives q(z1|x)), z2 in {0, 1}^N2
with a prior p(z2) (learned, or uniform), and q(z2|z1), p(z1|z2) Bernoulli maps with their own
networks (linear, or with tanh hidden layers). The latent is z1: p(z1) = sum_z2 p(z1|z2) p(z2) is its
prior, and that prior is itself a Bernoulli VAE over z1 (`upper`): its one-sample -ELBO at z1,

    -log p^(z1) = -log p(z1|z2) - log p(z2) + log q(z2|z1),     z2 ~ q(z2|z1),

is an estimate of -log p(z1) (exp(log p^) is unbiased for p(z1)), so every number of the model is
the two-layer one: log p(x|z1) + log p^(z1) - log q(z1|x) is the two-layer importance weight
(log_prior), and its mean over q is the two-layer ELBO.

Training (training_terms): layer 1's estimator differentiates E_q(z1|x)[c(z1)] with the cost
c(z1) = -log p(x|z1) - log p^(z1) + log u(z1), where -log p^(z1) is layer 2's training surrogate
(its estimator's gradient for q(z2|z1), the exact one for p(z1|z2) and p(z2)) and u is the
uniform distribution on {0, 1}^N1 (log u = -N1 log 2); the estimator adds KL(q(z1|x) || u), so
the loss is the two-layer -ELBO. Writing the prior's part into the cost keeps every estimator
unchanged: the score-function family's learning signal c + log q - log u is exactly the
two-layer l(x, z1, z2), and an unbiased estimator of layer 1 stays unbiased, the cost's own
randomness (z2) being independent of z1's. Each layer has its estimator (`upper_estimator`:
the same as layer 1's unless set).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.distributions import Distribution, constraints

from vae.errors import require_positive_int
from vae.estimators import Cost, Estimator
from vae.latents.bernoulli import BernoulliLatent, IndependentBernoullis
from vae.networks import MLP, check_activation, check_sizes


class TwoLayerPrior(Distribution):
    """p(z1) = sum_z2 p(z1|z2) p(z2): batch_shape (), event_shape (N1,).

    sample: ancestral, z2 ~ p(z2) then z1 ~ p(z1|z2). log_prob: the one-sample estimate
    log p^(z1) = log p(z1|z2) + log p(z2) - log q(z2|z1), z2 ~ q(z2|z1), with the gradient at that
    z2 to p's and q's networks (an estimate whose exp is unbiased for p(z1), not log p(z1)).
    """

    arg_constraints: dict[str, constraints.Constraint] = {}
    support = constraints.independent(constraints.boolean, 1)

    def __init__(self, latent: TwoLayerBernoulliLatent) -> None:
        self.latent = latent
        super().__init__(torch.Size(), torch.Size((latent.num_latents,)), validate_args=False)

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (), generator=None) -> Tensor:
        """z1 (*sample_shape, N1), no gradient."""
        with torch.no_grad():
            z2 = self.latent.upper.prior().sample(sample_shape, generator=generator)  # (*sample, N2)
            return self.latent.conditional(z2).sample(generator=generator)

    def log_prob(self, value: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """log p^(z1) for z1 (*sample, N1), (*sample,), z2 drawn from `generator`."""
        q2 = self.latent.upper_posterior(value)
        z2 = q2.sample(generator=generator)  # (*sample, N2)
        upper = self.latent.upper
        return self.latent.conditional(z2).log_prob(value) + upper.prior().log_prob(z2) - q2.log_prob(z2)

    def exact_log_prob(self, value: Tensor) -> Tensor:
        """log p(z1) = logsumexp_z2 log p(z1|z2) + log p(z2) by enumerating z2, (*sample,): for
        tests and small models (N2 <= 14)."""
        codes = self.latent.upper.all_codes()  # (C2, N2)
        codes = codes.view(len(codes), *[1] * (value.dim() - 1), codes.shape[-1])  # (C2, *1, N2)
        joint = self.latent.conditional(codes).log_prob(value) + self.latent.upper.prior().log_prob(codes)
        return torch.logsumexp(joint, dim=0)


class TwoLayerBernoulliLatent(BernoulliLatent):
    """z1 of N1 bits (the code the decoder reads) under a prior with a second layer z2 of N2 bits.

    Args:
        num_latents: N1, the bits of z1.
        upper_latents: N2, the bits of z2.
        upper_hidden_sizes: hidden sizes of q(z2|z1) and of p(z1|z2) (mirrored); [] (the REBAR
            and DisARM "two-layer linear" model): each a linear map.
        upper_activation: between their hidden layers (tanh in the REBAR code's nonlinear model).
        prior: p(z2), the top layer's prior: learned (the benchmarks') or uniform.
        estimator: layer 1's gradient estimator (q(z1|x)); upper_estimator: layer 2's (q(z2|z1)),
            None for the same kind and settings as layer 1's.
    """

    def __init__(
        self,
        num_latents: int = 200,
        upper_latents: int = 200,
        upper_hidden_sizes: Sequence[int] = (),
        upper_activation: str = "tanh",
        prior: str = "learned",
        estimator: str | dict[str, Any] | Estimator = "disarm",
        upper_estimator: str | dict[str, Any] | Estimator | None = None,
    ) -> None:
        # prior="uniform": the buffer prior_logits (zeros) is u, the reference measure of training.
        super().__init__(num_latents, prior="uniform", estimator=estimator)
        require_positive_int("upper_latents", upper_latents)
        check_sizes("upper_hidden_sizes", upper_hidden_sizes, allow_none=True)
        check_activation(upper_activation)
        if upper_estimator is None:
            upper_estimator = estimator
        if isinstance(upper_estimator, Estimator):  # its own instance: an estimator holds state
            upper_estimator = {"name": upper_estimator.name, **upper_estimator.settings()}
        self.upper = BernoulliLatent(upper_latents, prior=prior, estimator=upper_estimator)
        hidden = list(upper_hidden_sizes)
        self.upper_encoder = MLP([num_latents, *hidden, upper_latents], upper_activation)  # q(z2|z1)
        self.upper_decoder = MLP([upper_latents, *hidden[::-1], num_latents], upper_activation)  # p(z1|z2)
        self.upper_latents = upper_latents

    def describe(self) -> str:
        return f"{self.num_latents}-{self.upper_latents}-bit two-layer Bernoulli"

    # The second layer ---------------------------------------------------------------------

    def upper_posterior(self, z1: Tensor) -> IndependentBernoullis:
        """q(z2|z1) for z1 (*batch, N1): batch_shape (*batch,), event_shape (N2,)."""
        return self.upper.posterior(self.upper_encoder(z1))

    def conditional(self, z2: Tensor) -> IndependentBernoullis:
        """p(z1|z2) for z2 (*batch, N2): batch_shape (*batch,), event_shape (N1,)."""
        return IndependentBernoullis(self.upper_decoder(z2).float())

    def prior(self) -> TwoLayerPrior:
        return TwoLayerPrior(self)

    def log_prior(self, z: Tensor, generator: torch.Generator | None = None) -> Tensor:
        return self.prior().log_prob(z, generator=generator)

    def upper_neg_elbo(self, z1: Tensor, temperature: float | Tensor | None = None) -> Tensor:
        """-log p^(z1) as layer 2's training surrogate, (*batch,) for z1 (*batch, N1): its value the
        one-sample -ELBO of the upper VAE at z1, its gradient layer 2's estimate."""
        q2 = self.upper_posterior(z1)

        def cost(z2: Tensor) -> Tensor:  # -log p(z1|z2), z2 (*sample, *batch, N2) -> (*sample, *batch)
            return -self.conditional(z2).log_prob(z1)

        return self.upper.training_terms(q2, cost, temperature, inputs=z1)["neg_elbo"]

    # What the model and the objectives read -------------------------------------------------

    @property
    def prior_has_density(self) -> bool:
        return False

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """ "prior": p(z2)'s logits and p(z1|z2)'s network; "control_variate": both estimators'."""
        groups = {"prior": [*self.upper.prior_parameters(), *self.upper_decoder.parameters()]}
        control = [
            *self.estimator.parameter_groups().get("control_variate", []),
            *self.upper.estimator.parameter_groups().get("control_variate", []),
        ]
        return {**groups, "control_variate": control} if control else groups

    def bind_inputs(self, input_shape: tuple[int, ...]) -> None:
        super().bind_inputs(input_shape)
        self.upper.bind_inputs((self.num_latents,))  # layer 2's inputs are z1

    @property
    def uses_temperature(self) -> bool:
        return self.estimator.uses_temperature or self.upper.uses_temperature

    @property
    def estimator_name(self) -> str:
        lower, upper = self.estimator.name, self.upper.estimator_name
        return lower if lower == upper else f"{lower}+{upper}"

    @property
    def can_enumerate(self) -> bool:
        return False

    def enumeration_limit_message(self) -> str:
        return "its prior p(z1) = sum_z2 p(z1|z2) p(z2) is estimated by sampling z2, not enumerated"

    @property
    def has_pathwise_sample(self) -> bool:
        # A pathwise z1 would differentiate log p^(z1) at a fixed z2: no estimate for q(z2|z1).
        return False

    def kl(self, q: Distribution) -> Tensor:
        raise NotImplementedError(
            "the two-layer KL has no closed form: use kl_estimate(q, log_ratio), its sampled estimate"
        )

    def kl_estimate(self, q: Distribution, log_ratio: Callable[[], Tensor]) -> Tensor:
        """The mean over the samples of log q(z1|x) - log p^(z1), the sampled two-layer KL."""
        return log_ratio().mean(0)

    def training_terms(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None = None,
        inputs: Tensor | None = None,
    ) -> dict[str, Tensor]:
        """neg_elbo: layer 1's estimator on c(z1) = cost(z1) - log p^(z1) + log u(z1) plus
        KL(q || u) (the module docstring); kl: its estimate log q(z1|x) - log p^(z1) at one exact
        z1 ~ q, recon the rest. That split is for the logs only (no gradient), and costs one more
        pass of the upper networks (about a tenth of a DisARM step of the 200-200 linear model):
        the estimator's own z1 are not all exact samples (relaxed, or MuProp's mean)."""
        log_reference = -self.num_latents * math.log(2)  # log u(z1) for every z1

        def cost_with_prior(z1: Tensor) -> Tensor:  # (*sample, *batch)
            return cost(z1) + self.upper_neg_elbo(z1, temperature) + log_reference

        reference = IndependentBernoullis(self.prior_logits)  # u: logits 0
        terms = self.estimator.elbo_terms(q, cost_with_prior, reference, temperature, inputs=inputs)
        with torch.no_grad():
            z1 = q.sample((1,))  # (1, *batch, N1)
            kl = self.kl_estimate(q, lambda: q.log_prob(z1) - self.log_prior(z1))
        return {"neg_elbo": terms["neg_elbo"], "recon": terms["neg_elbo"] - kl, "kl": kl}
