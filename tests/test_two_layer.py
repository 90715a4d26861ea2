"""The two-layer Bernoulli latent z2 -> z1 -> x (vae/latents/two_layer.py) on a model small enough
to enumerate both layers (3 bits of z1, 2 of z2, 4 pixels): its prior, its importance-weighted
bound and its training gradient against the exact two-layer numbers."""

import csv
import json

import pytest
import torch
from gradient_checks import assert_mean_differs, assert_mean_matches
from torch import nn

import vae.run
from vae.errors import InvalidValue
from vae.latents import IndependentBernoullis, TwoLayerBernoulliLatent
from vae.model import VAE

N1, N2 = 3, 2
IMAGES = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 0]]).view(2, 1, 2, 2)


def small_model(estimator, upper_estimator=None, seed=0):
    torch.manual_seed(seed)
    latent = TwoLayerBernoulliLatent(N1, N2, estimator=estimator, upper_estimator=upper_estimator)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, N1))
    decoder = nn.Sequential(nn.Linear(N1, 4), nn.Unflatten(1, (1, 2, 2)))
    model = VAE(latent, encoder, decoder, (1, 2, 2))
    with torch.no_grad():  # weights far enough from zero that every gradient is clearly non-zero
        for p in model.parameters():
            p.normal_(0, 1)
    return model


def every_code(n):
    return IndependentBernoullis(torch.zeros(n)).enumerate_support(expand=False)  # (2^n, n)


def exact_neg_elbo(model, x):
    """-ELBO = sum_z1 q(z1|x) [-log p(x|z1) + log q(z1|x)
    + sum_z2 q(z2|z1) (log q(z2|z1) - log p(z1|z2) - log p(z2))], per image (B,)."""
    latent = model.latent
    q = model.encode(x)
    z1 = every_code(N1).unsqueeze(1)  # (C1, 1, N1)
    log_q1 = q.log_prob(z1)  # (C1, B)
    recon = -model.decode(z1).log_prob(x)  # (C1, B)
    z2 = every_code(N2).view(-1, 1, 1, N2)  # (C2, 1, 1, N2)
    log_q2 = latent.upper_posterior(z1).log_prob(z2)  # (C2, C1, 1)
    log_p12 = latent.conditional(z2).log_prob(z1) + latent.upper.prior().log_prob(z2)  # (C2, C1, 1)
    upper = (log_q2.exp() * (log_q2 - log_p12)).sum(0)  # (C1, 1)
    return (log_q1.exp() * (recon + log_q1 + upper)).sum(0)


def exact_nll(model, x):
    """-log sum_{z1, z2} p(x|z1) p(z1|z2) p(z2), per image (B,)."""
    z1 = every_code(N1).unsqueeze(1)  # (C1, 1, N1)
    log_px = model.decode(z1).log_prob(x)  # (C1, B)
    log_pz1 = model.latent.prior().exact_log_prob(z1)  # (C1, 1)
    return -torch.logsumexp(log_px + log_pz1, dim=0)


def model_gradient(model, loss):
    """The gradient of loss for every parameter but the estimators' control variates (trained on
    the estimate's variance, which has no exact counterpart), flattened."""
    control = {id(p) for p in model.parameter_groups().get("control_variate", [])}
    params = [p for p in model.parameters() if id(p) not in control]
    grads = torch.autograd.grad(loss, params, allow_unused=True, materialize_grads=True)
    return torch.cat([g.flatten() for g in grads])


def estimated_gradients(model, draws=100, copies=100, temperature=None):
    """(draws, parameters): each the mean gradient of the summed loss over `copies` copies of the images."""
    x = IMAGES.repeat(copies, 1, 1, 1)
    return torch.stack(
        [
            model_gradient(model, model.training_terms(x, temperature)["loss"].sum() / copies)
            for _ in range(draws)
        ]
    )


def test_the_prior_samples_ancestrally_and_its_log_prob_is_unbiased_for_p_z1():
    prior = small_model("disarm").prior()
    codes = every_code(N1)
    exact = prior.exact_log_prob(codes).exp()  # (C1,) p(z1)
    assert exact.sum().item() == pytest.approx(1.0, abs=1e-6)
    with torch.no_grad():
        samples = prior.sample((20000,), generator=torch.Generator().manual_seed(0))  # (S, N1)
        frequency = (samples.unsqueeze(1) == codes).all(-1).float().mean(0)  # (C1,)
        estimate = prior.log_prob(codes.expand(20000, *codes.shape)).exp()  # (S, C1): z2 drawn per row
    stderr = (exact * (1 - exact) / 20000).sqrt()
    assert ((frequency - exact).abs() < 5 * stderr).all(), (frequency, exact)
    assert_mean_matches(estimate, exact)


