"""DisARM (Dong, Mnih & Tucker 2020): ARM Rao-Blackwellized over u given the pair; unbiased, and
its variance never exceeds ARM's. Two decoder passes.

With the antithetic pair b1, b2 of vae.estimators.binary.arm:

    grad_phi = 1/2 (f(b1) - f(b2)) 1[b1 != b2] (-1)^{b2} sigmoid(|phi|),  per coordinate.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import Cost, Estimator
from vae.estimators.binary.arm import antithetic_pair, with_gradient


class DisARM(Estimator):
    name = "disarm"
    uses_temperature = False
    decoder_passes = 2

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        _, b1, b2 = antithetic_pair(q.logits, generator)
        f = cost(torch.stack([b1, b2]))  # (2, *batch)
        sign = 1 - 2 * b2  # (-1)^{b2}
        weight = (b1 != b2).to(b1.dtype) * sign * torch.sigmoid(q.logits.detach().abs().to(b1.dtype))
        grad = 0.5 * (f[0] - f[1]).detach().unsqueeze(-1) * weight  # (*batch, N)
        return with_gradient(f.mean(0), q.logits, grad)
