"""Test-set numbers of a trained VAE, computed from encode(x) = q(z|x), decode(z) = p(x|z), prior().

- -ELBO with z ~ q(z|x) (one-hot for a categorical latent), averaged over the k samples:
  recon = -mean_j log p(x|z_j), plus the analytic KL(q(z|x) || p(z)) (for the two-layer latent,
  its estimate from the same k samples: Latent.kl_estimate).
- Importance-weighted bound (Burda et al. 2016), with z_j ~ q(z|x), j = 1..k:
      -log p(x) <= -log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x)        (nll_iw)
  computed with logsumexp; it tightens as k grows and equals the ELBO at k = 1.
- Exact -log p(x) = -log sum_c p(x|c) p(c) for a latent small enough to enumerate, over every
  code c (nll_exact): what nll_iw must approach.
- Latent health: what each latent says it means (Latent.health): active units of a Gaussian, the
  per-variable perplexity and mutual information of a categorical.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from vae.data import TensorBatches
from vae.model import VAE
from vae.objectives import log_mean_exp


@torch.no_grad()
def importance_weighted(
    model: VAE, x: Tensor, k: int, chunk_size: int = 100, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Per-image nll_iw, neg_elbo, recon and kl, each (B,), from k samples of q(z|x).

    The k samples are drawn chunk_size at a time, so memory holds chunk_size * B decoded images.
    """
    q = model.encode(x)
    log_weights, recon = [], []
    for start in range(0, k, chunk_size):
        n = min(chunk_size, k - start)
        z = q.sample((n,), generator=generator)  # (n, B, *event_shape)
        log_w, log_px_z = model.log_weights(x, z, q, generator)  # (n, B) each: the objectives' computation
        log_weights.append(log_w)
        recon.append(-log_px_z)
    log_w, recon = torch.cat(log_weights), torch.cat(recon)  # (k, B) each
    kl = model.latent.kl_estimate(q, lambda: -recon - log_w)  # log q - log p at the same samples
    recon_mean = recon.mean(0)
    return {
        "nll_iw": -log_mean_exp(log_w),
        "neg_elbo": recon_mean + kl,
        "recon": recon_mean,
        "kl": kl,
    }


@torch.no_grad()
def importance_weighted_means(
    model: VAE,
    batches: Iterable[Tensor],
    k: int,
    chunk_size: int = 100,
    progress: bool = False,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """test/nll_iw, test/neg_elbo, test/recon, test/kl: importance_weighted averaged over images."""
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"importance sampling, k={k}", unit="batch", mininterval=1)
    totals: dict[str, Tensor] = {}
    num_images = 0
    for x in batches:
        num_images += len(x)
        for name, value in importance_weighted(model, x, k, chunk_size, generator).items():
            totals[name] = totals.get(name, 0) + value.sum()
    return {f"test/{name}": (total / num_images).item() for name, total in totals.items()}


def test_set_bounds(
    model: VAE,
    images: Tensor,
    k: int,
    seed: int,
    batch_size: int = 100,
    chunk_size: int = 100,
    progress: bool = False,
) -> dict[str, float]:
    """importance_weighted_means over images (N, C, H, W), in eval mode, the k samples drawn from a
    generator seeded with seed: the one computation behind vae.evaluate and a run's final test."""
    model.eval()
    generator = torch.Generator(images.device).manual_seed(seed)
    return importance_weighted_means(
        model, TensorBatches(images, batch_size), k, chunk_size, progress=progress, generator=generator
    )


@torch.no_grad()
def exact_nll(model: VAE, images: Iterable[Tensor], code_chunk: int = 4096) -> Tensor:
    """-log p(x) by enumerating every code, per image, (num_images,).

    log p(x|c) for Bernoulli logits l_c is x . l_c - sum softplus(l_c), so all image-code pairs
    of a batch are one matrix product instead of (B x codes) decoded images.
    """
    codes = model.latent.all_codes()  # (C, *event); refused when the latent has too many
    log_prior = model.prior().log_prob(codes)  # (C,)
    logits, log_normalizer = [], []
    for chunk in codes.split(code_chunk):
        chunk_logits = model.decode(chunk).base_dist.logits.flatten(1)  # (c, C*H*W)
        logits.append(chunk_logits)
        log_normalizer.append(F.softplus(chunk_logits).sum(-1))
    logits, log_normalizer = torch.cat(logits), torch.cat(log_normalizer)  # (C, pixels), (C,)
    nll = []
    for x in images:
        log_joint = x.flatten(1) @ logits.T - log_normalizer + log_prior  # (B, C)
        nll.append(-torch.logsumexp(log_joint, dim=1))
    return torch.cat(nll)


@torch.no_grad()
def latent_health(model: VAE, images: Iterable[Tensor]) -> dict[str, Any]:
    """Whether the latent is used, as the latent defines it (vae/latents/: Latent.health)."""
    return model.latent.health([model.encode(x) for x in images])
