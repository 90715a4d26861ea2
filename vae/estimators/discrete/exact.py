"""Exact: E_q[f(z)] = sum_c q(c|x) f(c) over every code c, the reference gradient.

Enumerates every code of the latent, so it is for latents small enough to enumerate
(vae.latents.MAX_ENUMERATED_CODES), and costs one decoder pass per code and image: the ground
truth against which vae.diagnose measures every other estimator.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.errors import InvalidValue
from vae.estimators.base import Cost, Estimator

if TYPE_CHECKING:
    from vae.latents.base import Latent


class Exact(Estimator):
    name = "exact"
    uses_temperature = False

    def check_latent(self, latent: Latent) -> None:
        self.decoder_passes = latent.num_codes or 0
        if not latent.can_enumerate:
            raise InvalidValue(
                "estimator",
                self.name,
                f"it sums over every code and the {latent.describe()} latent cannot be enumerated:"
                f" {latent.enumeration_limit_message()}; use a smaller latent or another estimator",
            )

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        codes = q.enumerate_support(expand=False)  # (C, 1, ..., 1, *event)
        log_q = q.log_prob(codes)  # (C, *batch): log q(c|x)
        f = cost(codes.expand(len(codes), *q.batch_shape, *q.event_shape))  # (C, *batch)
        return (log_q.exp() * f).sum(0)
