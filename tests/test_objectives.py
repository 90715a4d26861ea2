"""The training objectives (vae/objectives/): values and gradients against exact ones.

A tiny VAE (2x2 images, a 3-bit Bernoulli latent with a learned prior, or a 1-d Gaussian) keeps
the exact k-sample bound computable: by enumerating every k-tuple of codes for the Bernoulli
latent, by Gauss-Hermite quadrature for the Gaussian. Mean estimates over many draws are compared
with it within 5 standard errors per coordinate, from independent batches of draws (a correct
estimator fails a coordinate with probability ~6e-7).
"""

import csv
import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

import vae.run
from conftest import compose_config
from vae.errors import ConfigError, InvalidValue
from vae.evaluation import importance_weighted
from vae.latents import BernoulliLatent, GaussianLatent
from vae.model import VAE
from vae.objectives import IWAE, OBJECTIVES, VIMCO, build_objective, log_mean_exp

IMAGE = torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]])  # (1, 1, 2, 2)
K = 3


def _tiny_vae(latent, objective=None, seed: int = 0) -> VAE:
    torch.manual_seed(seed)
    encoder = nn.Sequential(nn.Flatten(), nn.Linear(4, latent.num_params))
    decoder = nn.Sequential(nn.Linear(latent.code_size, 4), nn.Unflatten(1, (1, 2, 2)))
    model = VAE(latent, encoder, decoder, image_shape=(1, 2, 2), objective=objective)
    with torch.no_grad():  # away from the symmetric start, so every gradient coordinate matters
        for p in model.parameters():
            p.add_(torch.randn_like(p))
    return model


def _bernoulli_vae(objective=None, estimator="disarm") -> VAE:
    return _tiny_vae(BernoulliLatent(num_latents=3, prior="learned", estimator=estimator), objective)


def _exact_bound(model: VAE, k: int) -> torch.Tensor:
    """E over z_1..z_k ~ q(z|x) of log (1/k) sum_j w_j, by enumerating all 8^k tuples of codes."""
    codes = torch.tensor(list(itertools.product([0.0, 1.0], repeat=3)))  # (8, 3)
    q = model.encode(IMAGE)
    log_w, _ = model.log_weights(IMAGE, codes.unsqueeze(1), q)  # (8, 1)
    log_q = q.log_prob(codes.unsqueeze(1))  # (8, 1)
    tuples = torch.tensor(list(itertools.product(range(8), repeat=k)))  # (8^k, k)
    bound = log_mean_exp(log_w[tuples, 0].T)  # (8^k,)
    return (log_q[tuples, 0].sum(1).exp() * bound).sum()


def _flat_grad(model: VAE, value: torch.Tensor) -> torch.Tensor:
    grads = torch.autograd.grad(value, list(model.parameters()), allow_unused=True)
    flat = [
        torch.zeros(p.numel()) if g is None else g.flatten()
        for p, g in zip(model.parameters(), grads, strict=True)
    ]
    return torch.cat(flat)


