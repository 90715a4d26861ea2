"""REBAR and RELAX for one-hot categorical latents (Tucker et al. 2017, appendix; Grathwohl et
al. 2018, appendix B): the estimates of vae/estimators/binary/rebar.py and relax.py with the
Gumbel-Max relaxation. Per variable, with log p = log softmax(theta) and E ~ Exp(1)^K:

    z  = log p + G,  G Gumbel                b = one_hot(argmax z) ~ q
    z~ : z given b,  z~_b = -log E_b,  z~_j = -log(E_j / p_j + E_b)  (j != b)
    d/dtheta log q(b) = b - softmax(theta),  c(z) built on softmax(z / lambda)

z~ carries the gradient to theta through p (the conditional Gumbels of vae.estimators.
categorical.gumbel_rao, here reparameterized rather than fixed). Unbiased for any control variate.
"""

from __future__ import annotations

import torch
from torch import Tensor

from vae.estimators.binary.rebar import REBAR as BinaryREBAR
from vae.estimators.binary.relax import RELAX as BinaryRELAX
from vae.gumbel import exponential_noise


def gumbel_pair(logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """z, b, z~ (*batch, N, K) and d/dlogits log q(b), in float32 or wider."""
    dtype = torch.promote_types(logits.dtype, torch.float32)
    log_p = torch.log_softmax(logits.to(dtype), dim=-1)  # with the gradient to the logits
    noise = exponential_noise((2, *logits.shape), dtype=dtype, device=logits.device, generator=generator)
    z = log_p - torch.log(noise[0])
    b = torch.nn.functional.one_hot(z.detach().argmax(-1), logits.shape[-1]).to(dtype)
    e = noise[1]
    e_b = (e * b).sum(-1, keepdim=True)  # (*batch, N, 1): the winner's draw
    # Both branches in log space: E_j / p_j = exp(log E_j - log p_j), summed with E_b by logaddexp.
    others = -torch.logaddexp(torch.log(e) - log_p, torch.log(e_b))
    z_given_b = torch.where(b > 0, -torch.log(e_b).expand_as(others), others)
    return z, b, z_given_b, b - log_p.detach().exp()


class _GumbelRelaxation:
    """The categorical family of ConditionalRelaxation: codes (N, K), the Gumbel-Max relaxation."""

    event_dims = 2

    def relaxation_samples(self, logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, ...]:
        return gumbel_pair(logits, generator)

    def relaxed(self, z: Tensor) -> Tensor:
        """softmax(z / lambda): the Gumbel-Softmax sample of the perturbed logits z."""
        return torch.softmax(z / self.log_temperature.exp(), dim=-1)


class REBAR(_GumbelRelaxation, BinaryREBAR):
    """c(z) = eta f(softmax(z / lambda)), eta and lambda learned."""


class RELAX(_GumbelRelaxation, BinaryRELAX):
    """c(z) = f(softmax(z / lambda)) + r(z), r a ReLU network of the N*K perturbed logits."""
