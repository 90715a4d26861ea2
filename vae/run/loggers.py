"""The loggers: Weights & Biases that never prompts and never needs the network, and a CSV log
that a resumed run appends to.

mode="auto" (the default) logs online when credentials are present (WANDB_API_KEY, ~/.netrc
from `wandb login`), and offline otherwise; a WANDB_MODE set in the environment wins. Offline
runs are written under the run directory and can be uploaded later with `wandb sync`.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, WandbLogger

from vae import compat
from vae.errors import require

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
    compat.drop_unset_wandb_init_argument(logger, "anonymous")
    return logger


def previous_wandb_run_id(run_dir: Path) -> str | None:
    """The id of the W&B run logged in run_dir (wandb/[offline-]run-<time>-<id>/), or None."""
    runs = sorted((run_dir / "wandb").glob("*run-*-*"), key=lambda p: p.name.split("run-", 1)[1])
    return runs[-1].name.rsplit("-", 1)[1] if runs else None


class AppendingCSVLogger(CSVLogger):
    """Lightning's CSVLogger, except that a run resumed in its own directory appends to the
    metrics.csv it finds, keeping its rows and columns (Lightning's writer deletes the file)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._writer_made = False  # ours: whether the existing metrics.csv was taken over

    @property
    def experiment(self):  # noqa: ANN201 (Lightning's ExperimentWriter)
        if self._writer_made:
            return super().experiment
        existing = Path(self.log_dir) / "metrics.csv"
        kept = existing.read_bytes() if existing.is_file() else None
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*exists and is not empty")
            writer = super().experiment
        self._writer_made = True
        if kept is not None:
            existing.write_bytes(kept)
            with open(existing, newline="") as f:
                writer.metrics_keys = list(csv.DictReader(f).fieldnames or [])
        return writer
