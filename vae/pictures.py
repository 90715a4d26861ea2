"""Image grids of a trained VAE: reconstructions, prior samples, latent traversals, 2-D manifold.

Every grid is a (3, H, W) float tensor of Bernoulli means p(x=1|z) in [0, 1], ready for
torchvision.utils.save_image (uint8 PNG) or W&B (`to_uint8`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import Normal
from torchvision.utils import make_grid

from vae.evaluation import latent_health
from vae.latents import CategoricalLatent
from vae.module import VAE

GAUSSIAN_SWEEP = (-3.0, 3.0)


def to_uint8(grid: Tensor) -> Tensor:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 on the CPU (what W&B and PIL read unambiguously)."""
    return grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()


def _decoded_mean(model: VAE, z: Tensor) -> Tensor:
    return model.decode(z).mean  # (B, 1, 28, 28)


@torch.no_grad()
def reconstruction_grid(model: VAE, x: Tensor, tau: float | None = None, per_row: int = 8) -> Tensor:
    """Blocks of `per_row` test digits, each block a row of digits above rows of reconstructions.

    Gaussian: one row, decoded from the posterior mean. Categorical: decoded from a one-hot
    z ~ q(z|x) and, if tau is given, from the relaxed sample at tau beneath it.
    """
    q = model.encode(x)
    if isinstance(model.latent, CategoricalLatent):
        rows = [_decoded_mean(model, q.sample())]
        if tau is not None:
            rows.append(_decoded_mean(model, model.latent.rsample(q, tau)))
    else:
        rows = [_decoded_mean(model, q.mean)]
    blocks = []
    for start in range(0, len(x), per_row):
        part = slice(start, start + per_row)
        blocks += [x[part], *[row[part] for row in rows]]
    return make_grid(torch.cat(blocks), nrow=per_row, pad_value=0.5)


@torch.no_grad()
def prior_sample_grid(model: VAE, num_samples: int = 64) -> Tensor:
    """Decoded samples z ~ p(z): uniformly drawn one-hot codes for the categorical model."""
    z = model.prior().sample((num_samples,))
    return make_grid(_decoded_mean(model, z), nrow=int(num_samples**0.5), pad_value=0.5)


def _most_informative(model: VAE, x: Tensor, count: int) -> list[int]:
    """Latent coordinates ordered by how much they carry about x (activity or I(x; z_n))."""
    health = latent_health(model, [x])
    score = health.get("latent/unit_activity") or health["latent/mutual_information"]
    return torch.tensor(score).argsort(descending=True)[:count].tolist()


@torch.no_grad()
def traversal_grid(model: VAE, x: Tensor, reference: Tensor, num_dims: int = 4, steps: int = 11) -> Tensor:
    """For each digit in x and each of the num_dims most informative coordinates, one row.

    Categorical: the variable stepped through all K classes, the others at the most likely code.
    Gaussian: the dimension swept over [-3, 3] in `steps` points, the others at the posterior mean.
    `reference` is a batch of images used to rank the coordinates.
    """
    dims = _most_informative(model, reference, num_dims)
    q = model.encode(x)
    rows = []
    if isinstance(model.latent, CategoricalLatent):
        num_classes = model.latent.num_classes
        mode = F.one_hot(q.base_dist.probs.argmax(-1), num_classes).float()  # (B, N, K)
        for code in mode:
            for n in dims:
                z = code.expand(num_classes, -1, -1).clone()  # (K, N, K)
                z[:, n] = torch.eye(num_classes, device=z.device)  # variable n takes each class
                rows.append(_decoded_mean(model, z))
        per_row = num_classes
    else:
        values = torch.linspace(*GAUSSIAN_SWEEP, steps, device=x.device)
        for mean in q.mean:
            for d in dims:
                z = mean.expand(steps, -1).clone()  # (steps, D)
                z[:, d] = values
                rows.append(_decoded_mean(model, z))
        per_row = steps
    return make_grid(torch.cat(rows), nrow=per_row, pad_value=0.5)


@torch.no_grad()
def manifold_grid(model: VAE, steps: int = 20) -> Tensor:
    """Decoded means over a steps x steps grid of a 2-D Gaussian latent.

    The grid is evenly spaced in probability (the inverse normal CDF of 0.05 .. 0.95), as in
    Kingma & Welling's figure 4, so it covers the prior's mass rather than its tails.
    """
    if model.latent.code_size != 2 or isinstance(model.latent, CategoricalLatent):
        raise ValueError("the manifold picture needs a 2-dimensional Gaussian latent")
    device = next(model.parameters()).device
    coords = Normal(0.0, 1.0).icdf(torch.linspace(0.05, 0.95, steps, device=device))
    zy, zx = torch.meshgrid(coords.flip(0), coords, indexing="ij")
    z = torch.stack([zx, zy], dim=-1).view(-1, 2)  # (steps^2, 2), row-major, y up
    return make_grid(_decoded_mean(model, z), nrow=steps, padding=0)
