"""vae/compat.py: each reliance on a library's internals still holds for the installed versions.

A failure here after an upgrade names the function to rewrite, instead of a run that silently
logs nothing, resumes at step 0 or loads another run's checkpoint.
"""

from __future__ import annotations

import csv

import lightning as L
import pytest
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, WandbLogger
from torch import nn
from torch.distributions import OneHotCategorical

from vae import compat


class _Tiny(L.LightningModule):
    """A linear regression on random data; records what compat says on each training step."""

    def __init__(self, automatic: bool = True) -> None:
        super().__init__()
        self.layer = nn.Linear(3, 1)
        self.automatic_optimization = automatic
        self.said: list[tuple[int, bool]] = []

    def training_step(self, batch, batch_idx):
        loss = self.layer(batch).pow(2).mean()
        self.said.append((self.global_step, compat.logs_this_step(self.trainer)))
        self.log("loss", loss)
        if not self.automatic_optimization:
            optimizer = self.optimizers()
            optimizer.zero_grad()
            self.manual_backward(loss)
            optimizer.step()
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.randn(40, 3), batch_size=4)


def _trainer(tmp_path, **kwargs) -> L.Trainer:
    options = dict(
        default_root_dir=tmp_path, enable_progress_bar=False, enable_model_summary=False, max_steps=10
    )
    return L.Trainer(**{**options, **kwargs})


@pytest.mark.parametrize("automatic", [True, False])
def test_logs_this_step_is_true_exactly_on_the_steps_lightning_logs(tmp_path, automatic):
    module = _Tiny(automatic)
    logger = CSVLogger(tmp_path)
    _trainer(tmp_path, logger=logger, log_every_n_steps=3, enable_checkpointing=False).fit(module)
    with open(logger.log_dir + "/metrics.csv", newline="") as f:
        logged = sorted(int(row["step"]) for row in csv.DictReader(f) if row.get("loss"))
    said = [step for step, yes in module.said if yes]
    assert logged and said == logged, (said, logged)


def test_attached_trainer_is_none_for_a_module_on_its_own_and_the_trainer_in_fit(tmp_path):
    module = _Tiny()
    assert compat.attached_trainer(module) is None
    trainer = _trainer(tmp_path, logger=False, enable_checkpointing=False, max_steps=1)
    trainer.fit(module)
    assert compat.attached_trainer(module) is trainer


def test_an_automatic_optimization_checkpoint_resumes_at_its_step_under_manual_optimization(tmp_path):
    trainer = _trainer(tmp_path, logger=False, enable_checkpointing=False, max_steps=5)
    trainer.fit(_Tiny(automatic=True))
    trainer.save_checkpoint(tmp_path / "auto.ckpt")
    checkpoint = torch.load(tmp_path / "auto.ckpt", weights_only=False)
    compat.count_automatic_steps_as_manual(checkpoint)
    torch.save(checkpoint, tmp_path / "as_manual.ckpt")
    manual = _Tiny(automatic=False)
    resumed = _trainer(tmp_path, logger=False, enable_checkpointing=False, max_steps=7)
    resumed.fit(manual, ckpt_path=tmp_path / "as_manual.ckpt")
    assert [step for step, _ in manual.said] == [5, 6]  # resumed at step 5, not 0


def test_forgetting_best_checkpoints_elsewhere_clears_what_model_checkpoint_restores(tmp_path):
    first = ModelCheckpoint(dirpath=tmp_path / "a", monitor="loss", save_top_k=1)
    trainer = _trainer(tmp_path, logger=False, callbacks=[first], max_steps=5)
    trainer.fit(_Tiny())
    assert first.best_model_path
    checkpoint = torch.load(first.best_model_path, weights_only=False)
    compat.forget_best_checkpoints_elsewhere(checkpoint, str(tmp_path / "b"))
    second = ModelCheckpoint(dirpath=tmp_path / "b", monitor="loss")
    (state,) = [s for k, s in checkpoint["callbacks"].items() if k.startswith("ModelCheckpoint")]
    second.load_state_dict(state)
    assert second.best_model_path == "" and second.best_k_models == {}
    untouched = torch.load(first.best_model_path, weights_only=False)
    compat.forget_best_checkpoints_elsewhere(untouched, str(tmp_path / "a"))  # the same directory
    (state,) = [s for k, s in untouched["callbacks"].items() if k.startswith("ModelCheckpoint")]
    assert state["best_model_path"] == first.best_model_path


def test_finish_wandb_run_starts_no_run_and_finishes_a_started_one(tmp_path, monkeypatch):
    import wandb

    monkeypatch.setenv("WANDB_SILENT", "true")
    logger = WandbLogger(mode="offline", save_dir=str(tmp_path))
    compat.finish_wandb_run(logger)  # nothing started: nothing to finish, nothing written
    assert not (tmp_path / "wandb").exists()
    run = logger.experiment
    assert wandb.run is run
    compat.finish_wandb_run(logger)
    assert wandb.run is None


def test_an_unset_wandb_init_argument_is_left_out_and_others_kept():
    logger = WandbLogger(mode="disabled", project="p")
    assert logger._wandb_init.get("anonymous", "missing") is None  # what Lightning passes today
    compat.drop_unset_wandb_init_argument(logger, "anonymous")
    assert "anonymous" not in logger._wandb_init and logger._wandb_init["project"] == "p"


def test_hydra_failing_key_names_the_nested_node():
    node = {"outer": {"inner": {"_target_": "torch.nn.Linear", "in_features": "three"}}}
    with pytest.raises(InstantiationException) as caught:
        instantiate(node)
    assert compat.hydra_failing_key(caught.value) == "outer.inner"


def test_the_unchecked_one_hot_categorical_is_torchs_without_validation():
    logits = torch.randn(5, 4, 3)
    ours, torchs = compat.UncheckedOneHotCategorical(logits), OneHotCategorical(logits=logits)
    x = torchs.sample()
    assert torch.allclose(ours.log_prob(x), torchs.log_prob(x))
    assert torch.allclose(ours.entropy(), torchs.entropy())
    assert ours.batch_shape == torchs.batch_shape and ours.event_shape == torchs.event_shape
    assert torch.equal(ours.sample(torch.Size([2])).sum(-1), torch.ones(2, 5, 4))
    with pytest.raises(ValueError):  # validate_args given: torch._dynamo turns the default off once imported
        OneHotCategorical(logits=torch.full((2, 3), float("nan")), validate_args=True)
    compat.UncheckedOneHotCategorical(torch.full((2, 3), float("nan")))  # no check, no sync
