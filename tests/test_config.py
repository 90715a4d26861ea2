"""Every config group composes and builds; every bad value is stopped with its key named."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch

import train
from vae.config import ConfigError, instantiate_node

REPO = Path(__file__).resolve().parents[1]
GROUPS = {
    group: sorted(p.stem for p in (REPO / "configs" / group).glob("*.yaml"))
    for group in ("model", "network", "tau", "optimizer", "logger", "trainer", "data", "debug")
}


def test_the_config_groups_are_the_ones_documented():
    assert GROUPS["model"] == ["categorical", "gaussian"]
    assert GROUPS["tau"] == ["constant", "cosine", "exponential", "linear"]
    assert GROUPS["logger"] == ["csv", "none", "wandb"]


@pytest.mark.parametrize("model", GROUPS["model"])
@pytest.mark.parametrize("network", GROUPS["network"])
@pytest.mark.parametrize("tau", GROUPS["tau"])
def test_every_model_network_and_schedule_builds_and_computes_a_finite_loss(make_config, model, network, tau):
    cfg = make_config([f"model={model}", f"network={network}", f"tau={tau}"])
    _, vae = train._build_checked(cfg)
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    q = vae.encode(x)
    z = vae.latent.rsample(q, vae.tau_at(0))
    terms = vae.negative_elbo(x, z, q)
    assert terms["neg_elbo"].shape == (4,) and torch.isfinite(terms["neg_elbo"]).all()
    assert (vae.temperature is not None) == (model == "categorical")


@pytest.mark.parametrize("optimizer", GROUPS["optimizer"])
def test_every_optimizer_builds(make_config, optimizer):
    cfg = make_config([f"optimizer={optimizer}", "optimizer.lr=0.0123"])
    _, vae = train._build_checked(cfg)
    built = vae.configure_optimizers()
    assert type(built).__name__.lower() == optimizer
    assert built.param_groups[0]["lr"] == 0.0123


@pytest.mark.parametrize("logger", GROUPS["logger"])
def test_every_logger_trainer_and_callback_instantiates(make_config, logger):
    cfg = make_config([f"logger={logger}"])
    loggers = [instantiate_node(cfg, f"logger.{name}") for name in (cfg.get("logger") or {})]
    assert len(loggers) == (0 if logger == "none" else 1)
    callbacks = [instantiate_node(cfg, f"callbacks.{name}") for name in cfg.callbacks]
    trainer = instantiate_node(cfg, "trainer", logger=loggers or False, callbacks=callbacks)
    assert trainer.max_epochs == 100


@pytest.mark.parametrize(
    "override, message",
    [
        ("tau.tau0=0", "tau.tau0=0 is not allowed"),
        ("tau.tau0=-1.5", "tau.tau0=-1.5 is not allowed"),
        ("tau=constant tau.tau0=-1", "tau.tau0=-1 is not allowed"),
        ("tau.tau_min=0", "tau.tau_min=0 is not allowed"),
        ("tau.tau_min=2.0", "tau.tau_min=2.0 is not allowed: must be < tau0"),
        ("tau=cosine tau.num_steps=0", "tau.num_steps=0 is not allowed"),
        ("model.num_variables=0", "model.num_variables=0 is not allowed"),
        ("model.num_classes=-3", "model.num_classes=-3 is not allowed"),
        ("model=gaussian model.dim=0", "model.dim=0 is not allowed"),
        ("network.encoder.hidden_sizes=[512,0]", "network.encoder.hidden_sizes=0 is not allowed"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed"),
        ("data.val_size=60000", "data.val_size=60000 is not allowed: must be < 60000"),
        ("data.val_size=0", "data.val_size=0 is not allowed"),
        ("data.binarization=grey", "data.binarization='grey' is not allowed: one of"),
        ("ckpt_path=/no/such.ckpt", "ckpt_path='/no/such.ckpt': /no/such.ckpt: no such"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 is not allowed: must be a finite"),
        ("trainer.gradient_clip_val=0", "trainer.gradient_clip_val=0 is not allowed"),
    ],
)
def test_bad_values_stop_before_any_work_naming_key_and_value(make_config, tmp_path, override, message):
    cfg = make_config(override.split())
    with pytest.raises(ConfigError) as error:
        train.train(cfg)
    assert message in str(error.value)
    assert not (tmp_path / "run").exists()  # nothing written


def _cli(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *overrides, "paths.log_dir=" + str(cwd / "runs")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_unknown_model_lists_the_options(tmp_path):
    result = _cli("model=bernoulli", cwd=tmp_path)
    assert result.returncode != 0
    assert "Could not find 'model/bernoulli'" in result.stderr
    assert "categorical" in result.stderr and "gaussian" in result.stderr


def test_cli_unknown_schedule_lists_the_options(tmp_path):
    result = _cli("tau=sigmoid", cwd=tmp_path)
    assert result.returncode != 0 and "Could not find 'tau/sigmoid'" in result.stderr
    assert "cosine" in result.stderr


def test_cli_bad_value_is_one_message_without_a_traceback(tmp_path):
    result = _cli("tau.tau0=-1", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: tau.tau0=-1 is not allowed: must be a finite number > 0")
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.glob("runs/**/metrics.json"))


def test_an_empty_wandb_mode_in_the_environment_counts_as_unset(monkeypatch, tmp_path):
    from vae.loggers import wandb_logger

    monkeypatch.setenv("WANDB_MODE", "")  # `export WANDB_MODE=` in a shell profile
    logger = wandb_logger(mode="offline", save_dir=str(tmp_path))
    try:
        assert logger.experiment.settings.mode == "offline"
    finally:
        logger.experiment.finish()
    assert list(tmp_path.glob("wandb/offline-run-*"))
