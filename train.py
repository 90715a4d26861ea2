"""Train a VAE: compose the config, check and build everything, fit, test, write metrics.json.

python train.py model=categorical
python train.py model=gaussian trainer.max_epochs=3
python train.py model=categorical model.estimator=st_gumbel tau=cosine seed=3
python train.py <same overrides> ckpt_path=runs/.../checkpoints/last.ckpt   # resume, in that run's directory
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import Logger, WandbLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from vae.checkpoint import CheckpointError, read_checkpoint, run_config
from vae.checkpointing import AtomicCheckpointIO, remove_temporary_files
from vae.checks import (
    check_optimizer,
    check_resume,
    check_run_keys,
    check_trainer,
    resolved_data_root,
    resume_changes,
)
from vae.config import ConfigError, build_model, call_checked, instantiate_node, resumed_run_dir
from vae.console import console_in, quiet_library_noise
from vae.data import BinarizedImages, DataError, TensorBatches
from vae.evaluation import importance_weighted_means
from vae.hardware import describe, drop_unusable_nvml_check
from vae.loggers import previous_wandb_run_id
from vae.model import VAE
from vae.objectives import OBJECTIVES, build_objective
from vae.run_lock import RunDirectoryBusy, hold_run_directory
from vae.selection import STATUS_FILE, Plan, plan_job, record_rung, record_status
from vae.training import DivergedError, NonFiniteLossError, VAETraining
from vae.validation import InvalidValue, require_positive_float


@dataclass
class Run:
    """A run checked and built, with nothing written yet."""

    cfg: DictConfig
    datamodule: BinarizedImages
    system: VAETraining
    trainer: L.Trainer
    loggers: list[Logger]
    output_dir: Path


def _build_checked(cfg: DictConfig) -> tuple[BinarizedImages, VAETraining]:
    """Everything that can reject a config value, built before any work starts: the data module
    (nothing read yet) and the training system around the model.

    The network blocks are built once on their own (a few milliseconds) although the model builds
    them again: only then is a bad value reported under its own key
    (network.encoder.hidden_sizes=...) rather than under model.
    """
    check_run_keys(cfg)
    check_optimizer(cfg)
    check_trainer(cfg)
    clip = cfg.trainer.get("gradient_clip_val")
    if clip is not None:  # applied by VAETraining.training_step; reported under its own key here
        call_checked("trainer", require_positive_float, "gradient_clip_val", clip)
    datamodule = instantiate_node(cfg, "data")
    temperature = instantiate_node(cfg, "tau")
    image_shape = datamodule.image_shape  # (C, H, W): the data decides the networks' input and output
    for part, size_arg in (("encoder", "out_features"), ("decoder", "in_features")):
        block = instantiate_node(cfg, f"network.{part}")
        call_checked(f"network.{part}", block, **{size_arg: 1}, image_shape=image_shape)
    model = call_checked("model", build_model, cfg.model, image_shape)
    objective_node = OmegaConf.to_container(cfg.objective, resolve=True) if cfg.get("objective") else None
    objective = call_checked("objective", build_objective, objective_node, OBJECTIVES)
    try:
        model.use_objective(objective)
    except InvalidValue as e:
        raise ConfigError(f"objective={objective.name} is not allowed here: it {e.allowed}") from None
    groups = model.parameter_groups()
    for group in cfg.get("group_optimizers") or {}:
        if group not in groups:
            have = ", ".join(groups) or "none (e.g. model.prior=learned has a prior group)"
            raise ConfigError(
                f"group_optimizers.{group} is not allowed: this model's parameter groups are: {have}"
            )
    system = call_checked(
        "model",
        VAETraining,
        model,
        optimizer=instantiate_node(cfg, "optimizer"),
        temperature=temperature,
        gradient_clip_val=clip,
        evaluation_seed=cfg.seed,
        lr_schedule=instantiate_node(cfg, "lr_schedule") if cfg.get("lr_schedule") else None,
        group_optimizers={
            group: instantiate_node(cfg, f"group_optimizers.{group}")
            for group, node in (cfg.get("group_optimizers") or {}).items()
            if node is not None
        },
    )
    try:  # torch checks the optimizer's other settings (betas, eps, ...) when it is built
        optimizer = system.optimizer_factory(system.parameters())
    except (ValueError, TypeError) as e:
        raise ConfigError(f"optimizer: {e}") from None
    for group, make in system.group_optimizer_factories.items():
        try:
            make(groups[group])
        except (ValueError, TypeError) as e:
            raise ConfigError(f"group_optimizers.{group}: {e}") from None
    if system.lr_schedule_factory is not None:
        try:
            system.lr_schedule_factory(optimizer)
        except (ValueError, TypeError) as e:
            raise ConfigError(f"lr_schedule: {e}") from None
    if cfg.ckpt_path is not None:
        try:
            checkpoint = read_checkpoint(cfg.ckpt_path)
        except CheckpointError as e:
            raise ConfigError(f"ckpt_path={cfg.ckpt_path!r}: {e}") from None
        data_state = checkpoint.get(type(datamodule).__qualname__)
        if data_state is not None:
            call_checked("data", datamodule.load_state_dict, data_state)
        shapes = {f"model.{k}": v.shape for k, v in model.state_dict().items()}
        mismatched = [k for k, v in checkpoint["state_dict"].items() if shapes.get(k, v.shape) != v.shape]
        check_resume(cfg, run_config(checkpoint), mismatched)
    return datamodule, system


def _refuse_to_overwrite(output_dir: Path, ckpt_path: str | None) -> None:
    """A run never writes into a directory that holds another run's results; resuming one of the
    directory's own checkpoints continues that run there."""
    if ckpt_path is not None and resumed_run_dir(ckpt_path) == output_dir.resolve():
        return
    taken = [name for name in ("checkpoints", "metrics.json") if _holds_results(output_dir / name)]
    if taken:
        raise ConfigError(
            f"paths.output_dir={str(output_dir)!r} already holds {' and '.join(taken)} of another"
            " run; choose a new directory (hydra.run.dir=...) to keep them intact"
        )


