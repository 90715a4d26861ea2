"""The binary Concrete (relaxed Bernoulli; Maddison et al. 2017, Jang et al.'s Gumbel-Softmax with
K = 2) and its straight-through ("hard") form.

    y = sigmoid((phi + L) / tau),  L = log u - log(1 - u),  u ~ U(0, 1)  (logistic noise)

tau -> 0: y -> 1[phi + L > 0], an exact Bernoulli(sigmoid(phi)) sample; tau -> inf: y -> 1/2.
The noise is drawn in float32 or wider whatever the logits' dtype, u is kept away from 0 and 1
(so L is finite), and the sigmoid of a finite argument never gives NaN at any tau > 0.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.distributions import Distribution

from vae.estimators.base import PathwiseEstimator, straight_through
from vae.gumbel import check_temperature


def logistic_noise(
    shape: torch.Size | tuple[int, ...],
    *,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
    generator: torch.Generator | None = None,
) -> Tensor:
    """L = log u - log(1 - u), u ~ U(0, 1) clamped to [tiny, 1 - eps]: finite, in [-87.3, 16.6] (float32)."""
    u = torch.rand(shape, dtype=dtype, device=device, generator=generator)
    u = u.clamp(torch.finfo(dtype).tiny, 1 - torch.finfo(dtype).eps)
    return torch.log(u) - torch.log1p(-u)


def binary_concrete(
    logits: Tensor,
    temperature: float | Tensor,
    *,
    hard: bool = False,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Relaxed (or, hard, straight-through) sample of Bernoulli(sigmoid(logits)), same shape.

    hard: the exact sample 1[logits + L > 0] forward, the relaxed sample's gradient backward.
    """
    tau = check_temperature(temperature)
    dtype = torch.promote_types(logits.dtype, torch.float32)
    scores = logits.to(dtype) + logistic_noise(
        logits.shape, dtype=dtype, device=logits.device, generator=generator
    )
    relaxed = torch.sigmoid(scores / tau)
    if not hard:
        return relaxed
    return straight_through((scores.detach() > 0).to(dtype), relaxed)


class GumbelSoftmax(PathwiseEstimator):
    """The binary Concrete: the decoder sees sigmoid((phi + L) / tau). Relaxed, biased."""

    name = "gumbel_softmax"
    relaxes = True

    def sample(self, q: Distribution, temperature: float | Tensor | None, generator=None) -> Tensor:
        return binary_concrete(q.logits, temperature, generator=generator)


class STGumbel(PathwiseEstimator):
    """Straight-through binary Concrete: z = 1[phi + L > 0] forward (exactly Bernoulli), the
    gradient of sigmoid((phi + L) / tau) with the same L backward."""

    name = "st_gumbel"
    relaxes = True

    def sample(self, q: Distribution, temperature: float | Tensor | None, generator=None) -> Tensor:
        return binary_concrete(q.logits, temperature, hard=True, generator=generator)
