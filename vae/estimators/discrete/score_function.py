"""What the score-function estimators share (Jang et al. 2017, section 3.2; Mnih & Gregor 2014).

Each draws one exact z ~ q(z|x) and forms the surrogate

    s = f(z) + L * (log q(z|x) - stop_grad(log q(z|x)))

whose value is f(z) and whose gradient is L * grad log q(z|x) with respect to q's parameters (and
the plain Monte-Carlo gradient through f's own parameters, the decoder's). They differ in the
learning signal L = f(z) - baseline. Variance normalization (Jang et al. found it necessary for
SF, DARN and MuProp) divides L by max(1, sigma), sigma^2 a running average of L's variance:
a rescaling of the step, the same for every coordinate, so the gradient keeps its direction.

In a VAE the cost is the whole learning signal of NVIL (Mnih & Gregor 2014) and MuProp (Gu et
al. 2016), l(x, z) = -log p(x|z) - log p(z) + log q(z|x): the KL inside it, not added in closed
form (elbo_terms). Variance normalization then scales the KL's part of the encoder's gradient
with the rest. Kept outside, the analytic KL's gradient reaches the encoder at full size while
the reconstruction's score term is divided by sigma (tens of nats early on), and the KL wins: q
collapses onto the prior (measured: NVIL with normalization, 200 bits, KL 0.3 nats; without it,
25.6). log q(z|x) and log p(z) are linear in z for both latents, so MuProp's Taylor baseline takes
the log-ratio out of its signal exactly and adds its gradient back through its correction term
(unscaled, as in its paper); DARN's per-unit signal carries it exactly (see darn.py).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vae.errors import is_number, require
from vae.estimators.base import LearningSignalEstimator


def event_sum(values: Tensor, q: Distribution) -> Tensor:
    """Sum over q's event dimensions: (*batch, *event) -> (*batch,)."""
    return values.flatten(values.dim() - len(q.event_shape)).sum(-1)


def score_term(signal: Tensor, log_q: Tensor) -> Tensor:
    """Value 0; gradient signal * grad log q (signal carries no gradient)."""
    return signal.detach() * (log_q - log_q.detach())


def first_order_expansion(q: Distribution, cost, z: Tensor, point: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """The cost's first-order expansion at `point`, in parts: f(point) and f'(point) . (z - point)
    (*batch,), and f'(point) (*batch, *event); one more decoder pass and its backward, no gradient
    to anything."""
    point = point.detach().to(z.dtype).requires_grad_()  # in the samples' precision (float32 or wider)
    with torch.enable_grad():
        value = cost(point)
        (slope,) = torch.autograd.grad(value.sum(), point)
    return value.detach(), event_sum(slope * (z - point.detach()), q), slope


def taylor_baseline(q: Distribution, cost, z: Tensor, point: Tensor) -> tuple[Tensor, Tensor]:
    """The first-order expansion of the cost at `point`: f(point) + f'(point) . (z - point), and
    f'(point) (*batch, *event)."""
    value, first_order, slope = first_order_expansion(q, cost, z, point)
    return value + first_order, slope


def input_baseline(input_shape: tuple[int, ...], hidden_size: int) -> nn.Module:
    """b_psi(x) (*batch, 1): one tanh hidden layer on the flattened inputs (NVIL's input-dependent
    baseline; the REBAR code's for NVIL and MuProp)."""
    return nn.Sequential(
        nn.Flatten(-len(input_shape)),  # (*batch, C*H*W)
        nn.Linear(math.prod(input_shape), hidden_size),
        nn.Tanh(),
        nn.Linear(hidden_size, 1),
    )


class RunningNormalizer(nn.Module):
    """Divides a learning signal by max(1, sigma), sigma^2 an exponential running average (decay)
    of its variance over the batch; the average moves only in training mode. Disabled: identity."""

    def __init__(self, enabled: bool = True, decay: float = 0.8) -> None:
        super().__init__()
        ok = is_number(decay) and 0 <= decay < 1
        require(ok, "decay", decay, "must be a number in [0, 1)")
        self.enabled, self.decay = enabled, float(decay)
        self.register_buffer("variance", torch.zeros(()))

    def forward(self, signal: Tensor) -> Tensor:
        if not self.enabled:
            return signal
        if self.training and signal.numel() > 1:
            batch_variance = signal.detach().float().var()
            self.variance.mul_(self.decay).add_((1 - self.decay) * batch_variance)
        return signal / self.variance.sqrt().clamp_min(1.0)


class ScoreFunctionEstimator(LearningSignalEstimator):
    """Base of SF, NVIL, DARN and MuProp: one exact sample, a learning signal, its normalization."""

    uses_temperature = False

    def __init__(self, normalize: bool = True, decay: float = 0.8) -> None:
        """normalize: divide the learning signal by max(1, its running std); decay: of that average."""
        super().__init__()
        self.normalizer = RunningNormalizer(normalize, decay)

    def settings(self) -> dict[str, object]:
        return {"normalize": self.normalizer.enabled, "decay": self.normalizer.decay}