def _holds_results(path: Path) -> bool:
    """metrics.json, or a checkpoints folder with a checkpoint in it (a run killed before its
    first save leaves none)."""
    return path.is_file() or (path.is_dir() and any(path.glob("*.ckpt")))


def _build_trainer(cfg: DictConfig, loggers: list[Logger], callbacks: list[L.Callback]) -> L.Trainer:
    # The model clips gradients itself (VAETraining makes its own optimizer step) and took
    # trainer.gradient_clip_val above; Lightning refuses the setting then.
    try:
        return instantiate_node(
            cfg,
            "trainer",
            logger=loggers or False,
            callbacks=callbacks,
            gradient_clip_val=None,
            plugins=[AtomicCheckpointIO()],  # every checkpoint written atomically (vae/checkpointing.py)
        )
    except InstantiationException as e:  # Lightning's own checks (accelerator, precision, ...)
        reason = str(e.__cause__ or e).strip().splitlines()[0]
        raise ConfigError(f"trainer: {reason}") from None


def prepare(cfg: DictConfig) -> Run:
    """Check every setting and build every object, the data on disk; nothing is written."""
    quiet_library_noise()
    check_run_keys(cfg)  # the seed first: it is used right below
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # before the weights are drawn
    torch.set_flush_denormal(cfg.flush_denormal)  # a no-op where the CPU cannot
    drop_unusable_nvml_check()  # a cost every optimizer step on CUDA builds without a driver
    output_dir = Path(cfg.paths.output_dir)
    with open_dict(cfg):
        cfg.data.root = resolved_data_root(cfg)
        wandb_cfg = (cfg.get("logger") or {}).get("wandb")
        if wandb_cfg is not None and wandb_cfg.get("id") is None:  # a resumed run logs on to its W&B run
            wandb_cfg.id = previous_wandb_run_id(output_dir)
    if rank_zero_only.rank == 0:  # under DDP, train.py runs once per process; the first writes
        _refuse_to_overwrite(output_dir, cfg.ckpt_path)
    datamodule, system = _build_checked(cfg)
    if cfg.compile:
        system.compile_training()
    datamodule.prepare_data()  # the data on disk (or downloaded) before a run directory is written
    if system.model.wants_data_mean and cfg.ckpt_path is None:  # a resumed run has them in its weights
        system.model.adapt_to_data(datamodule.train_mean())
    checkpoint = read_checkpoint(cfg.ckpt_path) if cfg.ckpt_path is not None else None
    if checkpoint is not None:
        _continue_the_same_run(cfg, output_dir, run_config(checkpoint))
    _validate_often_enough(cfg, datamodule)
    if checkpoint is not None:
        _record_resume_changes(cfg, run_config(checkpoint), checkpoint["global_step"])
    loggers = [instantiate_node(cfg, f"logger.{name}") for name in (cfg.get("logger") or {})]
    callbacks = [instantiate_node(cfg, f"callbacks.{name}") for name in cfg.callbacks]
    trainer = _build_trainer(cfg, loggers, callbacks)
    return Run(cfg, datamodule, system, trainer, loggers, output_dir)