def test_the_importance_weights_are_the_two_layer_ones_and_the_bound_tightens_to_the_exact_nll():
    from vae.evaluation import importance_weighted

    model = small_model("disarm")
    k = 20000
    with torch.no_grad():
        exact, elbo = exact_nll(model, IMAGES), exact_neg_elbo(model, IMAGES)
        q = model.encode(IMAGES)
        z = q.sample((k,), generator=torch.Generator().manual_seed(1))  # (k, B, N1)
        log_w, _ = model.log_weights(IMAGES, z, q, torch.Generator().manual_seed(2))  # (k, B)
        many = importance_weighted(model, IMAGES, k, 5000, generator=torch.Generator().manual_seed(0))
        one = importance_weighted(model, IMAGES, 1, generator=torch.Generator().manual_seed(0))
        same = importance_weighted(model, IMAGES, 1, generator=torch.Generator().manual_seed(0))
    # exp(log w) is unbiased for p(x) and log w's mean is the ELBO: the two-layer weight, z2 included.
    assert_mean_matches(log_w.exp(), (-exact).exp())
    assert_mean_matches(log_w, -elbo)
    # The k-sample bound of evaluation: within 5 standard errors (delta method) of -log p(x).
    stderr = log_w.exp().std(0) / (k**0.5 * log_w.exp().mean(0))
    assert ((many["nll_iw"] - exact).abs() < 5 * stderr).all(), (many["nll_iw"], exact, stderr)
    torch.testing.assert_close(many["recon"] + many["kl"], many["neg_elbo"])
    assert torch.equal(one["nll_iw"], same["nll_iw"])  # the generator draws z1 and z2 alike


@pytest.mark.parametrize(
    "estimator, upper_estimator",
    [("disarm", None), ("relax", {"name": "nvil", "normalize": False})],
)
def test_unbiased_estimators_match_the_exact_two_layer_gradient(estimator, upper_estimator):
    model = small_model(estimator, upper_estimator)
    exact = model_gradient(model, exact_neg_elbo(model, IMAGES).sum())
    assert_mean_matches(estimated_gradients(model), exact)


def test_the_gradient_check_sees_a_biased_estimator():
    model = small_model("straight_through")
    exact = model_gradient(model, exact_neg_elbo(model, IMAGES).sum())
    assert_mean_differs(estimated_gradients(model, draws=30, temperature=1.0), exact)


def test_the_training_value_is_the_two_layer_elbo_and_its_terms_add_up():
    model = small_model("disarm")
    x = IMAGES.repeat(2000, 1, 1, 1)
    with torch.no_grad():
        terms = model.training_terms(x)
        exact = exact_neg_elbo(model, IMAGES).repeat(2000)
    torch.testing.assert_close(terms["loss"].mean(), exact.mean(), atol=0.05, rtol=0)
    torch.testing.assert_close(terms["recon"] + terms["kl"], terms["neg_elbo"])


def test_the_k_sample_objectives_are_refused_naming_the_reason():
    model = small_model("disarm")
    for objective in ("vimco", {"name": "iwae", "num_samples": 2}):
        with pytest.raises(InvalidValue, match="one-sample estimate"):
            model.use_objective(objective)


def test_the_two_layer_model_trains_with_disarm_and_reports_its_bound(make_config, tmp_path):
    overrides = [
        "model=bernoulli_two_layer",
        "model.num_latents=20",
        "model.upper_latents=10",
        "logger=csv",
        "trainer.max_steps=30",  # under two epochs: validated every 3 steps
        "trainer.max_epochs=-1",
        "trainer.limit_val_batches=1",
        "data.eval_batch_size=100",
        "iw_samples=10",
    ]
    metrics = vae.run.train(make_config(overrides))
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        validations = [float(row["val/neg_elbo"]) for row in csv.DictReader(f) if row.get("val/neg_elbo")]
    assert len(validations) >= 5 and validations[-1] < validations[0] - 50, validations
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == pytest.approx(metrics)
    assert metrics["test/nll_iw"] <= metrics["test/neg_elbo"]
    assert metrics["test/neg_elbo"] == pytest.approx(metrics["test/recon"] + metrics["test/kl"], rel=1e-5)
