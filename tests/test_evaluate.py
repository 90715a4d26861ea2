"""python -m vae.evaluate and vae/evaluation.py on small models trained on synthetic data."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributions import kl_divergence

import vae
from conftest import child_env, tool_config
from vae.errors import CheckpointError, ConfigError
from vae.evaluation import exact_nll, importance_weighted, latent_health
from vae.tools.evaluate import evaluate, evaluation_path


@pytest.fixture(scope="module")
def tiny_ckpt(train_checkpoint):
    """3 variables of 4 classes: 64 codes, small enough to enumerate."""
    return train_checkpoint("tiny", ["model.num_variables=3", "model.num_classes=4"])


@pytest.fixture(scope="module")
def gaussian_8d_ckpt(train_checkpoint):
    return train_checkpoint("gauss8", ["model=gaussian", "model.dim=8"], steps=200)


def eval_config(ckpt, **overrides):
    return tool_config("evaluate", ckpt, **overrides)


def test_bound_lies_below_the_elbo_and_tightens_with_k(categorical_ckpt, test_images):
    model = vae.load(categorical_ckpt)
    x = test_images[:500]
    torch.manual_seed(0)
    neg_elbo = importance_weighted(model, x, k=1)["neg_elbo"].mean().item()
    bounds = {k: importance_weighted(model, x, k=k)["nll_iw"].mean().item() for k in (1, 10, 100, 1000)}
    assert bounds[1] == pytest.approx(neg_elbo, abs=1.5)  # k = 1: the ELBO itself (noisier)
    assert neg_elbo > bounds[10] > bounds[100] > bounds[1000]
    assert bounds[1] - bounds[1000] > 5  # a 20x10 model after 300 steps: a loose ELBO


def test_k_5000_runs_in_bounded_chunks(categorical_ckpt, test_images):
    model = vae.load(categorical_ckpt)
    result = importance_weighted(model, test_images[:4], k=5000, chunk_size=250)
    assert result["nll_iw"].shape == (4,) and torch.isfinite(result["nll_iw"]).all()


def test_exact_nll_matches_a_code_by_code_sum(tiny_ckpt, test_images):
    model = vae.load(tiny_ckpt)
    x = test_images[:3]
    codes = model.latent.all_codes()  # (64, 3, 4)
    assert codes.shape == (64, 3, 4) and len({tuple(c.argmax(-1).tolist()) for c in codes}) == 64
    with torch.no_grad():  # log p(x) = log sum_c p(x|c) p(c), one decoded code at a time
        log_joint = torch.stack(
            [model.decode(c[None].expand(3, -1, -1)).log_prob(x) + model.prior().log_prob(c) for c in codes]
        )  # (64, 3)
    reference = -torch.logsumexp(log_joint, dim=0)
    torch.testing.assert_close(exact_nll(model, [x]), reference, rtol=1e-5, atol=1e-3)


def test_importance_weighted_bound_approaches_the_exact_nll(tiny_ckpt, test_images):
    # Trained, this q puts > 0.9999 on one code within a few dozen steps, so no practical k
    # closes the gap (which is why nll_exact is reported). Tempering the encoder's logits keeps
    # the trained decoder, hence a meaningful p(x), and gives the proposal support on every code.
    model = vae.load(tiny_ckpt)
    with torch.no_grad():
        model.encoder[-1].weight.mul_(0.02)
        model.encoder[-1].bias.mul_(0.02)
    x = test_images[:300]
    exact = exact_nll(model, [x]).mean().item()
    torch.manual_seed(1)
    gaps = [importance_weighted(model, x, k=k)["nll_iw"].mean().item() - exact for k in (1, 10, 100, 2000)]
    assert gaps[0] > gaps[1] > gaps[2] > gaps[3] > -0.02  # an upper bound on -log p(x), tightening
    assert gaps[3] < 0.05


def test_eval_json_agrees_with_an_independent_computation(categorical_ckpt, test_images):
    results = evaluate(eval_config(categorical_ckpt, k=20))
    written = json.loads(evaluation_path(categorical_ckpt, 20).read_text())
    assert written == json.loads(json.dumps(results))  # what was returned is what was written
    assert written["k"] == 20 and written["seed"] == 0 and written["num_images"] == 500
    assert "test/nll_exact" not in written  # 10^20 codes: not enumerated

    model = vae.load(categorical_ckpt)
    torch.manual_seed(99)  # other samples than evaluate's: agreement within Monte Carlo error
    with torch.no_grad():
        q = model.encode(test_images)
        kl = kl_divergence(q, model.prior())  # no sampling: must agree to float precision
        z = q.sample((20,))  # (20, 500, 20, 10) one-hot
        log_px = torch.stack([model.decode(zj).log_prob(test_images) for zj in z])  # (20, 10k)
        log_w = log_px + model.prior().log_prob(z) - q.log_prob(z)
        nll_iw = math.log(20) - torch.logsumexp(log_w, 0)
    assert written["test/kl"] == pytest.approx(kl.mean().item(), rel=1e-5)
    recon_se = log_px.mean(0).std().item() / math.sqrt(log_px.shape[1])  # over images, k-sample means
    assert abs(written["test/recon"] + log_px.mean().item()) < 5 * math.sqrt(2) * recon_se
    se = nll_iw.std().item() / math.sqrt(len(nll_iw))
    assert abs(written["test/nll_iw"] - nll_iw.mean().item()) < 5 * math.sqrt(2) * se
    assert written["test/neg_elbo"] == pytest.approx(written["test/recon"] + written["test/kl"])

    again = evaluate(eval_config(categorical_ckpt, k=20))
    assert again == results  # same checkpoint and seed: same numbers


def test_exact_nll_is_reported_for_an_enumerable_latent(tiny_ckpt):
    results = evaluate(eval_config(tiny_ckpt, k=200))
    # A near-deterministic q makes the bound equal to the ELBO; the exact NLL lies below both.
    assert results["test/nll_exact"] < results["test/nll_iw"] <= results["test/neg_elbo"] + 1e-3


def test_latent_health_finds_variables_that_ignore_the_input(categorical_ckpt, test_images):
    model = vae.load(categorical_ckpt)
    x = test_images[:1000]
    assert latent_health(model, [x])["latent/ignored_variables"] == 0
    last = model.encoder[-1]  # Linear(256, N*K): rows n*K .. n*K+K-1 are variable n's logits
    with torch.no_grad():
        last.weight[: 3 * 10] = 0  # variables 0, 1, 2 now ignore x
    health = latent_health(model, [x])
    assert health["latent/ignored_variables"] == 3
    assert max(health["latent/mutual_information"][:3]) < 1e-6
    assert all(1 <= p <= 10 + 1e-4 for p in health["latent/perplexity"])


def test_latent_health_counts_active_units(gaussian_8d_ckpt, test_images):
    model = vae.load(gaussian_8d_ckpt)
    x = test_images[:1000]
    health = latent_health(model, [x])
    with torch.no_grad():  # the reference: the variance over images of E_q[z] = loc
        means = model.encode(x).mean
    torch.testing.assert_close(torch.tensor(health["latent/unit_activity"]), means.var(0))
    assert health["latent/active_units"] == int((means.var(0) > 0.01).sum())
    assert health["latent/active_units"] >= 2
    with torch.no_grad():
        model.encoder[-1].weight[:8] = 0  # outputs 0..7 are the means: now constant in x
    assert latent_health(model, [x])["latent/active_units"] == 0


# Bad input: one message naming the path; nothing else on disk touched ---------------------


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    truncated = folder / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    foreign = folder / "foreign.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, foreign)
    not_ours = folder / "not_ours.ckpt"
    checkpoint = torch.load(good, weights_only=True)
    checkpoint["vae_config"] = {"_target_": "torch.nn.Linear", "in_features": 2, "out_features": 2}
    torch.save(checkpoint, not_ours)
    return {
        "missing": (folder / "missing.ckpt", "no such checkpoint file"),
        "truncated": (truncated, "a damaged PyTorch checkpoint archive"),
        "foreign": (foreign, "not a checkpoint of this project"),
        "not ours": (not_ours, "does not hold a model of this project"),
    }


def test_bad_checkpoints_get_one_message_and_touch_nothing(categorical_ckpt, tmp_path):
    bad = _bad_checkpoints(tmp_path, categorical_ckpt)
    before = _listing(tmp_path)
    for path, message in bad.values():
        with pytest.raises(CheckpointError, match=message) as error:
            evaluate(eval_config(path, k=2))
        assert str(path) in str(error.value)
    assert _listing(tmp_path) == before


@pytest.mark.parametrize("k", [0, -5])
def test_non_positive_k_is_refused(categorical_ckpt, k):
    with pytest.raises(ConfigError, match=f"k={k} is not allowed: must be a positive integer"):
        evaluate(eval_config(categorical_ckpt, k=k))


def test_cli_prints_one_message_without_a_traceback(categorical_ckpt, tmp_path):
    bad = _bad_checkpoints(tmp_path, categorical_ckpt)
    before = _listing(tmp_path)
    for module in ("vae.evaluate", "vae.sample"):
        for path, message in (bad["missing"], bad["foreign"]):
            result = subprocess.run(
                [sys.executable, "-m", module, f"ckpt_path={path}"],
                cwd=tmp_path,
                env=child_env(),
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert result.returncode == 1
            assert result.stderr.startswith(f"error: {path}: {message}")
            assert "Traceback" not in result.stderr + result.stdout
    assert _listing(tmp_path) == before  # not even a Hydra outputs/ folder


def test_evaluations_of_two_checkpoints_and_two_k_are_all_kept(train_checkpoint, tmp_path):
    best = train_checkpoint("two_checkpoints", ["model.num_variables=3", "model.num_classes=4"], steps=36)
    last = best.parent / "last.ckpt"
    assert best != last
    written = {}
    for ckpt in (best, last):
        for k in (2, 3):
            evaluate(eval_config(ckpt, k=k))
            written[ckpt.name, k] = evaluation_path(ckpt, k)
    assert len(set(written.values())) == 4 and all(path.is_file() for path in written.values())
    for (ckpt_name, k), path in written.items():
        result = json.loads(path.read_text())
        assert result["k"] == k and result["checkpoint"].endswith(ckpt_name)