def _continue_the_same_run(cfg: DictConfig, output_dir: Path, before: dict[str, Any]) -> None:
    """A resumed run validates as the run it continues did (the cadence a short run was given
    included), and a finished run is not run again unless it is to train longer. before: the
    checkpoint's run config."""
    trainer_before = before.get("trainer") or {}
    with open_dict(cfg):
        if cfg.trainer.get("val_check_interval") is None and trainer_before.get("val_check_interval"):
            cfg.trainer.val_check_interval = trainer_before["val_check_interval"]
            cfg.trainer.check_val_every_n_epoch = trainer_before.get("check_val_every_n_epoch")
    longer = any(cfg.trainer.get(k) != trainer_before.get(k) for k in ("max_steps", "max_epochs"))
    in_place = resumed_run_dir(cfg.ckpt_path) == output_dir.resolve()
    if in_place and (output_dir / "metrics.json").is_file() and not longer:
        raise ConfigError(
            f"ckpt_path={cfg.ckpt_path!r}: this run finished (its metrics.json is written): there is"
            " nothing to resume; raise trainer.max_steps to train it further, or use python -m"
            " vae.evaluate to evaluate it again"
        )


def _record_resume_changes(cfg: DictConfig, before: dict[str, Any], step: int) -> None:
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


VALIDATIONS_PER_SHORT_RUN = 10


def _validate_often_enough(cfg: DictConfig, datamodule: BinarizedImages) -> None:
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


def _importance_weighted_test(model: VAE, datamodule: BinarizedImages, k: int, seed: int) -> dict[str, float]:
    """test/nll_iw with k samples (and the k-sample -ELBO beside it), as vae.evaluate computes it."""
    model.eval()
    device = next(model.parameters()).device
    images = datamodule.test_images.to(device)  # (N_test, C, H, W), fixed binarization
    generator = torch.Generator(device).manual_seed(seed)
    results = importance_weighted_means(model, TensorBatches(images, 100), k, generator=generator)
    return {
        "test/nll_iw": results["test/nll_iw"],
        "test/neg_elbo_k": results["test/neg_elbo"],
        "iw_samples": k,
    }


def _validation_cadence(cfg: DictConfig, best: str | None) -> str:
    """How the reported checkpoint was chosen, in words, for metrics.json and the report."""
    if best is None:
        return "none: final weights"
    interval = cfg.trainer.get("val_check_interval")
    if isinstance(interval, int):
        return f"best of validations every {interval} steps"
    every = cfg.trainer.get("check_val_every_n_epoch") or 1
    return "best of validations each epoch" if every == 1 else f"best of validations every {every} epochs"


def _hardware(trainer: L.Trainer) -> str:
    """What the run trained on, for the tables that quote its numbers."""
    devices = f"{trainer.num_devices} x " if trainer.num_devices > 1 else ""
    return devices + describe(cuda=isinstance(trainer.accelerator, CUDAAccelerator))


