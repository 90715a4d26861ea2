"""A job of a Hydra sweep (python train.py -m ...): its share of the machine, and what it does
when its sweep runs again on its directory (skip, resume, continue to a further rung, retry);
and the check that a sweep directory is run again only by a command that launches the same jobs."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf, open_dict

from vae.run.checks import may_change_on_resume
from vae.run.selection import (
    STATUS_FILE,
    Plan,
    launched_jobs,
    override_key,
    override_value,
    plan_job,
    record_rung,
)


def share_the_machine(cfg: DictConfig, job_num: int, parallel_jobs: int) -> None:
    """A job of a parallel sweep takes its share: cores // jobs threads on a CPU, GPU number
    job_num mod GPUs on a machine with GPUs; and no progress bar (its console is a file)."""
    with open_dict(cfg):
        if torch.cuda.is_available() and cfg.trainer.get("devices") == 1:
            cfg.trainer.devices = [job_num % torch.cuda.device_count()]
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // parallel_jobs))
        if "progress_bar" in (cfg.get("callbacks") or {}):
            cfg.callbacks.progress_bar.refresh_rate = 0  # one line per validation instead


_watched_parent: int | None = None  # the sweep's process this worker watches (one watcher per worker)


def stop_when_the_sweep_dies(grace_s: float = 120.0) -> None:
    """A job of a parallel sweep runs in a worker process of the sweep's (joblib's loky, started
    by the sweep's own process). A SIGKILL of the sweep gives it no chance to stop its workers:
    they would train on, unseen, and finish jobs nobody collects. So a worker watches its parent;
    once the parent is gone (the worker is adopted by another process) it interrupts its job as
    Ctrl-C does (Lightning's graceful stop), then exits after grace_s if the job has not. The
    job's last.ckpt is what the next run of the sweep resumes. Call from the worker's main thread."""
    global _watched_parent
    if _watched_parent is not None:
        return
    _watched_parent = os.getppid()
    signal.signal(signal.SIGINT, signal.default_int_handler)  # the KeyboardInterrupt Lightning handles
    main = threading.main_thread().ident

    def watch() -> None:
        while os.getppid() == _watched_parent:
            time.sleep(1.0)
        print(f"the sweep's process {_watched_parent} is gone: stopping this job", flush=True)
        signal.pthread_kill(main, signal.SIGINT)  # to the main thread, so that a sleep or a wait wakes
        time.sleep(grace_s)
        os._exit(1)

    threading.Thread(target=watch, name="watch-the-sweep", daemon=True).start()


def continue_sweep_job(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> Plan:
    """What a sweep job does when its sweep runs (again) on its directory.

    A job that reached the steps it is to train (trainer.max_steps, or the rung that selection
    allows it: vae/run/selection.py), or its trainer.max_epochs where no steps bound it, is not
    run again; one that was stopped resumes from its own
    last.ckpt, and one that is allowed further than it got continues from it (from step 0 if its
    checkpoints are gone, its metrics.json kept as metrics-at-<step>.json); one that failed is
    run again (from its last.ckpt if it has one), its failed.json kept as failed-<n>.json. A
    job that is to train to an intermediate rung is not tested.
    """
    selection = OmegaConf.to_container(cfg.selection) if cfg.get("selection") else {}
    plan = plan_job(output_dir, overrides, selection, cfg.trainer.get("max_steps") or -1)
    metrics = output_dir / "metrics.json"
    if plan.action == "run" and metrics.is_file():
        finished = json.loads(metrics.read_text())
        if _trained_as_far(finished, plan.steps, cfg.trainer.get("max_epochs")):
            return Plan("done", reason=f"finished before ({metrics})")
        record_rung(output_dir, finished)  # its numbers at this rung outlive the metrics.json it rewrites
    if plan.action != "run":
        return plan
    (output_dir / STATUS_FILE).unlink(missing_ok=True)  # it waited before, and runs now
    failed = output_dir / "failed.json"
    if failed.is_file():
        attempt = 1 + len(list(output_dir.glob("failed-*.json")))
        failed.rename(output_dir / f"failed-{attempt}.json")
    last = output_dir / "checkpoints" / "last.ckpt"
    if metrics.is_file() and not last.is_file():
        # Records without their checkpoints (a search kept or copied without them, README: Jang et
        # al. Table 1): the run trains again from step 0. Its earlier metrics.json is kept beside
        # (its validation numbers are in rungs.json), not overwritten.
        step = json.loads(metrics.read_text()).get("last_step", "unknown")
        metrics.rename(output_dir / f"metrics-at-{step}.json")
    with open_dict(cfg):
        if last.is_file() and cfg.ckpt_path is None:
            cfg.ckpt_path = str(last)
        if plan.steps is not None and plan.steps > 0:
            cfg.trainer.max_steps = plan.steps
        if not plan.final:  # an intermediate rung: validation numbers only
            cfg.test, cfg.iw_samples = False, 0
    return plan


def _trained_as_far(finished: dict[str, Any], steps: int | None, max_epochs: int | None) -> bool:
    """Whether a finished run (its metrics.json) trained as far as its job is now to: to `steps`
    where the job is bounded by steps, else to max_epochs (a sweep run again with a longer
    trainer.max_epochs continues its jobs). A record without its epochs (older) counts as far."""
    if steps is not None and steps > 0:
        return finished.get("last_step", 0) >= steps
    if max_epochs is None or max_epochs < 0 or "epochs" not in finished:
        return True
    return finished["epochs"] >= max_epochs


class RefuseAnotherSweepsDirectory(Callback):
    """A Hydra callback (configs/hydra/default.yaml). A sweep directory's job folders are numbered
    by the jobs its command launches, and a sweep run again on it continues job N in folder N. A
    command that launches other jobs would take another run's folder for its own job N: resume a
    checkpoint of other settings, or take another run's metrics.json for its own and skip the
    job. So a sweep whose job N differs from the run recorded in folder N (its .hydra/overrides.yaml)
    is one line and exit status 1, before Hydra writes anything there. The jobs may differ in what
    a resumed run may change (RESUME_MAY_CHANGE: the length, the final test, logging, callbacks,
    where files go and where the choice on validation is read), so a sweep can be run on longer."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        hydra = OmegaConf.to_container(config.hydra, resolve=False)
        if hydra["sweep"]["subdir"] != "${hydra.job.num}":  # folders named otherwise: not checked
            return
        HydraConfig.instance().set_config(config)  # the folder's name may read ${hydra:...}
        sweep_dir = Path(str(config.hydra.sweep.dir))
        try:
            jobs = launched_jobs(hydra)
        except Exception:  # a sweep Hydra's BasicSweeper refuses (interval()): Hydra says why
            return
        for num, job in enumerate(jobs):
            recorded = sweep_dir / str(num) / ".hydra" / "overrides.yaml"
            if not recorded.is_file():
                continue
            before = [str(o) for o in OmegaConf.load(recorded)]
            if _identity(before) != _identity(job):
                print(
                    f"error: hydra.sweep.dir={str(sweep_dir)!r} holds the runs of another sweep: its job"
                    f" {num} ran `{' '.join(before)}`, where this command's job {num} is"
                    f" `{' '.join(job)}`; run the command that made it to continue that sweep, or"
                    " choose a new hydra.sweep.dir",
                    file=sys.stderr,
                )
                sys.exit(1)


def _identity(overrides: list[str]) -> dict[str, str]:
    """What makes a job the run it is: its overrides less those a resumed run may change."""
    kept = (o for o in overrides if not may_change_on_resume(override_key(o)))
    return {override_key(o): override_value(o) for o in kept}
