"""RELAX (Grathwohl, Choi, Wu, Roeder & Duvenaud 2018) for Bernoulli latents: REBAR's estimate
(vae/estimators/binary/rebar.py) with a free-form learned control variate,

    c(z) = f(sigmoid(z / lambda)) + r_rho(z),

r_rho a ReLU network of the logistic sample z (N -> hidden_layers x hidden_size -> 1; the paper
tried 2 and 4 layers of 200 units and found 4 slightly best), lambda learned, both trained by the
gradient of the estimate's variance (parameter group "control_variate"; the paper's weight decay
on the network, 1e-3 or 1e-4, is the group optimizer's: group_optimizers.control_variate).
Unbiased for any r_rho and lambda. Three decoder passes, as REBAR, plus the network.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from torch import Tensor, nn

from vae.errors import require_positive_int
from vae.estimators.base import Cost
from vae.estimators.binary.rebar import ConditionalRelaxation

if TYPE_CHECKING:
    from vae.latents.base import Latent


class RELAX(ConditionalRelaxation):
    name = "relax"

    def __init__(self, temperature: float = 0.5, hidden_layers: int = 2, hidden_size: int = 200) -> None:
        """temperature: lambda's starting value (learned); hidden_layers, hidden_size: r_rho's."""
        super().__init__(temperature)
        require_positive_int("hidden_layers", hidden_layers)
        require_positive_int("hidden_size", hidden_size)
        self.hidden_layers, self.hidden_size = hidden_layers, hidden_size
        self.network: nn.Module | None = None  # r_rho, built by bind_latent for the latent's size

    def settings(self) -> dict[str, object]:
        return {**super().settings(), "hidden_layers": self.hidden_layers, "hidden_size": self.hidden_size}

    def bind_latent(self, latent: Latent) -> None:
        self.bind_size(math.prod(latent.event_shape))

    def bind_size(self, num_latents: int) -> None:
        """Build r_rho for a code of num_latents numbers (kept if it already has that size)."""
        if self.network is not None and self.network[0].in_features == num_latents:
            return
        layers: list[nn.Module] = []
        width = num_latents
        for _ in range(self.hidden_layers):
            layers += [nn.Linear(width, self.hidden_size), nn.ReLU()]
            width = self.hidden_size
        self.network = nn.Sequential(*layers, nn.Linear(width, 1))

    def control_variate(self, z: Tensor, cost: Cost) -> Tensor:
        if self.network is None:
            raise RuntimeError("RELAX needs its network: bind_size(num_latents), or attach it to a latent")
        return cost(self.relaxed(z)) + self.network(z.flatten(z.dim() - self.event_dims)).squeeze(-1)

    def control_variate_parameters(self) -> list[nn.Parameter]:
        network = [] if self.network is None else list(self.network.parameters())
        return [self.log_temperature, *network]