def _batch_means(model: VAE, batches: int, rows: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per independent batch of `rows` draws: the mean gradient and the mean value of the loss."""
    x = IMAGE.expand(rows, 1, 2, 2)
    grads, values = [], []
    for _ in range(batches):
        loss = model.training_terms(x)["loss"].mean()
        grads.append(_flat_grad(model, loss))
        values.append(loss.detach())
    return torch.stack(grads), torch.stack(values)


def _z_scores(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    assert torch.isfinite(samples).all()
    se = samples.std(0) / math.sqrt(len(samples))
    return (samples.mean(0) - reference).abs() / se.clamp_min(1e-12)


def test_vimco_gradient_is_unbiased_for_the_k_sample_bound():
    torch.manual_seed(1)
    model = _bernoulli_vae(VIMCO(num_samples=K))
    exact = _flat_grad(model, -_exact_bound(model, K))
    grads, _ = _batch_means(model, batches=40, rows=2000)
    z = _z_scores(grads, exact)
    assert (z < 5).all(), f"max z = {z.max():.1f}"


class _BoundAtFixedSamples(VIMCO):
    """VIMCO without its score term: the gradient of the bound at fixed z, biased for q."""

    def training_terms(self, model, x, temperature):
        q = model.encode(x)
        z = q.sample((self.num_samples,))
        log_w, _ = model.log_weights(x, z, q)
        return {"loss": -log_mean_exp(log_w)}


def test_the_unbiasedness_check_sees_a_missing_score_term():
    torch.manual_seed(1)
    model = _bernoulli_vae(_BoundAtFixedSamples(num_samples=K))
    exact = _flat_grad(model, -_exact_bound(model, K))
    grads, _ = _batch_means(model, batches=40, rows=2000)
    assert _z_scores(grads, exact).max() > 10


@pytest.mark.parametrize("objective", ["vimco", "iwae", "evaluation"])
def test_the_k_sample_value_is_the_exact_bound_on_average(objective):
    """VIMCO's loss, IWAE's loss through straight-through samples (one-hot forward) and
    evaluation's nll_iw are each -L_k of exact samples: their mean matches the enumeration."""
    torch.manual_seed(2)
    spec = {"name": objective, "num_samples": K} if objective != "evaluation" else None
    model = _bernoulli_vae(spec, "straight_through")
    exact = -_exact_bound(model, K).detach()
    x = IMAGE.expand(4000, 1, 2, 2)
    with torch.no_grad():
        if objective == "evaluation":
            values = torch.stack([importance_weighted(model, x, K)["nll_iw"].mean() for _ in range(30)])
        else:
            values = torch.stack([model.training_terms(x, 1.0)["loss"].mean() for _ in range(30)])
    assert _z_scores(values.unsqueeze(1), exact) < 5


def test_iwae_gradient_of_a_gaussian_matches_quadrature():
    """IWAE's reparameterized gradient against the exact gradient of E[L_2] for a 1-d Gaussian
    latent, computed by a 60x60 Gauss-Hermite product rule (nodes fixed, so autograd through it
    is the exact gradient of the quadrature)."""
    torch.manual_seed(3)
    model = _tiny_vae(GaussianLatent(dim=1), IWAE(num_samples=2))
    nodes, weights = np.polynomial.hermite_e.hermegauss(60)  # for the weight exp(-eps^2 / 2)
    eps = torch.tensor(nodes, dtype=torch.float32)
    weight = torch.tensor(weights / weights.sum(), dtype=torch.float32)
    q = model.encode(IMAGE)
    z = q.loc + q.scale * eps.view(-1, 1, 1)  # (60, 1, 1): the sample for each node
    log_w, _ = model.log_weights(IMAGE, z, q)  # (60, 1)
    pairs = log_mean_exp(torch.stack(torch.broadcast_tensors(log_w[:, None, 0], log_w[None, :, 0])))
    exact = _flat_grad(model, -(weight[:, None] * weight[None, :] * pairs).sum())
    grads, _ = _batch_means(model, batches=40, rows=2000)
    z_scores = _z_scores(grads, exact)
    assert (z_scores < 5).all(), f"max z = {z_scores.max():.1f}"


def test_the_elbo_objective_is_the_latents_own_training_terms():
    """objective=elbo changes nothing: the same loss and gradient as the latent's estimator."""
    model = _bernoulli_vae(None, "disarm")
    x = IMAGE.expand(64, 1, 2, 2)
    torch.manual_seed(4)
    terms = model.training_terms(x)
    torch.manual_seed(4)
    q = model.encode(x)
    direct = model.latent.training_terms(q, lambda z: -model.decode(z).log_prob(x), None, inputs=x)
    assert torch.equal(terms["loss"], direct["neg_elbo"])
    assert torch.equal(terms["loss"], terms["neg_elbo"])
    assert torch.equal(_flat_grad(model, terms["loss"].sum()), _flat_grad(model, direct["neg_elbo"].sum()))


def test_multi_sample_terms_add_up_and_bound_the_elbo():
    model = _bernoulli_vae(VIMCO(num_samples=8))
    terms = model.training_terms(IMAGE.expand(500, 1, 2, 2))
    assert torch.allclose(terms["neg_elbo"], terms["recon"] + terms["kl"])
    # -L_k <= mean_j(-log w_j) sample by sample (Jensen), hence on every image.
    assert (terms["loss"] <= terms["neg_elbo"] + 1e-5).all()


def test_what_the_training_system_reads_follows_the_objective():
    vimco = _bernoulli_vae(VIMCO(num_samples=4), "gumbel_softmax")
    assert (vimco.uses_temperature, vimco.relaxes, vimco.estimator_name, vimco.decoder_passes) == (
        False,
        False,
        "vimco",
        4,
    )
    iwae = _bernoulli_vae(IWAE(num_samples=4), "gumbel_softmax")
    assert (iwae.uses_temperature, iwae.relaxes, iwae.estimator_name, iwae.decoder_passes) == (
        True,
        True,
        "gumbel_softmax",
        4,
    )


@pytest.mark.parametrize(
    "spec, key",
    [
        ({"name": "vimco", "num_samples": 1}, "num_samples"),
        ({"name": "iwae", "num_samples": 0}, "num_samples"),
        ({"name": "iwae", "num_samples": True}, "num_samples"),
        ({"name": "bogus"}, "name"),
        ({"name": "iwae", "samples": 3}, "settings"),
    ],
)
def test_bad_objective_settings_are_named(spec, key):
    with pytest.raises(InvalidValue) as error:
        build_objective(spec, OBJECTIVES)
    assert error.value.name == key


@pytest.mark.parametrize("estimator", ["disarm", "reinforce", "nvil", "exact"])
def test_iwae_refuses_estimators_without_a_pathwise_sample(estimator):
    with pytest.raises(InvalidValue, match=f"model.estimator={estimator} is not one"):
        _bernoulli_vae(IWAE(), estimator)


@pytest.mark.parametrize(
    "overrides, message",
    [
        (["model=bernoulli", "objective=iwae"], "objective=iwae is not allowed here: it trains through"),
        (["objective=vimco", "objective.num_samples=1"], "objective.num_samples=1 is not allowed"),
    ],
)
def test_train_refuses_a_bad_objective_in_one_line_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        vae.run.prepare(compose_config(overrides, tmp_path / "run"))
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("model, objective", [("bernoulli", "vimco"), ("categorical", "iwae")])
def test_a_multi_sample_objective_trains_logs_its_loss_and_is_recorded(tmp_path, model, objective):
    overrides = [
        *(f"model={model}", f"objective={objective}", "objective.num_samples=3", "logger=csv"),
        *("trainer.max_steps=4", "trainer.max_epochs=-1", "trainer.log_every_n_steps=2"),
        *("trainer.limit_val_batches=1", "+trainer.limit_test_batches=1", "data.eval_batch_size=100"),
    ]
    metrics = vae.run.train(compose_config(overrides, tmp_path / "run"))
    assert (metrics["objective"], metrics["num_samples"]) == (objective, 3)
    assert metrics["decoder_passes"] == 3
    assert math.isfinite(metrics["val/neg_elbo"]) and math.isfinite(metrics["test/neg_elbo"])
    with open(tmp_path / "run" / "csv" / "metrics.csv") as f:
        rows = [row for row in csv.DictReader(f) if row.get("train/loss")]
    assert rows and all(float(r["train/loss"]) <= float(r["train/neg_elbo"]) + 1e-4 for r in rows)
