"""Image grids of a trained VAE: reconstructions, prior samples, latent traversals, 2-D manifold.

Every grid is a (3, H, W) float tensor of Bernoulli means p(x=1|z) in [0, 1], ready for
torchvision.utils.save_image (uint8 PNG) or W&B (`to_uint8`). What each picture shows of z is
the latent's to say (vae/latents/): which codes a reconstruction decodes, what a traversal steps
through, whether a manifold exists.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.utils import make_grid

from vae.model import VAE


def to_uint8(grid: Tensor) -> Tensor:
    """(3, H, W) in [0, 1] -> (H, W, 3) uint8 on the CPU (what W&B and PIL read unambiguously)."""
    return grid.mul(255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).cpu()


def _decoded_mean(model: VAE, z: Tensor) -> Tensor:
    return model.decode(z).mean  # (B, C, H, W)


@torch.no_grad()
def reconstruction_grid(
    model: VAE,
    x: Tensor,
    tau: float | None = None,
    per_row: int = 8,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Blocks of `per_row` test digits, each block a row of digits above rows of reconstructions:
    one row per code the latent reconstructs from (Latent.reconstruction_codes: the posterior
    mean of a Gaussian; a one-hot sample of a categorical, and its relaxed sample at tau)."""
    q = model.encode(x)
    rows = [_decoded_mean(model, z) for z in model.latent.reconstruction_codes(q, tau, generator)]
    blocks = []
    for start in range(0, len(x), per_row):
        part = slice(start, start + per_row)
        blocks += [x[part], *[row[part] for row in rows]]
    return make_grid(torch.cat(blocks), nrow=per_row, pad_value=0.5)


@torch.no_grad()
def prior_sample_grid(model: VAE, num_samples: int = 64, generator: torch.Generator | None = None) -> Tensor:
    """Decoded samples z ~ p(z)."""
    z = model.prior().sample((num_samples,), generator=generator)
    return make_grid(_decoded_mean(model, z), nrow=int(num_samples**0.5), pad_value=0.5)


def most_informative(model: VAE, x: Tensor, count: int) -> list[int]:
    """The `count` latent coordinates that carry most about the images x, most first."""
    with torch.no_grad():
        score = model.latent.coordinate_information([model.encode(x)])
    return score.argsort(descending=True)[:count].tolist()


@torch.no_grad()
def traversal_grid(model: VAE, x: Tensor, reference: Tensor, num_dims: int = 4, steps: int = 11) -> Tensor:
    """For each digit in x and each of the num_dims most informative coordinates (ranked on the
    `reference` images), one row: that coordinate stepped through its values (Latent.traversal),
    the others at the digit's most likely code."""
    dims = most_informative(model, reference, num_dims)
    params = model.encoder(x)  # (B, num_params)
    rows = []
    for i in range(len(x)):
        q = model.latent.posterior(params[i : i + 1])  # q(z|x_i), batch_shape (1,)
        rows += [_decoded_mean(model, model.latent.traversal(q, d, steps)) for d in dims]
    return make_grid(torch.cat(rows), nrow=len(rows[0]), pad_value=0.5)


@torch.no_grad()
def manifold_grid(model: VAE, steps: int = 20) -> Tensor | None:
    """Decoded means over a steps x steps grid of a 2-D latent, or None if the latent has no such
    picture (Latent.manifold)."""
    z = model.latent.manifold(steps)
    if z is None:
        return None
    return make_grid(_decoded_mean(model, z), nrow=steps, padding=0)
