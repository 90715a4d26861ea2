"""python -m vae.diagnose: the exact gradient, the bias and variance it reports, the files it writes."""

import contextlib
import io
import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from PIL import Image

from conftest import CONFIGS, REPO
from vae.errors import ConfigError
from vae.tools.diagnose import _model_and_data, _test_images, diagnose


def _config(tmp_path, *overrides):
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        return compose("diagnose", overrides=["data=synthetic", f"output_dir={tmp_path / 'out'}", *overrides])


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A fresh 3 x 4 model (64 codes), 40 images, Gumbel-Softmax over a wide tau grid."""
    tmp_path = tmp_path_factory.mktemp("diagnose")
    cfg = _config(
        tmp_path,
        "model.num_variables=3",
        "model.num_classes=4",
        "num_images=40",
        "num_draws=400",
        "taus=[0.1,0.5,5.0]",
        "estimators=[gumbel_softmax,st_gumbel,reinmax,reinforce_loo]",
    )
    console = io.StringIO()  # stdout and stderr as one terminal shows them, in order
    with contextlib.redirect_stdout(console), contextlib.redirect_stderr(console):
        results = diagnose(cfg)
    (tmp_path / "console.txt").write_text(console.getvalue())
    return cfg, results, tmp_path / "out"


def test_exact_gradient_matches_an_independent_enumeration(small_run):
    # The negative ELBO summed over codes with the decoder's Bernoulli log-likelihood written as
    # x . l - sum softplus(l) (as vae.evaluation.exact_nll does), differentiated by autograd.
    cfg, results, _ = small_run
    model, datamodule, _ = _model_and_data(cfg)
    x = _test_images(datamodule, cfg.num_images, torch.device("cpu"))
    with torch.no_grad():
        logits = model.encode(x).logits  # (B, N, K)
        codes = model.latent.all_codes()  # (C, N, K)
        decoded = model.decoder(codes.flatten(1)).flatten(1)  # (C, 784)
        log_px = x.flatten(1) @ decoded.T - F.softplus(decoded).sum(-1)  # (B, C)
    theta = logits.clone().requires_grad_()
    log_q = torch.einsum("cnk,bnk->bc", codes, torch.log_softmax(theta, -1))  # (B, C)
    probs = torch.softmax(theta, -1)
    kl = (probs * (torch.log_softmax(theta, -1) + np.log(4))).sum((-2, -1))  # (B,)
    neg_elbo = (-(log_q.exp() * log_px).sum(-1) + kl).mean()
    (grad,) = torch.autograd.grad(neg_elbo, theta)
    assert results["exact_gradient_norm"] == pytest.approx(grad.norm().item(), rel=1e-4)


def test_reinforce_loo_shows_no_bias_beyond_its_noise(small_run):
    _, results, _ = small_run
    (row,) = [r for r in results["rows"] if r["estimator"] == "reinforce_loo"]
    assert row["tau"] is None  # it has no temperature: measured once
    assert row["rel_error"] < 3 * row["noise_floor"]
    assert row["cosine"] > 0.9


def test_gumbel_softmax_bias_falls_and_variance_rises_as_tau_falls(small_run):
    _, results, _ = small_run
    rows = {r["tau"]: r for r in results["rows"] if r["estimator"] == "gumbel_softmax"}
    assert rows[0.1]["bias"] < rows[0.5]["bias"] < rows[5.0]["bias"]
    assert rows[0.1]["rel_variance"] > rows[0.5]["rel_variance"] > rows[5.0]["rel_variance"]
    # At tau = 5 the relaxed sample is nearly uniform: the bias is far above the noise.
    assert rows[5.0]["bias"] > 5 * rows[5.0]["noise_floor"]


def test_writes_the_table_the_json_and_two_plots(small_run):
    _, results, out = small_run
    assert json.loads((out / "diagnose.json").read_text()) == results
    table = (out / "diagnose.md").read_text()
    assert len([line for line in table.splitlines() if line.startswith("| reinmax |")]) == 3
    for name in ("bias.png", "variance.png"):
        rgb = np.asarray(Image.open(out / name).convert("RGB")).astype(int)
        assert (rgb.max(-1) - rgb.min(-1) > 60).mean() > 0.002  # colored curves drawn


def test_says_what_it_measures_before_each_row_and_the_table_as_rows_finish(small_run):
    _, results, out = small_run
    lines = (out.parent / "console.txt").read_text().splitlines()
    assert lines[0].endswith(
        ": 10 rows (4 estimators), 400 draws each on 40 test images; first the exact gradient,"
        " a sum over all 64 codes"
    )
    assert re.fullmatch(r"exact gradient: \d+\.\d s", lines[1])
    table = [
        i for i, line in enumerate(lines) if line.startswith("| ") and not line.startswith("| estimator")
    ]
    announced = [i for i, line in enumerate(lines) if line.startswith("[")]
    assert len(table) == len(announced) == len(results["rows"]) == 10
    assert all(
        a < t for a, t in zip(announced, table, strict=True)
    )  # each row announced before it is printed
    assert all(a > t for a, t in zip(announced[1:], table[:-1], strict=True))  # one at a time
    assert re.fullmatch(r"\[1/10\] gumbel_softmax at τ=0\.1: \d+\.\d s", lines[announced[0]])
    assert re.fullmatch(r"\[10/10\] reinforce_loo: \d+\.\d s", lines[announced[-1]])


def test_a_latent_too_large_to_enumerate_is_refused_with_the_fix(tmp_path, categorical_ckpt):
    cfg = _config(tmp_path, f"ckpt_path={categorical_ckpt}")
    with pytest.raises(
        ConfigError,
        match="20x10 categorical latent cannot be enumerated: it has 1e\\+20 codes.*model.num_variables=4",
    ):
        diagnose(cfg)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "override, message",
    [
        ("estimators=[exact]", "'exact' is the reference"),
        (
            "estimators=[bogus]",
            "'bogus' is not allowed for the 4x4 categorical latent: one of gumbel_softmax",
        ),
        ("model=gaussian", "the 20-dimensional Gaussian latent cannot be enumerated: it is continuous"),
        ("taus=[0.5,0]", "taus=\\[0.5, 0\\] is not allowed"),
        ("taus=[fast]", "taus=\\['fast'\\] is not allowed"),
        ("num_draws=0", "num_draws=0 is not allowed"),
    ],
)
def test_bad_settings_are_one_line_before_any_work(tmp_path, override, message):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "vae.diagnose",
            "data=synthetic",
            f"output_dir={tmp_path}/out",
            override,
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: ") and len(result.stderr.strip().splitlines()) == 1
    assert re.search(message, result.stderr)
    assert not (tmp_path / "out").exists()