def fit_and_test(run: Run) -> dict[str, Any]:
    """Fit, then evaluate the best checkpoint; returns (and writes) the final metrics."""
    cfg, datamodule, system, trainer, loggers, output_dir = (
        run.cfg, run.datamodule, run.system, run.trainer, run.loggers, run.output_dir,
    )  # fmt: skip
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if rank_zero_only.rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_temporary_files(output_dir / "checkpoints")  # of saves a kill interrupted
        print(f"Run directory: {output_dir.resolve()}", flush=True)
        OmegaConf.save(resolved, output_dir / "config.yaml")
    system.run_config = resolved  # in every checkpoint: the tools rebuild model and data from it
    try:
        for logger in loggers:
            logger.log_hyperparams(resolved)
        trainer.fit(system, datamodule=datamodule, ckpt_path=cfg.ckpt_path)
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
        best = best or None  # fast_dev_run saves nothing: evaluate the weights in memory
        metrics: dict[str, Any] = {}
        metrics.update(trainer.validate(system, datamodule=datamodule, ckpt_path=best)[0])
        if cfg.test:
            metrics.update(trainer.test(system, datamodule=datamodule, ckpt_path=best)[0])
            if cfg.iw_samples and trainer.is_global_zero:  # trainer.test left the best weights in system
                try:
                    bounds = _importance_weighted_test(system.model, datamodule, cfg.iw_samples, cfg.seed)
                except KeyboardInterrupt:  # keep the numbers already computed; the bound is one command
                    metrics.update(checkpoint=best, iw_samples_interrupted=cfg.iw_samples)
                    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
                    print(
                        f"Interrupted during the k={cfg.iw_samples} bound: metrics.json holds the rest;"
                        f" python -m vae.evaluate ckpt_path={best} k={cfg.iw_samples} computes it",
                        file=sys.stderr,
                    )
                    raise
                metrics.update(bounds)
                for logger in loggers:
                    logger.log_metrics(bounds, step=system.weights_step)
        metrics.update(
            checkpoint=best,
            global_step=system.weights_step,
            last_step=trainer.global_step,
            validation=_validation_cadence(cfg, best),
            epochs=trainer.current_epoch,
            tau=system.tau,
            objective=system.model.objective.name,
            num_samples=system.model.objective.num_samples,  # samples of z per image
            estimator=system.model.estimator_name,
            decoder_passes=system.model.decoder_passes,
            seed=cfg.seed,
            hardware=_hardware(trainer),
        )
        if cfg.get("changes_on_resume"):
            metrics["changes_on_resume"] = OmegaConf.to_container(cfg.changes_on_resume)
        if trainer.is_global_zero:
            (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    finally:
        for logger in loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.finish()
    if trainer.is_global_zero:
        print(f"Run directory: {output_dir.resolve()}", flush=True)
    return metrics


def train(cfg: DictConfig) -> dict[str, Any]:
    """prepare, then fit_and_test: what `python train.py` runs, for code that has a composed config."""
    run = prepare(cfg)
    with _holding(run):
        return fit_and_test(run)


def _holding(run: Run):
    """The run directory's lock (vae/run_lock.py), taken by the first process under DDP; then the
    directory is checked again, in case another run finished there since prepare() looked."""
    if rank_zero_only.rank != 0:
        return contextlib.nullcontext()
    lock = hold_run_directory(run.output_dir)

    @contextlib.contextmanager
    def held():
        with lock:
            _refuse_to_overwrite(run.output_dir, run.cfg.ckpt_path)
            yield

    return held()


EXPECTED_FAILURES = (ConfigError, DataError, NonFiniteLossError, DivergedError)


def _write_hydra_record(output_dir: Path, task_cfg: dict[str, Any]) -> None:
    """.hydra/ in the run directory (the composed config, Hydra's config, the overrides), written
    here rather than by Hydra (hydra.output_subdir: null) so that a directory a run is refused
    is left exactly as it was."""
    hydra_cfg = HydraConfig.get()
    folder = output_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(task_cfg, folder / "config.yaml")
    OmegaConf.save(OmegaConf.create({"hydra": hydra_cfg}), folder / "hydra.yaml")
    OmegaConf.save(hydra_cfg.overrides.task, folder / "overrides.yaml")


def _record_failure(output_dir: Path, error: BaseException) -> None:
    """failed.json in the job's directory, so a sweep's report can show what went wrong."""
    output_dir.mkdir(parents=True, exist_ok=True)
    record = {
        "error": type(error).__name__,
        "message": str(error),
        "traceback": "".join(traceback.format_exception(error)),
    }
    (output_dir / "failed.json").write_text(json.dumps(record, indent=2) + "\n")


def _share_the_machine(cfg: DictConfig, job_num: int, parallel_jobs: int) -> None:
    """A job of a parallel sweep takes its share: cores // jobs threads on a CPU, GPU number
    job_num mod GPUs on a machine with GPUs; and no progress bar (its console is a file)."""
    with open_dict(cfg):
        if torch.cuda.is_available() and cfg.trainer.get("devices") == 1:
            cfg.trainer.devices = [job_num % torch.cuda.device_count()]
        else:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // parallel_jobs))
        if "progress_bar" in (cfg.get("callbacks") or {}):
            cfg.callbacks.progress_bar.refresh_rate = 0  # one line per validation instead


def _continue_sweep_job(cfg: DictConfig, output_dir: Path, overrides: list[str]) -> Plan:
    """What a sweep job does when its sweep runs (again) on its directory.

    A job that reached the steps it is to train (trainer.max_steps, or the rung that selection
    allows it: vae/selection.py) is not run again; one that was stopped resumes from its own
    last.ckpt, and one that is allowed further than it got continues from it; one that failed is
    run again (from its last.ckpt if it has one), its failed.json kept as failed-<n>.json. A
    job that is to train to an intermediate rung is not tested.
    """
    selection = OmegaConf.to_container(cfg.selection) if cfg.get("selection") else {}
    plan = plan_job(output_dir, overrides, selection, cfg.trainer.get("max_steps") or -1)
    metrics = output_dir / "metrics.json"
    if plan.action == "run" and metrics.is_file():
        finished = json.loads(metrics.read_text())
        if plan.steps is None or plan.steps <= 0 or finished.get("last_step", 0) >= plan.steps:
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
    with open_dict(cfg):
        if last.is_file() and cfg.ckpt_path is None:
            cfg.ckpt_path = str(last)
        if plan.steps is not None and plan.steps > 0:
            cfg.trainer.max_steps = plan.steps
        if not plan.final:  # an intermediate rung: validation numbers only
            cfg.test, cfg.iw_samples = False, 0
    return plan


def _job(cfg: DictConfig, sweeping: bool) -> dict[str, Any] | None:
    """prepare and fit_and_test one run; in a sweep, a failure is recorded and the sweep goes on."""
    hydra_cfg = HydraConfig.get()
    output_dir = Path(cfg.paths.output_dir)
    task_cfg = OmegaConf.to_container(cfg)  # as composed, before prepare() fills in anything
    if sweeping and rank_zero_only.rank == 0:
        plan = _continue_sweep_job(cfg, output_dir, list(hydra_cfg.overrides.task))
        if plan.action != "run":
            print(f"job {hydra_cfg.job.num}: not run ({plan.action}): {plan.reason}", flush=True)
            if plan.reason and not plan.reason.startswith("finished"):
                record_status(output_dir, plan)
            return None
    try:
        run = prepare(cfg)
        with _holding(run):
            if rank_zero_only.rank == 0:
                _write_hydra_record(output_dir, task_cfg)
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
            _write_hydra_record(output_dir, task_cfg)
            _record_failure(output_dir, e)
            print(f"error: job {hydra_cfg.job.num} failed: {type(e).__name__}: {e}", file=sys.stderr)
            return None
        if isinstance(e, OSError) and e.filename:  # a full disk, a read-only folder: say which file
            print(
                f"error: could not write {e.filename}: {e.strerror or e}; the checkpoints written before"
                " are intact (each is written whole or not at all): make room or choose a writable"
                " hydra.run.dir, then resume from the run's checkpoints/last.ckpt",
                file=sys.stderr,
            )
            sys.exit(1)
        if isinstance(e, EXPECTED_FAILURES):  # one clear message on stderr, not a traceback
            if output_dir.is_dir() and not any(output_dir.iterdir()):
                output_dir.rmdir()  # the run directory Hydra made for a run that never started
            print(f"error: {e}", file=sys.stderr)
            sys.exit(1)
        raise


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
def main(cfg: DictConfig) -> None:
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
    _share_the_machine(cfg, hydra_cfg.job.num, n_jobs)
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


def _refuse_numbers_for_groups(args: list[str]) -> None:
    """`tau=0`: a config group given a value that is not one of its options; Hydra stops with a
    traceback that does not name the group. Say it in one line, with the options on disk."""
    configs = Path(__file__).resolve().parent / "configs"
    for arg in args:
        key, sep, value = arg.partition("=")
        group = configs / key
        skip = arg.startswith(("-", "+", "~", "hydra")) or "," in value  # Hydra's groups have built-ins
        if skip or not sep or not group.is_dir():
            continue
        options = sorted(p.stem for p in group.glob("*.yaml"))
        if value not in options and value != "null":
            print(
                f"error: {key}={value} is not allowed: {key} is a config group, one of"
                f" {', '.join(options)} (its settings: {key}.<name>=...)",
                file=sys.stderr,
            )
            sys.exit(1)


if __name__ == "__main__":
    _refuse_numbers_for_groups(sys.argv[1:])
    main()
