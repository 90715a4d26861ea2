"""REBAR (Tucker, Mnih, Maddison, Lawson & Sohl-Dickstein 2017): the score function with a
control variate built from the binary Concrete relaxation and its reparameterization gradient;
unbiased for any setting of its learned temperature and scale.

Per coordinate, with theta = sigmoid(phi), u, v ~ U(0, 1):

    z  = phi + log u - log(1 - u)                  a logistic sample, b = H(z) = 1[z > 0] ~ q
    z~ = phi + log v' - log(1 - v'),               z given b: v' = (1 - theta) + v theta if b = 1,
                                                                   v (1 - theta)     if b = 0
    g  = [f(b) - c(z~)] d/dphi log q(b) + d/dphi c(z) - d/dphi c(z~)

with c(z) = eta f(sigmoid(z / lambda)), the cost at the relaxed sample. Since E[c(z~) | b] has
the gradient the reparameterized d/dphi c(z) and d/dphi c(z~) account for, E[g] is the exact
gradient of E_q[f(b)] whatever eta and lambda are. Both are learned, by the gradient of the
estimate's variance: the surrogate passes the gradient of mean_batch(sum_n g_n^2) (a single-sample
estimate of the variance's gradient, as E[g] does not depend on them; per image and logit, where
the papers' code takes the encoder parameters' gradient) to the control variate's parameters, its
parameter group "control_variate" (an optimizer of its own with group_optimizers).

As in the paper, f is the whole learning signal -log p(x|b) - log p(b) + log q(b|x)
(LearningSignalEstimator), evaluated at relaxed inputs for c. Three decoder passes (f(b), f at the
two relaxed samples, batched), and the second-order backward through the decoder that the
variance gradient needs.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vae.errors import require_positive_float
from vae.estimators.base import Cost, LearningSignalEstimator

# u and v are kept this far inside (0, 1) so that the logistic samples stay finite.
_UNIFORM_MARGIN = 1e-6


def logistic_pair(logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """z (*batch, N) = phi + logit(u) with the gradient to phi, b = H(z) (no gradient), and
    z~ = phi + logit(v'), the logistic sample conditioned on b (gradient to phi), in float32 or wider."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    phi = logits.to(dtype)
    u, v = (
        torch.rand(phi.shape, dtype=dtype, device=phi.device, generator=generator).clamp(
            _UNIFORM_MARGIN, 1 - _UNIFORM_MARGIN
        )
        for _ in range(2)
    )
    z = phi + torch.log(u) - torch.log1p(-u)
    b = (z > 0).to(dtype).detach()
    theta = torch.sigmoid(phi)
    # v' in (1 - theta, 1) where b = 1 and in (0, 1 - theta) where b = 0: u's range given b.
    v_given_b = torch.where(b > 0, (1 - theta) + v * theta, v * (1 - theta))
    v_given_b = v_given_b.clamp(_UNIFORM_MARGIN, 1 - _UNIFORM_MARGIN)
    z_given_b = phi + torch.log(v_given_b) - torch.log1p(-v_given_b)
    return z, b, z_given_b


class ConditionalRelaxation(LearningSignalEstimator):
    """What REBAR and RELAX share, for either latent family: the estimate g above for a control
    variate c(z) of the relaxation's samples, with a learned temperature lambda; subclasses say
    what c is and what it learns, the family (relaxation_samples, relaxed) how z is drawn."""

    uses_temperature = False  # its own temperature lambda is learned, not annealed
    decoder_passes = 3
    event_dims = 1  # the dims of one latent's code: (N,) bits

    def __init__(self, temperature: float = 0.5) -> None:
        """temperature: lambda's starting value (learned)."""
        super().__init__()
        require_positive_float("temperature", temperature)
        self.log_temperature = nn.Parameter(torch.tensor(math.log(temperature)))
        self.initial_temperature = float(temperature)

    def settings(self) -> dict[str, object]:
        return {"temperature": self.initial_temperature}

    def relaxation_samples(self, logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, ...]:
        """z, b = H(z), z~ ~ p(z | b) (each *batch, *event, with the gradient to logits but b) and
        d/dlogits log q(b), for the Bernoulli family: the logistic pair."""
        z, b, z_given_b = logistic_pair(logits, generator)
        return z, b, z_given_b, b - torch.sigmoid(logits.detach().to(b.dtype))

    def relaxed(self, z: Tensor) -> Tensor:
        """sigmoid(z / lambda): the binary Concrete sample of the logistic sample z."""
        return torch.sigmoid(z / self.log_temperature.exp())

    def event_sum(self, values: Tensor) -> Tensor:
        """(*batch, *event) -> (*batch,)."""
        return values.flatten(values.dim() - self.event_dims).sum(-1)

    def control_variate(self, z: Tensor, cost: Cost) -> Tensor:
        """c(z) (*sample, *batch) for logistic samples z (*sample, *batch, N)."""
        raise NotImplementedError

    def control_variate_parameters(self) -> list[nn.Parameter]:
        """What the variance gradient trains (the "control_variate" parameter group)."""
        raise NotImplementedError

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"control_variate": self.control_variate_parameters()}

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        with torch.enable_grad():  # the estimate is itself a gradient
            logits = q.logits if q.logits.requires_grad else q.logits.detach().requires_grad_()
            z, b, z_given_b, score = self.relaxation_samples(logits, generator)  # score: d/dphi log q(b)
            f_b = cost(b)  # (*batch,), with the gradient to the decoder and a learned prior
            c = self.control_variate(torch.stack([z, z_given_b]), cost)  # (2, *batch)
            (reparameterized,) = torch.autograd.grad(c[0].sum() - c[1].sum(), logits, create_graph=True)
            signal = (f_b.detach() - c[1]).view(*f_b.shape, *[1] * self.event_dims)
            estimate = signal * score + reparameterized  # (*batch, *event)
            parameters = self.control_variate_parameters()
            variance = self.event_sum(estimate.pow(2)).mean()
            variance_grads = torch.autograd.grad(variance, parameters, allow_unused=True)
        linear = self.event_sum(estimate.detach().to(q.logits.dtype) * q.logits)
        surrogate = f_b + (linear - linear.detach())  # value f(b), gradient to the logits the estimate
        # Value 0; gradient the variance's, for the control variate's parameters alone.
        tuning = sum(
            (p * g.detach()).sum() for p, g in zip(parameters, variance_grads, strict=True) if g is not None
        )
        return surrogate + (tuning - tuning.detach())


class REBAR(ConditionalRelaxation):
    """c(z) = eta f(sigmoid(z / lambda)), eta and lambda learned."""

    name = "rebar"

    def __init__(self, temperature: float = 0.5, scale: float = 1.0) -> None:
        """temperature: lambda's starting value; scale: eta's starting value (both learned)."""
        super().__init__(temperature)
        require_positive_float("scale", scale)
        self.scale = nn.Parameter(torch.tensor(float(scale)))
        self.initial_scale = float(scale)

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "scale": self.initial_scale}

    def control_variate(self, z: Tensor, cost: Cost) -> Tensor:
        return self.scale * cost(self.relaxed(z))

    def control_variate_parameters(self) -> list[nn.Parameter]:
        return [self.log_temperature, self.scale]
