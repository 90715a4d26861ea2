"""The latents against closed forms and torch.distributions."""

import math

import torch
from torch.distributions import Categorical, Normal, kl_divergence

from vae.latents import CategoricalLatent, GaussianLatent

torch.manual_seed(0)


def test_gaussian_kl_matches_the_closed_form_and_torch_distributions():
    latent = GaussianLatent(dim=5)
    q = latent.posterior(torch.randn(8, 10) * 2)  # (B, 2 * dim)
    loc, scale = q.base_dist.loc, q.base_dist.scale
    closed_form = 0.5 * (loc**2 + scale**2 - 1 - torch.log(scale**2)).sum(-1)
    reference = kl_divergence(Normal(loc, scale), Normal(0.0, 1.0)).sum(-1)
    kl = kl_divergence(q, latent.prior())
    assert kl.shape == (8,)
    torch.testing.assert_close(kl, closed_form)
    torch.testing.assert_close(kl, reference)


def test_categorical_kl_matches_the_closed_form_and_torch_distributions():
    latent = CategoricalLatent(num_variables=4, num_classes=6)
    q = latent.posterior(torch.randn(8, 24) * 3)
    probs = torch.softmax(q.base_dist.logits, -1)  # (B, N, K)
    closed_form = (probs * (torch.log(probs) + math.log(6))).sum((-1, -2))
    reference = kl_divergence(Categorical(probs=probs), Categorical(logits=torch.zeros(6))).sum(-1)
    kl = kl_divergence(q, latent.prior())
    assert kl.shape == (8,)
    torch.testing.assert_close(kl, closed_form)
    torch.testing.assert_close(kl, reference)


def test_reparameterized_gradient_matches_the_closed_form():
    # E[exp(z)] for z ~ N(mu, sigma^2) is exp(mu + sigma^2 / 2); its gradient is known exactly.
    latent = GaussianLatent(dim=1)
    loc = torch.tensor([0.3], requires_grad=True)
    raw_scale = torch.tensor([-0.5], requires_grad=True)
    n = 400_000
    q = latent.posterior(torch.cat([loc, raw_scale]).expand(n, 2))
    f = torch.exp(latent.rsample(q)).squeeze(-1)  # (n,)
    (grad_loc,) = torch.autograd.grad(f.mean(), loc)

    sigma = q.base_dist.scale[0, 0].item()
    exact = math.exp(0.3 + sigma**2 / 2)  # d/dmu of exp(mu + sigma^2 / 2)
    standard_error = f.detach().std().item() / math.sqrt(n)  # d f / d mu = f per sample
    assert abs(grad_loc.item() - exact) < 5 * standard_error


def test_categorical_posterior_samples_are_one_hot_with_the_right_shape():
    latent = CategoricalLatent(num_variables=3, num_classes=4)
    q = latent.posterior(torch.randn(5, 12))
    z = q.sample()
    assert z.shape == (5, 3, 4)
    assert (z.sum(-1) == 1).all()
    relaxed = latent.rsample(q, 0.5)
    assert relaxed.shape == (5, 3, 4) and not torch.equal(relaxed, relaxed.round())
    assert latent.prior().sample((7,)).shape == (7, 3, 4)
