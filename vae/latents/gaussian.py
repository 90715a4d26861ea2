"""A diagonal Gaussian latent (Kingma & Welling 2014), trained by reparameterization.

q(z|x) = N(mu, diag sigma^2), z = mu + sigma * eps with eps ~ N(0, I), so that
grad E_q[f(z)] = E_eps[grad f(mu + sigma * eps)]; p(z) = N(0, I);
KL(q || p) = 1/2 sum_d (mu_d^2 + sigma_d^2 - 1 - log sigma_d^2).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Distribution, Independent, Normal

from vae.errors import require_positive_int
from vae.estimators import Cost
from vae.latents.base import Latent

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016: a unit is active if Cov_x(E_q[z_u]) > 0.01
TRAVERSAL_RANGE = (-3.0, 3.0)  # a coordinate is swept over this interval, in prior standard deviations


class DiagonalNormal(Independent):
    """N(loc, diag scale^2): batch_shape (*batch,), event_shape (dim,); samples from a given generator."""

    def __init__(self, loc: Tensor, scale: Tensor) -> None:
        super().__init__(Normal(loc, scale, validate_args=False), 1, validate_args=False)

    @property
    def loc(self) -> Tensor:
        return self.base_dist.loc

    @property
    def scale(self) -> Tensor:
        return self.base_dist.scale

    def sample(self, sample_shape: torch.Size | tuple[int, ...] = (), generator=None) -> Tensor:
        """(*sample_shape, *batch, dim), no gradient."""
        shape = (*sample_shape, *self.loc.shape)
        eps = torch.randn(shape, dtype=self.loc.dtype, device=self.loc.device, generator=generator)
        return (self.loc + self.scale * eps).detach()


class GaussianLatent(Latent):
    """dim-dimensional diagonal Gaussian latent with a standard normal prior."""

    def __init__(self, dim: int = 20) -> None:
        super().__init__()
        require_positive_int("dim", dim)
        self.dim = dim
        self.num_params = 2 * dim  # mu and the pre-softplus scale
        self.code_size = dim
        self.event_shape = (dim,)
        self.register_buffer("_zeros", torch.zeros(dim), persistent=False)

    def describe(self) -> str:
        return f"{self.dim}-dimensional Gaussian"

    def posterior(self, params: Tensor) -> DiagonalNormal:
        """q(z|x) from encoder output (*batch, 2 * dim): batch_shape (*batch,), event_shape (dim,)."""
        loc, raw_scale = params.float().chunk(2, dim=-1)  # (*batch, dim) each
        # softplus keeps sigma > 0 without the exp(log sigma) overflow; 1e-4 keeps log sigma finite.
        scale = F.softplus(raw_scale) + 1e-4
        return DiagonalNormal(loc, scale)

    def prior(self) -> DiagonalNormal:
        """p(z) = N(0, I): batch_shape (), event_shape (dim,)."""
        return DiagonalNormal(self._zeros, torch.ones_like(self._zeros))

    def surrogate(
        self,
        q: Distribution,
        cost: Cost,
        temperature: float | Tensor | None = None,
        inputs: Tensor | None = None,
    ) -> Tensor:
        """cost(z) of one reparameterized sample z = mu + sigma * eps, (*batch,): unbiased in value
        and gradient."""
        return cost(q.rsample())

    @property
    def has_pathwise_sample(self) -> bool:
        return True

    def pathwise_sample(
        self,
        q: Distribution,
        sample_shape: tuple[int, ...],
        temperature: float | Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """z = mu + sigma * eps, (*sample_shape, *batch, dim), eps ~ N(0, I) from `generator`."""
        shape = (*sample_shape, *q.loc.shape)
        eps = torch.randn(shape, dtype=q.loc.dtype, device=q.loc.device, generator=generator)
        return q.loc + q.scale * eps

    # Pictures and latent health ---------------------------------------------------------

    def reconstruction_codes(
        self, q: Distribution, temperature: float | None = None, generator: torch.Generator | None = None
    ) -> list[Tensor]:
        """The posterior mean."""
        return [q.mean]

    def coordinate_information(self, posteriors: Sequence[Distribution]) -> Tensor:
        """Activity Cov_x(E_q[z_u]) per unit, (dim,) (Burda et al. 2016)."""
        means = torch.cat([q.mean for q in posteriors])  # (num_images, dim): E_q[z]
        return means.var(dim=0)

    def traversal(self, q: Distribution, coordinate: int, steps: int) -> Tensor:
        """Dimension `coordinate` swept over [-3, 3] in `steps` points, the others at the posterior
        mean, (steps, dim)."""
        codes = q.mean[0].expand(steps, -1).clone()  # (steps, dim)
        codes[:, coordinate] = torch.linspace(*TRAVERSAL_RANGE, steps, device=codes.device)
        return codes

    def health(self, posteriors: Sequence[Distribution]) -> dict[str, Any]:
        """Active units: those whose posterior mean varies with x (Burda et al. 2016)."""
        activity = self.coordinate_information(posteriors)
        active_units = int((activity > ACTIVE_UNIT_THRESHOLD).sum())
        return {
            "latent/in_use": active_units,
            "latent/coordinates": len(activity),
            "latent/active_units": active_units,
            "latent/unit_activity": activity.tolist(),
        }

    def manifold(self, steps: int) -> Tensor | None:
        """For dim = 2: a steps x steps grid evenly spaced in probability (the inverse normal CDF
        of 0.05 .. 0.95, as in Kingma & Welling's figure 4), row-major with y up, (steps^2, 2)."""
        if self.dim != 2:
            return None
        coords = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, steps, device=self._zeros.device))
        zy, zx = torch.meshgrid(coords.flip(0), coords, indexing="ij")
        return torch.stack([zx, zy], dim=-1).view(-1, 2)
