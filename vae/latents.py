"""The two latents: what q(z|x), p(z) and the training sample are for each model.

A latent turns the encoder's flat output (B, num_params) into q(z|x) as a
torch.distributions object, gives the prior p(z), draws the training sample (with a gradient
path to q's parameters), and says how many inputs the decoder takes (code_size).

- GaussianLatent: q(z|x) = N(mu, diag sigma^2), z = mu + sigma * eps (reparameterization),
  p(z) = N(0, I), KL(q || p) = 1/2 sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2).
- CategoricalLatent: N independent categoricals of K classes, z one-hot (B, N, K),
  p(z) uniform, KL(q || p) = sum_n sum_k q_nk (log q_nk + log K). Training differentiates
  E_q[-log p(x|z)] with a gradient estimator (vae/estimators/; Gumbel-Softmax by default). The
  KL is that of the discrete model, so the ELBO is a true bound only with one-hot samples.

Both give `expected_cost(q, cost, temperature)`: a per-image surrogate whose value estimates
E_q[cost(z)] and whose gradient is the latent's gradient estimate (vae/estimators/base.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import (
    Categorical,
    Distribution,
    Independent,
    Normal,
    OneHotCategorical,
)

from vae.estimators import Estimator, as_estimator
from vae.estimators.base import Cost
from vae.gumbel import gumbel_softmax
from vae.validation import require_positive_int


class _UncheckedOneHotCategorical(OneHotCategorical):
    """OneHotCategorical without argument validation, inner Categorical included.

    torch builds the inner Categorical with the default validate_args whatever is passed
    (torch/distributions/one_hot_categorical.py), which costs a host sync every step and turns
    a NaN into a ValueError before the training step can report the step and tau.
    """

    def __init__(self, logits: Tensor) -> None:
        self._categorical = Categorical(logits=logits, validate_args=False)
        batch_shape, event_shape = self._categorical.batch_shape, self._categorical.param_shape[-1:]
        Distribution.__init__(self, batch_shape, event_shape, validate_args=False)


class GaussianLatent(nn.Module):
    """dim-dimensional diagonal Gaussian latent with a standard normal prior."""

    uses_temperature = False
    event_ndim = 1  # z is (*batch, dim)

    def __init__(self, dim: int = 20) -> None:
        super().__init__()
        require_positive_int("dim", dim)
        self.dim = dim
        self.num_params = 2 * dim  # mu and the pre-softplus scale
        self.code_size = dim
        self.register_buffer("_zeros", torch.zeros(dim), persistent=False)

    def posterior(self, params: Tensor) -> Distribution:
        """q(z|x) from encoder output (B, 2 * dim): batch_shape (B,), event_shape (dim,)."""
        loc, raw_scale = params.float().chunk(2, dim=-1)  # (B, dim) each
        # softplus keeps sigma > 0 without the exp(log sigma) overflow; 1e-4 keeps log sigma finite.
        scale = F.softplus(raw_scale) + 1e-4
        return Independent(Normal(loc, scale, validate_args=False), 1, validate_args=False)

    def prior(self) -> Distribution:
        """p(z) = N(0, I): batch_shape (), event_shape (dim,)."""
        return Independent(
            Normal(self._zeros, torch.ones_like(self._zeros), validate_args=False),
            1,
            validate_args=False,
        )

    def rsample(self, q: Distribution, temperature: float | None = None) -> Tensor:
        """Reparameterized z = mu + sigma * eps, (B, dim)."""
        return q.rsample()

    def expected_cost(self, q: Distribution, cost: Cost, temperature: float | None = None) -> Tensor:
        """cost(z) of one reparameterized sample, (B,): unbiased in value and gradient."""
        return cost(q.rsample())


class CategoricalLatent(nn.Module):
    """num_variables independent categoricals of num_classes each, with a uniform prior."""

    event_ndim = 2  # z is (*batch, N, K)

    def __init__(
        self,
        num_variables: int = 20,
        num_classes: int = 10,
        estimator: str | Estimator = "gumbel_softmax",
    ) -> None:
        super().__init__()
        require_positive_int("num_variables", num_variables)
        require_positive_int("num_classes", num_classes)
        self.num_variables, self.num_classes = num_variables, num_classes
        self.estimator = as_estimator(estimator)
        self.estimator.check_latent(num_variables, num_classes)
        self.num_params = num_variables * num_classes
        self.code_size = num_variables * num_classes  # the decoder reads the flattened one-hots
        self.register_buffer("_uniform_logits", torch.zeros(num_variables, num_classes), persistent=False)

    def posterior(self, params: Tensor) -> Distribution:
        """q(z|x) from encoder output (B, N*K): batch_shape (B,), event_shape (N, K)."""
        logits = params.float().view(-1, self.num_variables, self.num_classes)  # (B, N, K)
        return Independent(_UncheckedOneHotCategorical(logits), 1, validate_args=False)

    def prior(self) -> Distribution:
        """p(z) uniform over K classes per variable: batch_shape (), event_shape (N, K)."""
        return Independent(_UncheckedOneHotCategorical(self._uniform_logits), 1, validate_args=False)

    @property
    def uses_temperature(self) -> bool:
        return self.estimator.uses_temperature

    def rsample(self, q: Distribution, temperature: float | None = None) -> Tensor:
        """The relaxed Gumbel-Softmax sample at temperature tau, (B, N, K)."""
        if temperature is None:
            raise ValueError("the categorical latent needs a temperature to draw a relaxed sample")
        logits = q.base_dist.logits  # (B, N, K), normalized log-probabilities
        return gumbel_softmax(logits, temperature)

    def expected_cost(self, q: Distribution, cost: Cost, temperature: float | None = None) -> Tensor:
        """The estimator's surrogate for E_q[cost(z)], (B,)."""
        return self.estimator.surrogate(q.base_dist.logits, cost, temperature)
