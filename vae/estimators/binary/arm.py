"""ARM, the augment-REINFORCE-merge estimator (Yin & Zhou 2019): unbiased, two decoder passes.

With u ~ U(0, 1)^N shared by an antithetic pair, b1 = 1[u > 1 - sigmoid(phi)] and
b2 = 1[u < sigmoid(phi)] (each a Bernoulli(sigmoid(phi)) sample):

    grad_phi = (f(b1) - f(b2)) (u - 1/2),  per coordinate.

The surrogate's value is (f(b1) + f(b2)) / 2, whose gradient through f's own parameters (the
decoder) is the plain two-sample Monte-Carlo one.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import Cost, Estimator


def antithetic_pair(logits: Tensor, generator: torch.Generator | None) -> tuple[Tensor, Tensor, Tensor]:
    """u (*batch, N) and the pair b1 = 1[u > 1 - sigmoid(phi)], b2 = 1[u < sigmoid(phi)], no gradient."""
    with torch.no_grad():
        dtype = torch.promote_types(logits.dtype, torch.float32)
        probs = torch.sigmoid(logits.to(dtype))
        u = torch.rand(logits.shape, dtype=dtype, device=logits.device, generator=generator)
        return u, (u > 1 - probs).to(dtype), (u < probs).to(dtype)


def with_gradient(value: Tensor, logits: Tensor, grad: Tensor) -> Tensor:
    """`value` (*batch,) forward, and `grad` (*batch, N) as its gradient with respect to logits."""
    linear = (grad.detach() * logits).sum(-1)
    return value + (linear - linear.detach())


class ARM(Estimator):
    name = "arm"
    uses_temperature = False
    decoder_passes = 2

    def coordinate_weights(self, u: Tensor, b1: Tensor, b2: Tensor, logits: Tensor) -> Tensor:
        """w (*batch, N) with grad_phi = (f(b1) - f(b2)) w: ARM's u - 1/2."""
        return u - 0.5

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        u, b1, b2 = antithetic_pair(q.logits, generator)
        f = cost(torch.stack([b1, b2]))  # (2, *batch): one batched decoder call
        weights = self.coordinate_weights(u, b1, b2, q.logits.detach().to(u.dtype))
        grad = (f[0] - f[1]).detach().unsqueeze(-1) * weights  # (*batch, N)
        return with_gradient(f.mean(0), q.logits, grad)
