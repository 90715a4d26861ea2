"""MuProp (Gu et al. 2016): the cost's first-order expansion at the mean-field point mu = E_q[z]
as the baseline, and its analytic expectation added back:

    grad = E[(f(z) - f(mu) - f'(mu) . (z - mu)) grad log q(z|x)] + f'(mu) . grad mu,

unbiased; the learning signal variance-normalized as for SF (which rescales the score term only).
Two decoder passes (and the gradient of one).

The REBAR code's MuProp (Tucker et al. 2017, the baseline of the REBAR and RELAX tables) learns
more of its baseline, and normalizes nothing:

    L = f(z) - eta0 f(mu) - eta1 f'(mu) . (z - mu) - b_psi(x),   correction eta1 f'(mu) . grad mu,

eta0, eta1 = 2 sigmoid(a) (1 at the start) and an input-dependent baseline b_psi (NVIL's network),
all trained to minimize L^2 (parameter group "control_variate"). Unbiased for any eta and psi:
f(mu) and b_psi(x) do not depend on z, and the first-order term's expectation is added back at
the same scale. `learned_scales=true baseline_hidden_size=100 normalize=false` is that form.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vae.errors import require_int_at_least
from vae.estimators.base import Cost
from vae.estimators.discrete.score_function import (
    ScoreFunctionEstimator,
    event_sum,
    first_order_expansion,
    input_baseline,
    score_term,
)


class MuProp(ScoreFunctionEstimator):
    name = "muprop"
    decoder_passes = 2

    def __init__(
        self,
        normalize: bool = True,
        decay: float = 0.8,
        learned_scales: bool = False,
        baseline_hidden_size: int = 0,
    ) -> None:
        """normalize, decay: as for SF; learned_scales: learn eta0 and eta1 (else both 1);
        baseline_hidden_size: units of an input-dependent baseline's hidden layer (0: none)."""
        super().__init__(normalize, decay)
        require_int_at_least("baseline_hidden_size", baseline_hidden_size, 0)
        self.baseline_hidden_size = baseline_hidden_size
        # a with eta = 2 sigmoid(a): eta0 scales f(mu), eta1 the first-order term and the correction.
        self.scale_logits = nn.Parameter(torch.zeros(2)) if learned_scales else None
        self.baseline: nn.Module | None = None  # b_psi, built by bind_inputs when asked for

    def settings(self) -> dict[str, object]:
        return {
            **super().settings(),
            "learned_scales": self.scale_logits is not None,
            "baseline_hidden_size": self.baseline_hidden_size,
        }

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        learned = [] if self.scale_logits is None else [self.scale_logits]
        learned += [] if self.baseline is None else list(self.baseline.parameters())
        return {"control_variate": learned} if learned else {}

    def bind_inputs(self, input_shape: tuple[int, ...]) -> None:
        if self.baseline_hidden_size:
            self.baseline = input_baseline(input_shape, self.baseline_hidden_size)

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        if self.baseline is not None and inputs is None:
            raise ValueError("MuProp's input-dependent baseline reads the inputs: pass inputs=x")
        z = q.sample(generator=generator)  # (*batch, *event), exact
        f = cost(z)  # (*batch,)
        mu = q.mean  # (*batch, *event), with the gradient to q's parameters
        f_mu, first_order, slope = first_order_expansion(q, cost, z, mu.expand_as(z))  # (*batch,) x 2
        correction = event_sum(slope.detach() * mu, q)  # its gradient: f'(mu) . grad mu
        if self.scale_logits is None and self.baseline is None:  # Gu et al.'s
            signal = f.detach() - (f_mu + first_order)
            return f + score_term(self.normalizer(signal), q.log_prob(z)) + (correction - correction.detach())
        eta = f.new_ones(2) if self.scale_logits is None else 2 * torch.sigmoid(self.scale_logits)
        eta0, eta1 = eta.unbind()
        b = 0.0 if self.baseline is None else self.baseline(inputs.detach()).squeeze(-1)  # (*batch,)
        signal = f.detach() - eta0 * f_mu - eta1 * first_order - b  # its gradient: to eta and psi only
        fit = signal**2  # value 0 below; its gradient trains eta and psi
        correction = correction * eta1.detach()
        return (
            f
            + score_term(self.normalizer(signal.detach()), q.log_prob(z))
            + (correction - correction.detach())
            + (fit - fit.detach())
        )
