"""Resuming a run from one of its checkpoints: the same run, continued as it was validated, its
allowed changes recorded (the refusals themselves: vae/run/checks.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from vae.config import resumed_run_dir
from vae.errors import ConfigError
from vae.run.checks import resume_changes


def continue_the_same_run(cfg: DictConfig, output_dir: Path, before: dict[str, Any], step: int) -> None:
    """A resumed run validates as the run it continues did (the cadence a short run was given
    included), and a finished run is not run again unless it is to train longer. before: the
    checkpoint's run config; step: its global step. A run is finished when its metrics.json is
    of this checkpoint's step or later: one stopped after training and before its metrics.json
    (a kill during the final test) has only an earlier one (a sweep's earlier rung), and goes on
    to its test."""
    trainer_before = before.get("trainer") or {}
    with open_dict(cfg):
        if cfg.trainer.get("val_check_interval") is None and trainer_before.get("val_check_interval"):
            cfg.trainer.val_check_interval = trainer_before["val_check_interval"]
            cfg.trainer.check_val_every_n_epoch = trainer_before.get("check_val_every_n_epoch")
    longer = any(cfg.trainer.get(k) != trainer_before.get(k) for k in ("max_steps", "max_epochs"))
    in_place = resumed_run_dir(cfg.ckpt_path) == output_dir.resolve()
    metrics = output_dir / "metrics.json"
    finished = metrics.is_file() and json.loads(metrics.read_text()).get("last_step", step) >= step
    if in_place and finished and not longer:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r}: this run finished (its metrics.json is written): there is"
            " nothing to resume; raise trainer.max_steps to train it further, or use python -m"
            " vae.evaluate to evaluate it again"
        )


def record_resume_changes(cfg: DictConfig, before: dict[str, Any], step: int) -> None:
    """Refuse a resume that changes what the run is; record the changes it may make (longer,
    tested otherwise, logged elsewhere) in changes_on_resume, which config.yaml, every checkpoint
    and metrics.json carry."""
    now = OmegaConf.to_container(cfg, resolve=True)
    changes = resume_changes(now, before, cfg.ckpt_path)
    history = list(before.get("changes_on_resume") or [])
    meaningful = {
        k: v for k, v in changes.items() if k.split(".")[0] not in ("ckpt_path", "paths", "changes_on_resume")
    }
    if meaningful:
        history.append({"step": step, "changes": meaningful})
        print(f"Resumed at step {step} with {', '.join(f'{k}={v[1]!r}' for k, v in meaningful.items())}")
    with open_dict(cfg):
        cfg.changes_on_resume = history
