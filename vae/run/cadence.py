"""How often a run validates (and so checkpoints its best weights), and how the reported
checkpoint was chosen, in words."""

from __future__ import annotations

from omegaconf import DictConfig, open_dict

from vae.data import BinarizedImages
from vae.errors import ConfigError

VALIDATIONS_PER_SHORT_RUN = 10


def validate_often_enough(cfg: DictConfig, datamodule: BinarizedImages) -> None:
    """A run too short for two end-of-epoch validations validates (and checkpoints) every tenth of
    its steps instead, so that it too has a best checkpoint and a validation curve. A cadence set
    with trainer.val_check_interval is left alone."""
    trainer = cfg.trainer
    if trainer.get("fast_dev_run"):
        return
    per_epoch = datamodule.train_batches_per_epoch()
    limit = trainer.get("limit_train_batches", 1.0)
    per_epoch = min(per_epoch, limit) if isinstance(limit, int) else int(per_epoch * limit)
    interval = trainer.get("val_check_interval")
    if (
        isinstance(interval, int)
        and trainer.get("check_val_every_n_epoch") is not None
        and interval > per_epoch
    ):
        raise ConfigError(
            f"trainer.val_check_interval={interval} is not allowed: an epoch has {per_epoch} training"
            f" batches; use at most {per_epoch}, or add trainer.check_val_every_n_epoch=null to count"
            " the steps across epochs"
        )
    if interval is not None:
        return  # a cadence the user set is kept
    lengths = [trainer.max_steps] if (trainer.get("max_steps") or -1) > 0 else []
    lengths += [trainer.max_epochs * per_epoch] if (trainer.get("max_epochs") or -1) > 0 else []
    total = min(lengths, default=None)
    if (
        total is None
        or per_epoch == 0
        or total >= 2 * per_epoch * (trainer.get("check_val_every_n_epoch") or 1)
    ):
        return
    with open_dict(cfg):
        trainer.val_check_interval = max(1, total // VALIDATIONS_PER_SHORT_RUN)
        trainer.check_val_every_n_epoch = None  # the interval counts steps across epochs


def validation_cadence(cfg: DictConfig, best: str | None) -> str:
    """How the reported checkpoint was chosen, in words, for metrics.json and the report."""
    if best is None:
        return "none: final weights"
    interval = cfg.trainer.get("val_check_interval")
    if isinstance(interval, int):
        return f"best of validations every {interval} steps"
    every = cfg.trainer.get("check_val_every_n_epoch") or 1
    return "best of validations each epoch" if every == 1 else f"best of validations every {every} epochs"
