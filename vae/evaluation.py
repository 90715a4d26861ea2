"""Test-set numbers of a trained VAE, computed from encode(x) = q(z|x), decode(z) = p(x|z), prior().

- -ELBO with z ~ q(z|x) (one-hot for the categorical model), averaged over the k samples:
  recon = -mean_j log p(x|z_j), plus the analytic KL(q(z|x) || p(z)).
- Importance-weighted bound (Burda et al. 2016), with z_j ~ q(z|x), j = 1..k:
      -log p(x) <= -log (1/k) sum_j p(x|z_j) p(z_j) / q(z_j|x)        (nll_iw)
  computed with logsumexp; it tightens as k grows and equals the ELBO at k = 1.
- Exact -log p(x) = -log sum_c p(x|c) p(c) for a categorical latent with K^N <= 2^14 codes, by
  enumerating every code c (nll_exact): what nll_iw must approach.
- Latent health: Gaussian active units (Burda et al.: Cov_x(E_q[z_u]) > 0.01); categorical
  per-variable perplexity of the aggregate posterior q(z_n) = E_x q(z_n|x), and the mutual
  information I(x; z_n) = E_x KL(q(z_n|x) || q(z_n)) below which a variable ignores the input.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.distributions import kl_divergence

from vae.estimators.exact import MAX_CODES as MAX_ENUMERATED_CODES
from vae.estimators.exact import all_codes as _all_codes
from vae.latents import CategoricalLatent, GaussianLatent
from vae.module import VAE

ACTIVE_UNIT_THRESHOLD = 0.01  # Burda et al. 2016
IGNORED_VARIABLE_THRESHOLD = 0.01  # nats of I(x; z_n)


@torch.no_grad()
def importance_weighted(model: VAE, x: Tensor, k: int, chunk_size: int = 100) -> dict[str, Tensor]:
    """Per-image nll_iw, neg_elbo, recon and kl, each (B,), from k samples of q(z|x).

    The k samples are drawn chunk_size at a time, so memory holds chunk_size * B decoded images.
    """
    q, prior = model.encode(x), model.prior()
    log_weights, recon = [], []
    for start in range(0, k, chunk_size):
        n = min(chunk_size, k - start)
        z = q.sample((n,))  # (n, B, *event_shape)
        x_rep = x.expand(n, *x.shape).flatten(0, 1)  # (n * B, 1, 28, 28)
        log_px_z = model.decode(z.flatten(0, 1)).log_prob(x_rep).view(n, -1)  # (n, B)
        log_weights.append(log_px_z + prior.log_prob(z) - q.log_prob(z))  # (n, B)
        recon.append(-log_px_z)
    log_w = torch.cat(log_weights)  # (k, B)
    kl = kl_divergence(q, prior)
    recon_mean = torch.cat(recon).mean(0)
    return {
        "nll_iw": math.log(k) - torch.logsumexp(log_w, dim=0),
        "neg_elbo": recon_mean + kl,
        "recon": recon_mean,
        "kl": kl,
    }


@torch.no_grad()
def importance_weighted_means(
    model: VAE, batches: Iterable[Tensor], k: int, chunk_size: int = 100, progress: bool = False
) -> dict[str, float]:
    """test/nll_iw, test/neg_elbo, test/recon, test/kl: importance_weighted averaged over images."""
    if progress:
        from tqdm import tqdm

        batches = tqdm(batches, desc=f"importance sampling, k={k}", unit="batch", mininterval=1)
    totals: dict[str, Tensor] = {}
    num_images = 0
    for x in batches:
        num_images += len(x)
        for name, value in importance_weighted(model, x, k, chunk_size).items():
            totals[name] = totals.get(name, 0) + value.sum()
    return {f"test/{name}": (total / num_images).item() for name, total in totals.items()}


def num_codes(latent: CategoricalLatent) -> int:
    return latent.num_classes**latent.num_variables


def can_enumerate(model: VAE) -> bool:
    latent = model.latent
    return isinstance(latent, CategoricalLatent) and num_codes(latent) <= MAX_ENUMERATED_CODES


def all_codes(latent: CategoricalLatent, device: torch.device | str = "cpu") -> Tensor:
    """Every one-hot code, (K^N, N, K), in lexicographic order of the class indices."""
    return _all_codes(latent.num_variables, latent.num_classes, device)


@torch.no_grad()
def exact_nll(model: VAE, images: Iterable[Tensor], code_chunk: int = 4096) -> Tensor:
    """-log p(x) by enumerating every code, per image, (num_images,).

    log p(x|c) for Bernoulli logits l_c is x . l_c - sum softplus(l_c), so all image-code pairs
    of a batch are one matrix product instead of (B x K^N) decoded images.
    """
    if not can_enumerate(model):
        raise ValueError(f"exact NLL needs a categorical latent with K^N <= {MAX_ENUMERATED_CODES}")
    device = next(model.parameters()).device
    codes = all_codes(model.latent, device)  # (C, N, K)
    log_prior = model.prior().log_prob(codes)  # (C,)
    logits, log_normalizer = [], []
    for chunk in codes.split(code_chunk):
        chunk_logits = model.decode(chunk).base_dist.logits.flatten(1)  # (c, 784)
        logits.append(chunk_logits)
        log_normalizer.append(F.softplus(chunk_logits).sum(-1))
    logits, log_normalizer = torch.cat(logits), torch.cat(log_normalizer)  # (C, 784), (C,)
    nll = []
    for x in images:
        log_joint = x.flatten(1) @ logits.T - log_normalizer + log_prior  # (B, C)
        nll.append(-torch.logsumexp(log_joint, dim=1))
    return torch.cat(nll)


@torch.no_grad()
def latent_health(model: VAE, images: Iterable[Tensor]) -> dict[str, float | list[float]]:
    """Gaussian: active units. Categorical: aggregate perplexity and ignored variables."""
    posteriors = [model.encode(x) for x in images]
    if isinstance(model.latent, GaussianLatent):
        means = torch.cat([q.mean for q in posteriors])  # (num_images, D): E_q[z]
        activity = means.var(dim=0)  # Cov_x(E_q[z_u]) per unit u
        return {
            "latent/active_units": int((activity > ACTIVE_UNIT_THRESHOLD).sum()),
            "latent/unit_activity": activity.tolist(),
        }
    probs = torch.cat([q.base_dist.probs for q in posteriors])  # (num_images, N, K)
    aggregate = probs.mean(0)  # (N, K): q(z_n) = E_x q(z_n|x)
    entropy = -(aggregate * aggregate.clamp_min(1e-30).log()).sum(-1)  # (N,)
    log_ratio = probs.clamp_min(1e-30).log() - aggregate.clamp_min(1e-30).log()
    mutual_information = (probs * log_ratio).sum(-1).mean(0)  # (N,): E_x KL(q(z_n|x) || q(z_n))
    ignored = int((mutual_information < IGNORED_VARIABLE_THRESHOLD).sum())
    return {
        "latent/perplexity_mean": entropy.exp().mean().item(),
        "latent/perplexity": entropy.exp().tolist(),
        "latent/mutual_information": mutual_information.tolist(),
        "latent/ignored_variables": ignored,
    }
