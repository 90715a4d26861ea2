"""Every place the project relies on a library's private attributes or internal formats.

Each function names the version it was written for and has a test in tests/test_compat.py that
fails if the library's behaviour changes, so an upgrade (lightning>=2.4,<3, wandb, hydra-core,
torch) breaks here, with a message, rather than somewhere deep in a run. Nothing else in vae/
touches a library's underscore names.

Written for: lightning 2.6, wandb 0.2x, hydra-core 1.3, torch 2.x.
"""

from __future__ import annotations

import copy
import re
from typing import Any

import lightning as L
from lightning.pytorch.loggers import Logger, WandbLogger
from torch import Tensor
from torch.distributions import Categorical, Distribution, OneHotCategorical

# Lightning ---------------------------------------------------------------------------------------


def attached_trainer(module: L.LightningModule) -> L.Trainer | None:
    """The Trainer a LightningModule is attached to, or None (a module used on its own, as the
    tools and tests do). LightningModule.trainer raises when there is none (lightning 2.x)."""
    try:
        return module.trainer
    except RuntimeError:
        return None


def logs_this_step(trainer: L.Trainer) -> bool:
    """Whether Lightning sends this training step's self.log values to the loggers (every
    trainer.log_every_n_steps steps, and on the step that stops training).

    Calling self.log on the other steps costs time (and a host-to-device copy), so the training
    step asks first. Lightning 2.6: _LoggerConnector.should_update_logs; no public equivalent.
    """
    return trainer._logger_connector.should_update_logs


# Lightning checkpoints: the layout of the dict Lightning saves (lightning 2.6).
_MANUAL_STEPS = "epoch_loop.manual_optimization.optim_step_progress"
_AUTOMATIC_PROGRESS = "epoch_loop.automatic_optimization.optim_progress"


def count_automatic_steps_as_manual(checkpoint: dict[str, Any]) -> None:
    """Resume a checkpoint written when Lightning made the optimizer step (automatic optimization).

    Lightning counts the global step in the loop that makes the step; that count now comes from
    the manual loop, which such a checkpoint holds at 0. Without this, a resumed run would start
    again at step 0 (and tau at tau0). Called before Lightning restores its loops from the dict.
    """
    fit_loop = checkpoint.get("loops", {}).get("fit_loop", {})
    automatic = fit_loop.get(_AUTOMATIC_PROGRESS, {}).get("optimizer", {})
    manual = fit_loop.get(_MANUAL_STEPS)
    if "step" in automatic and manual is not None and manual["total"]["completed"] == 0:
        fit_loop[_MANUAL_STEPS] = copy.deepcopy(automatic["step"])


def forget_best_checkpoints_elsewhere(checkpoint: dict[str, Any], dirpath: str | None) -> None:
    """A run resumed into another directory tracks its best checkpoint there, from scratch.

    Lightning restores the best checkpoint's path even when the checkpoint directory changed, so
    the resumed run's final validation and test could load a file of the previous run's folder.
    Called before Lightning restores the callbacks' states from the dict; the state keys are
    ModelCheckpoint.state_dict's (lightning 2.6).
    """
    for key, state in checkpoint.get("callbacks", {}).items():
        if key.startswith("ModelCheckpoint") and dirpath is not None and state.get("dirpath") != dirpath:
            state.update(best_model_path="", best_model_score=None, kth_best_model_path="", best_k_models={})
            state.update(last_model_path="", kth_value=None)


# Weights & Biases --------------------------------------------------------------------------------


def finish_wandb_run(logger: Logger) -> None:
    """Finish a WandbLogger's W&B run if it started one; start none (logger.experiment would).
    Lightning 2.6: WandbLogger._experiment is None until the run starts."""
    if isinstance(logger, WandbLogger) and logger._experiment is not None:
        logger.experiment.finish()


def drop_unset_wandb_init_argument(logger: WandbLogger, name: str) -> None:
    """Leave out an argument Lightning passes to wandb.init as None (anonymous=None draws a
    warning that the setting has no effect). Lightning 2.6: WandbLogger._wandb_init holds them."""
    if name in logger._wandb_init and logger._wandb_init[name] is None:
        del logger._wandb_init[name]


# Hydra -------------------------------------------------------------------------------------------


def hydra_failing_key(error: Exception) -> str | None:
    """The config key of the node whose instantiation failed, from an InstantiationException.
    Hydra 1.3 names it only in its message ("... full_key: a.b")."""
    found = re.search(r"full_key: (\S+)", str(error))
    return found.group(1) if found else None


# torch.distributions -----------------------------------------------------------------------------


class UncheckedOneHotCategorical(OneHotCategorical):
    """OneHotCategorical without argument validation, inner Categorical included.

    torch builds the inner Categorical (its private _categorical, which sample, log_prob and
    entropy use) with the default validate_args whatever is passed
    (torch/distributions/one_hot_categorical.py), which costs a host sync every step and turns
    a NaN into a ValueError before the training step can report the step and tau.
    """

    def __init__(self, logits: Tensor) -> None:
        self._categorical = Categorical(logits=logits, validate_args=False)
        batch_shape, event_shape = self._categorical.batch_shape, self._categorical.param_shape[-1:]
        Distribution.__init__(self, batch_shape, event_shape, validate_args=False)
