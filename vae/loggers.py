"""Weights & Biases that never prompts and never needs the network.

mode="auto" (the default) logs online when credentials are present (WANDB_API_KEY, ~/.netrc
from `wandb login`), and offline otherwise; a WANDB_MODE set in the environment wins. Offline
runs are written under the run directory and can be uploaded later with `wandb sync`.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from vae.validation import require

MODES = ("auto", "online", "offline", "disabled")


def resolve_wandb_mode(mode: str = "auto") -> str:
    require(mode in MODES, "mode", mode, f"one of {MODES}")
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    import wandb

    # prompt=False, verify=False: look for a key locally, never ask, never touch the network.
    return "online" if wandb.login(prompt=False, verify=False) else "offline"


def wandb_logger(mode: str = "auto", **kwargs: Any) -> WandbLogger:
    """A Lightning WandbLogger in the resolved mode; kwargs go to WandbLogger / wandb.init."""
    if os.environ.get("WANDB_MODE") == "":
        # Exported but empty (`export WANDB_MODE=`): unset, as resolve_wandb_mode reads it;
        # wandb would otherwise read "" from the environment and refuse it as a mode.
        del os.environ["WANDB_MODE"]
    # mode goes straight to wandb.init: Lightning's offline=True sets WANDB_MODE=dryrun for the
    # whole process, a value recent wandb ignores (it then asks for a key).
    logger = WandbLogger(mode=resolve_wandb_mode(mode), **kwargs)
    # Lightning passes anonymous=None to wandb.init, which wandb answers with a warning that the
    # setting has no effect; leaving it out is the same call without the warning.
    if logger._wandb_init.get("anonymous", "set") is None:
        del logger._wandb_init["anonymous"]
    return logger
