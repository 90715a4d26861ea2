"""N independent Bernoulli (binary) variables, z in {0, 1}^N: the latent of the binary-VAE
benchmarks (ARM, DisARM, REBAR, RELAX, VIMCO) and of Jang et al.'s Bernoulli VAE.

q(z|x) = prod_n Bernoulli(z_n; sigmoid(phi_n)), phi the encoder's logits (B, N); the prior
p(z) = prod_n Bernoulli(sigmoid(eta_n)), eta = 0 (uniform) or learned. The KL is analytic and
computed from logits, so it never takes log 0:

    KL = sum_n q_n (log q_n - log p_n) + (1 - q_n) (log(1 - q_n) - log(1 - p_n)),
    log sigmoid(a) = -softplus(-a),  log(1 - sigmoid(a)) = -softplus(a).

Training differentiates E_q[-log p(x|z)] with a gradient estimator (vae/estimators/binary/ and
the score-function family of vae/estimators/discrete/).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Bernoulli, Distribution, Independent, register_kl

from vae.errors import require, require_positive_int
from vae.estimators import BINARY_ESTIMATORS, DISCRETE_ESTIMATORS, Estimator
from vae.latents.discrete import DiscreteLatent

PRIORS = ("uniform", "learned")
IGNORED_BIT_THRESHOLD = 0.01  # nats of I(x; z_n) below which a bit ignores the input


class IndependentBernoullis(Independent):
    """N independent Bernoullis from logits: batch_shape (*batch,), event_shape (N,).

    torch's Independent(Bernoulli) plus what this project needs of a posterior: sampling from a
    given generator, every code, and an rsample that says why there is none.
    """

    def __init__(self, logits: Tensor) -> None:
        super().__init__(Bernoulli(logits=logits, validate_args=False), 1, validate_args=False)

    @property
    def logits(self) -> Tensor:
        """(*batch, N): log q_n - log(1 - q_n)."""
        return self.base_dist.logits

    @property
    def probs(self) -> Tensor:
        return self.base_dist.probs

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (), generator=None) -> Tensor:
        """Exact codes z = 1[u < sigmoid(logits)], u ~ U(0, 1), (*sample_shape, *batch, N), no gradient."""
        with torch.no_grad():
            shape = (*sample_shape, *self.logits.shape)
            dtype = torch.promote_types(self.logits.dtype, torch.float32)
            u = torch.rand(shape, dtype=dtype, device=self.logits.device, generator=generator)
            return (u < torch.sigmoid(self.logits.to(dtype))).to(dtype)

    def rsample(self, sample_shape: torch.Size | tuple[int, ...] = ()) -> Tensor:
        raise NotImplementedError(
            "a binary sample has no reparameterization gradient: train through a gradient estimator"
            " (latent.surrogate; model.estimator=...) or draw a relaxed (binary Concrete) sample"
            " with latent.relaxed_sample(q, tau)"
        )

    def log_prob(self, value: Tensor) -> Tensor:
        """log q(z|x), (*sample, *batch): sum_n z_n logits_n - softplus(logits_n)."""
        logits = self.logits.to(torch.promote_types(value.dtype, torch.float32))
        return (value * logits - F.softplus(logits)).sum(-1)

    def enumerate_support(self, expand: bool = True) -> Tensor:
        """Every code, (2^N, *batch, N) (batch dims of size 1 unless expand), the bits of 0 .. 2^N - 1."""
        *batch, num_latents = self.logits.shape
        index = torch.arange(2**num_latents, device=self.logits.device)
        bits = 2 ** torch.arange(num_latents - 1, -1, -1, device=self.logits.device)
        dtype = torch.promote_types(self.logits.dtype, torch.float32)
        codes = ((index[:, None] & bits) > 0).to(dtype)  # (C, N), the first bit most significant
        codes = codes.view(len(codes), *[1] * len(batch), num_latents)
        return codes.expand(len(codes), *batch, num_latents) if expand else codes


@register_kl(IndependentBernoullis, IndependentBernoullis)
def _kl_bernoullis(q: IndependentBernoullis, p: IndependentBernoullis) -> Tensor:
    """KL(q || p) summed over the N bits, from logits."""
    q_logits, p_logits = torch.broadcast_tensors(q.logits, p.logits)
    q1 = torch.sigmoid(q_logits)
    log_q1, log_q0 = -F.softplus(-q_logits), -F.softplus(q_logits)
    log_p1, log_p0 = -F.softplus(-p_logits), -F.softplus(p_logits)
    return (q1 * (log_q1 - log_p1) + (1 - q1) * (log_q0 - log_p0)).sum(-1)


class BernoulliLatent(DiscreteLatent):
    """num_latents independent Bernoulli variables with a uniform or a learned prior."""

    estimators = {**BINARY_ESTIMATORS, **DISCRETE_ESTIMATORS}

    def __init__(
        self,
        num_latents: int = 200,
        prior: str = "uniform",
        estimator: str | dict[str, Any] | Estimator = "disarm",
    ) -> None:
        super().__init__()
        require_positive_int("num_latents", num_latents)
        require(prior in PRIORS, "prior", prior, f"one of {', '.join(PRIORS)}")
        self.num_latents = num_latents
        self.num_params = num_latents  # the logits phi
        self.code_size = num_latents
        self.event_shape = (num_latents,)
        self.prior_kind = prior
        # p(z)'s logits eta (N,): a parameter when learned (prior_parameters), else fixed zeros.
        if prior == "learned":
            self.prior_logits = nn.Parameter(torch.zeros(num_latents))
        else:
            self.register_buffer("prior_logits", torch.zeros(num_latents))
        self.use_estimator(estimator)

    def describe(self) -> str:
        return f"{self.num_latents}-bit Bernoulli"

    def posterior(self, params: Tensor) -> IndependentBernoullis:
        """q(z|x) from encoder output (*batch, N): batch_shape (*batch,), event_shape (N,)."""
        return IndependentBernoullis(params.float())

    def prior(self) -> IndependentBernoullis:
        """p(z): batch_shape (), event_shape (N,)."""
        return IndependentBernoullis(self.prior_logits)

    def prior_parameters(self) -> list[nn.Parameter]:
        return [self.prior_logits] if self.prior_kind == "learned" else []

    def relaxed_sample(
        self, q: Distribution, temperature: float, generator: torch.Generator | None = None
    ) -> Tensor:
        """The binary Concrete sample sigmoid((phi + L) / tau), L logistic noise, (*batch, N)."""
        from vae.estimators.binary.concrete import binary_concrete

        return binary_concrete(q.logits, temperature, generator=generator)

    @property
    def num_codes(self) -> int:
        return 2**self.num_latents

    # Pictures and latent health ---------------------------------------------------------

    def _aggregate(self, posteriors: Sequence[Distribution]) -> tuple[Tensor, Tensor]:
        probs = torch.cat([q.probs for q in posteriors])  # (num_images, N): q(z_n = 1 | x)
        return probs, probs.mean(0)  # and (N,): q(z_n = 1) = E_x q(z_n = 1 | x)

    def coordinate_information(self, posteriors: Sequence[Distribution]) -> Tensor:
        """I(x; z_n) = E_x KL(q(z_n|x) || q(z_n)) per bit, (N,)."""
        probs, aggregate = self._aggregate(posteriors)
        eps = 1e-30

        def log(t: Tensor) -> Tensor:
            return t.clamp_min(eps).log()

        kl = probs * (log(probs) - log(aggregate)) + (1 - probs) * (log(1 - probs) - log(1 - aggregate))
        return kl.mean(0)

    def traversal(self, q: Distribution, coordinate: int, steps: int) -> Tensor:
        """Bit `coordinate` off and on, the others at their most likely value, (2, N); `steps` is unused."""
        mode = (q.probs[0] > 0.5).float()  # (N,)
        codes = mode.expand(2, -1).clone()  # (2, N)
        codes[:, coordinate] = torch.tensor([0.0, 1.0], device=codes.device)
        return codes

    def health(self, posteriors: Sequence[Distribution]) -> dict[str, Any]:
        """Per bit: how often it is on (the aggregate posterior q(z_n = 1)) and the mutual
        information I(x; z_n) below which it ignores the input."""
        _, aggregate = self._aggregate(posteriors)
        mutual_information = self.coordinate_information(posteriors)
        active_bits = int((mutual_information >= IGNORED_BIT_THRESHOLD).sum())
        return {
            "latent/in_use": active_bits,
            "latent/coordinates": len(mutual_information),
            "latent/active_bits": active_bits,
            "latent/ignored_bits": int((mutual_information < IGNORED_BIT_THRESHOLD).sum()),
            "latent/firing_rate": aggregate.tolist(),
            "latent/mutual_information": mutual_information.tolist(),
            "latent/mutual_information_total": mutual_information.sum().item(),
        }
