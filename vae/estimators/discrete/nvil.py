"""NVIL (Mnih & Gregor 2014): the score function with a moving-average and an input-dependent
baseline, and variance normalization.

    L = f(z) - f_bar - b_psi(x),    f_bar a running average of f (decay),
    b_psi: one hidden layer on the flattened image, trained to minimize (f - f_bar - b_psi(x))^2,

then L divided by max(1, its running std). The baselines do not depend on z: unbiased in
direction. One decoder pass.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.distributions import Distribution

from vae.errors import require_positive_int
from vae.estimators.base import Cost
from vae.estimators.discrete.score_function import ScoreFunctionEstimator, input_baseline, score_term


class NVIL(ScoreFunctionEstimator):
    name = "nvil"

    def __init__(self, hidden_size: int = 100, normalize: bool = True, decay: float = 0.8) -> None:
        """hidden_size: units of the baseline network's hidden layer; normalize, decay: as for SF
        (decay also that of the running mean f_bar)."""
        super().__init__(normalize, decay)
        require_positive_int("hidden_size", hidden_size)
        self.hidden_size = hidden_size
        self.register_buffer("cost_mean", torch.zeros(()))
        self.baseline: nn.Module | None = None  # b_psi, built by bind_inputs

    def settings(self) -> dict[str, object]:
        return {"hidden_size": self.hidden_size, **super().settings()}

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        return {"control_variate": list(self.baseline.parameters())} if self.baseline is not None else {}

    def bind_inputs(self, input_shape: tuple[int, ...]) -> None:
        self.baseline = input_baseline(input_shape, self.hidden_size)

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None,
        generator: torch.Generator | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        if self.baseline is None or inputs is None:
            raise ValueError("NVIL's baseline reads the inputs: build it through a VAE and pass inputs=x")
        z = q.sample(generator=generator)  # (*batch, *event), exact
        f = cost(z)  # (*batch,)
        if self.training:
            self.cost_mean.mul_(self.normalizer.decay).add_(
                (1 - self.normalizer.decay) * f.detach().float().mean()
            )
        centred = f.detach() - self.cost_mean
        b = self.baseline(inputs.detach()).squeeze(-1)  # (*batch,): b_psi(x)
        baseline_loss = (centred - b) ** 2  # value 0 below; its gradient trains psi
        signal = self.normalizer(centred - b.detach())
        return f + score_term(signal, q.log_prob(z)) + (baseline_loss - baseline_loss.detach())
