"""What `python train.py` does with the config Hydra composed: one run, or one job of a sweep
(-m), with the expected failures reported in one line and, in a sweep, recorded for the report
while the other jobs go on."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from vae.errors import EXPECTED_FAILURES, RunDirectoryBusy
from vae.run.console import console_in
from vae.run.directory import holding, record_failure, remove_unused_run_directory, write_hydra_record
from vae.run.fit import fit_and_test, prepare
from vae.run.lock import hold_run_directory
from vae.run.selection import record_rung, record_status
from vae.run.sweep import continue_sweep_job, share_the_machine, stop_when_the_sweep_dies


def run_job(cfg: DictConfig) -> None:
    """The run (or sweep job) of cfg, inside Hydra's @hydra.main (HydraConfig is set)."""
    hydra_cfg = HydraConfig.get()
    sweeping = hydra_cfg.mode == RunMode.MULTIRUN
    wandb_cfg = (cfg.get("logger") or {}).get("wandb")
    if sweeping and wandb_cfg is not None and wandb_cfg.get("group") is None:
        with open_dict(cfg):  # one W&B group per sweep, named after the sweep directory
            wandb_cfg.group = Path(hydra_cfg.sweep.dir).name
    n_jobs = hydra_cfg.launcher.get("n_jobs") if sweeping else None
    n_jobs = (os.cpu_count() or 1) if n_jobs == -1 else (n_jobs or 1)
    if n_jobs == 1:
        _job(cfg, sweeping)
        return
    # A job of a parallel sweep: its console in its directory, one line on the sweep's console.
    share_the_machine(cfg, hydra_cfg.job.num, n_jobs)
    stop_when_the_sweep_dies()
    output_dir = Path(cfg.paths.output_dir)
    name = f"[job {hydra_cfg.job.num}] {' '.join(hydra_cfg.overrides.task)}"
    started = time.perf_counter()
    with console_in(output_dir / "console.log") as say:
        say(f"{name}: started ({output_dir / 'console.log'})")
        metrics = _job(cfg, sweeping)
        took = f"{time.perf_counter() - started:.0f} s"
        if metrics is None and (output_dir / "failed.json").is_file():
            failure = json.loads((output_dir / "failed.json").read_text())
            say(f"{name}: failed after {took}: {failure['error']}: {failure['message']}")
        elif metrics is None:
            say(f"{name}: not run")
        else:
            shown = ", ".join(
                f"{k}={metrics[k]:.2f}" for k in ("val/neg_elbo", "test/neg_elbo") if k in metrics
            )
            say(f"{name}: done in {took}: {shown}")


def _job(cfg: DictConfig, sweeping: bool) -> dict[str, Any] | None:
    """prepare and fit_and_test one run; in a sweep, a failure is recorded and the sweep goes on."""
    hydra_cfg = HydraConfig.get()
    output_dir = Path(cfg.paths.output_dir)
    task_cfg = OmegaConf.to_container(cfg)  # as composed, before prepare() fills in anything
    if sweeping and rank_zero_only.rank == 0:
        try:
            # Under the job's lock: a job another process runs now (the same sweep command started
            # twice on one directory: the copies share the jobs) is neither planned nor touched.
            with hold_run_directory(output_dir):
                plan = continue_sweep_job(cfg, output_dir, list(hydra_cfg.overrides.task))
                if plan.action != "run" and plan.reason and not plan.reason.startswith("finished"):
                    record_status(output_dir, plan)
        except RunDirectoryBusy as e:
            print(f"job {hydra_cfg.job.num}: not run (running elsewhere): {e}", flush=True)
            return None
        if plan.action != "run":
            print(f"job {hydra_cfg.job.num}: not run ({plan.action}): {plan.reason}", flush=True)
            return None
    try:
        run = prepare(cfg)
        with holding(output_dir, cfg.ckpt_path):
            if rank_zero_only.rank == 0:
                write_hydra_record(output_dir, task_cfg)
            metrics = fit_and_test(run)
            if sweeping and rank_zero_only.rank == 0:
                record_rung(output_dir, metrics)  # the validation numbers selection compares
        return metrics
    except RunDirectoryBusy as e:  # the other process's job: nothing recorded in its directory
        print(f"error: {e}", file=sys.stderr)
        if sweeping:
            return None
        sys.exit(1)
    except Exception as e:
        if sweeping:  # record the failure and let the other jobs of the sweep run
            write_hydra_record(output_dir, task_cfg)
            record_failure(output_dir, e)
            print(f"error: job {hydra_cfg.job.num} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return None
        _exit_with_one_line(e, output_dir)
        raise


def _exit_with_one_line(error: Exception, output_dir: Path) -> None:
    """An expected failure (a bad value, missing data, divergence, a disk that is full or
    read-only) as one line on stderr and exit code 1; any other error is left to raise."""
    if isinstance(error, OSError) and error.filename:  # a full disk, a read-only folder: say which file
        print(
            f"error: could not write {error.filename}: {error.strerror or error}; the checkpoints written"
            " before are intact (each is written whole or not at all): make room or choose a writable"
            " hydra.run.dir, then resume from the run's checkpoints/last.ckpt",
            file=sys.stderr,
        )
        sys.exit(1)
    if isinstance(error, EXPECTED_FAILURES):
        remove_unused_run_directory(output_dir)  # the folders Hydra made for a run that never started
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
