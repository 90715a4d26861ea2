"""N independent categorical variables of K classes, z one-hot (Jang et al. 2017).

q(z|x) = prod_n Cat(z_n; softmax(theta_n)), theta the encoder's logits (B, N, K); p(z) uniform;
KL(q || p) = sum_n sum_k q_nk (log q_nk + log K). Training differentiates E_q[-log p(x|z)] with
a gradient estimator (vae/estimators/; Gumbel-Softmax by default). The KL is that of the discrete
model, so the ELBO is a bound only with one-hot samples, which is what evaluation uses.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent

from vae.compat import UncheckedOneHotCategorical
from vae.errors import require_positive_int
from vae.estimators import CATEGORICAL_ESTIMATORS, DISCRETE_ESTIMATORS, Estimator
from vae.gumbel import gumbel_max, gumbel_softmax
from vae.latents.discrete import DiscreteLatent

IGNORED_VARIABLE_THRESHOLD = 0.01  # nats of I(x; z_n) below which a variable ignores the input


class OneHotCategoricals(Independent):
    """N independent one-hot categoricals: batch_shape (*batch,), event_shape (N, K).

    torch's Independent(OneHotCategorical) plus what this project needs of a posterior: the
    normalized logits, sampling from a given generator (Gumbel-Max), every code, and an rsample
    that says why there is none.
    """

    def __init__(self, logits: Tensor) -> None:
        super().__init__(UncheckedOneHotCategorical(logits), 1, validate_args=False)

    @property
    def logits(self) -> Tensor:
        """(*batch, N, K) log-probabilities, normalized over the K classes."""
        return self.base_dist.logits

    @property
    def probs(self) -> Tensor:
        return self.base_dist.probs

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (), generator=None) -> Tensor:
        """Exact one-hot codes by Gumbel-Max, (*sample_shape, *batch, N, K), no gradient."""
        logits = self.logits.expand(*sample_shape, *self.logits.shape)
        return gumbel_max(logits, generator=generator)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        raise NotImplementedError(
            "a one-hot categorical sample has no reparameterization gradient: train through a"
            " gradient estimator (latent.surrogate; model.estimator=...) or draw a relaxed"
            " sample with latent.relaxed_sample(q, tau)"
        )

    def log_prob(self, value: Tensor) -> Tensor:
        """log q(z|x), (*sample, *batch): sum_n z_n . log softmax(theta_n) for one-hot z."""
        log_p = torch.log_softmax(self.logits.to(value.dtype), dim=-1)
        return (value * log_p).sum((-2, -1))

    def enumerate_support(self, expand: bool = True) -> Tensor:
        """Every code, (K^N, *batch, N, K) (batch dims of size 1 unless expand), in
        lexicographic order of the class indices."""
        *batch, num_variables, num_classes = self.logits.shape
        classes = torch.arange(num_classes, device=self.logits.device)
        index = torch.cartesian_prod(*[classes] * num_variables).view(-1, num_variables)  # (C, N)
        dtype = torch.promote_types(self.logits.dtype, torch.float32)  # as the samples: never half precision
        codes = F.one_hot(index, num_classes).to(dtype)  # (C, N, K)
        codes = codes.view(len(codes), *[1] * len(batch), num_variables, num_classes)
        return codes.expand(len(codes), *batch, num_variables, num_classes) if expand else codes


class CategoricalLatent(DiscreteLatent):
    """num_variables independent categoricals of num_classes each, with a uniform prior."""

    estimators = {**CATEGORICAL_ESTIMATORS, **DISCRETE_ESTIMATORS}

    def __init__(
        self,
        num_variables: int = 20,
        num_classes: int = 10,
        estimator: str | dict[str, Any] | Estimator = "gumbel_softmax",
    ) -> None:
        super().__init__()
        require_positive_int("num_variables", num_variables)
        require_positive_int("num_classes", num_classes)
        self.num_variables, self.num_classes = num_variables, num_classes
        self.num_params = num_variables * num_classes
        self.code_size = num_variables * num_classes  # the decoder reads the flattened one-hots
        self.event_shape = (num_variables, num_classes)
        self.register_buffer("_uniform_logits", torch.zeros(num_variables, num_classes), persistent=False)
        self.use_estimator(estimator)

    def describe(self) -> str:
        return f"{self.num_variables}x{self.num_classes} categorical"

    def posterior(self, params: Tensor) -> OneHotCategoricals:
        """q(z|x) from encoder output (*batch, N*K): batch_shape (*batch,), event_shape (N, K)."""
        logits = params.float().unflatten(-1, self.event_shape)  # (*batch, N, K)
        return OneHotCategoricals(logits)

    def prior(self) -> OneHotCategoricals:
        """p(z) uniform over K classes per variable: batch_shape (), event_shape (N, K)."""
        return OneHotCategoricals(self._uniform_logits)

    def relaxed_sample(
        self, q: Distribution, temperature: float, generator: torch.Generator | None = None
    ) -> Tensor:
        """The Gumbel-Softmax sample softmax((theta + G) / tau), (*batch, N, K)."""
        return gumbel_softmax(q.logits, temperature, generator=generator)

    @property
    def num_codes(self) -> int:
        return self.num_classes**self.num_variables

    # Pictures and latent health ---------------------------------------------------------

    def _aggregate(self, posteriors: Sequence[Distribution]) -> tuple[Tensor, Tensor]:
        probs = torch.cat([q.probs for q in posteriors])  # (num_images, N, K)
        return probs, probs.mean(0)  # and (N, K): q(z_n) = E_x q(z_n|x)

    def coordinate_information(self, posteriors: Sequence[Distribution]) -> Tensor:
        """I(x; z_n) = E_x KL(q(z_n|x) || q(z_n)) per variable, (N,)."""
        probs, aggregate = self._aggregate(posteriors)
        log_ratio = probs.clamp_min(1e-30).log() - aggregate.clamp_min(1e-30).log()
        return (probs * log_ratio).sum(-1).mean(0)

    def traversal(self, q: Distribution, coordinate: int, steps: int) -> Tensor:
        """Variable `coordinate` set to each of the K classes in turn, (K, N, K); `steps` is unused."""
        mode = F.one_hot(q.probs[0].argmax(-1), self.num_classes).float()  # (N, K)
        codes = mode.expand(self.num_classes, -1, -1).clone()  # (K, N, K)
        codes[:, coordinate] = torch.eye(self.num_classes, device=codes.device)
        return codes

    def health(self, posteriors: Sequence[Distribution]) -> dict[str, Any]:
        """Per-variable perplexity of the aggregate posterior q(z_n) (K: every class used), and
        the mutual information I(x; z_n) below which a variable ignores the input."""
        _, aggregate = self._aggregate(posteriors)
        entropy = -(aggregate * aggregate.clamp_min(1e-30).log()).sum(-1)  # (N,)
        mutual_information = self.coordinate_information(posteriors)
        ignored = int((mutual_information < IGNORED_VARIABLE_THRESHOLD).sum())
        return {
            "latent/in_use": len(mutual_information) - ignored,
            "latent/coordinates": len(mutual_information),
            "latent/perplexity_mean": entropy.exp().mean().item(),
            "latent/perplexity": entropy.exp().tolist(),
            "latent/mutual_information": mutual_information.tolist(),
            "latent/ignored_variables": ignored,
        }
