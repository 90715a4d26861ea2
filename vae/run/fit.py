"""A run from its composed config: prepare (check and build everything, write nothing), then
fit_and_test (train, evaluate the best checkpoint, write metrics.json); train does both."""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.accelerators import CUDAAccelerator
from lightning.pytorch.callbacks import ModelCheckpoint, Timer
from lightning.pytorch.loggers import Logger
from lightning.pytorch.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from vae import compat
from vae.checkpoint import read_checkpoint, run_config
from vae.config import instantiate_node
from vae.data import BinarizedImages, TensorBatches
from vae.evaluation import latent_health, test_set_bounds
from vae.run.build import build_checked, build_trainer
from vae.run.cadence import validate_often_enough, validation_cadence
from vae.run.checkpointing import remove_temporary_files
from vae.run.checks import check_run_keys, resolved_data_root
from vae.run.console import quiet_library_noise
from vae.run.directory import holding, refuse_to_overwrite
from vae.run.hardware import describe, drop_unusable_nvml_check
from vae.run.loggers import previous_wandb_run_id
from vae.run.resume import continue_the_same_run, record_resume_changes
from vae.training import VAETraining


@dataclass
class Run:
    """A run checked and built, with nothing written yet."""

    cfg: DictConfig
    datamodule: BinarizedImages
    system: VAETraining
    trainer: L.Trainer
    loggers: list[Logger]
    output_dir: Path
    untimed_steps: int = 0  # resumed from a checkpoint that predates the Timer: its steps' time is unknown


def train(cfg: DictConfig) -> dict[str, Any]:
    """prepare, then fit_and_test: what `python train.py` runs, for code that has a composed
    config (vae.config.compose_train_config)."""
    run = prepare(cfg)
    with holding(run.output_dir, cfg.ckpt_path):
        return fit_and_test(run)


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
        refuse_to_overwrite(output_dir, cfg.ckpt_path)
    datamodule, system = build_checked(cfg)
    if cfg.compile:
        system.compile_training()
    datamodule.prepare_data()  # the data on disk (or downloaded) before a run directory is written
    if system.model.wants_data_mean and cfg.ckpt_path is None:  # a resumed run has them in its weights
        system.model.adapt_to_data(datamodule.train_mean())
    checkpoint = read_checkpoint(cfg.ckpt_path) if cfg.ckpt_path is not None else None
    if checkpoint is not None:
        continue_the_same_run(cfg, output_dir, run_config(checkpoint), checkpoint["global_step"])
    validate_often_enough(cfg, datamodule)
    if checkpoint is not None:
        record_resume_changes(cfg, run_config(checkpoint), checkpoint["global_step"])
    loggers = [instantiate_node(cfg, f"logger.{name}") for name in (cfg.get("logger") or {})]
    callbacks = [instantiate_node(cfg, f"callbacks.{name}") for name in cfg.callbacks]
    trainer = build_trainer(cfg, loggers, callbacks)
    timed = checkpoint is None or any(key.startswith("Timer") for key in checkpoint.get("callbacks") or {})
    untimed_steps = 0 if timed else int(checkpoint["global_step"])
    return Run(cfg, datamodule, system, trainer, loggers, output_dir, untimed_steps)


def fit_and_test(run: Run) -> dict[str, Any]:
    """Fit, then evaluate the best checkpoint; returns (and writes) the final metrics."""
    cfg, system, trainer, output_dir = run.cfg, run.system, run.trainer, run.output_dir
    resolved = OmegaConf.to_container(cfg, resolve=True)
    if rank_zero_only.rank == 0:
        output_dir.mkdir(parents=True, exist_ok=True)
        remove_temporary_files(output_dir / "checkpoints")  # of saves a kill interrupted
        print(f"Run directory: {output_dir.resolve()}", flush=True)
        OmegaConf.save(resolved, output_dir / "config.yaml")
    system.run_config = resolved  # in every checkpoint: the tools rebuild model and data from it
    try:
        for logger in run.loggers:
            logger.log_hyperparams(resolved)
        trainer.fit(system, datamodule=run.datamodule, ckpt_path=cfg.ckpt_path)
        train_seconds = _train_seconds(trainer)  # now: evaluating the best checkpoint restores its Timer
        metrics = _final_numbers(run)
        if train_seconds is not None:  # all the training's steps and validations, over every resume
            metrics["train_seconds"] = train_seconds
            if run.untimed_steps:  # ...but for the steps of a checkpoint written before runs kept the time
                metrics["train_seconds_untimed_steps"] = run.untimed_steps
        if trainer.is_global_zero:
            (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    finally:
        for logger in run.loggers:
            compat.finish_wandb_run(logger)
    if trainer.is_global_zero:
        print(f"Run directory: {output_dir.resolve()}", flush=True)
    return metrics


def _train_seconds(trainer: L.Trainer) -> float | None:
    """The Timer callback's training time (its steps and validations, plus what the checkpoint it
    resumed from had recorded); None without a Timer."""
    timers = [c for c in trainer.callbacks if isinstance(c, Timer)]
    return round(timers[0].time_elapsed("train"), 1) if timers else None


def _final_numbers(run: Run) -> dict[str, Any]:
    """Validation and test numbers of the best checkpoint (the k-sample bound as vae.evaluate
    computes it), and what a table needs to say how they were made."""
    cfg, datamodule, system, trainer = run.cfg, run.datamodule, run.system, run.trainer
    started = time.perf_counter()
    checkpoint = trainer.checkpoint_callback
    best = checkpoint.best_model_path if isinstance(checkpoint, ModelCheckpoint) else ""
    best = best or None  # fast_dev_run saves nothing: evaluate the weights in memory
    metrics: dict[str, Any] = {}
    metrics.update(trainer.validate(system, datamodule=datamodule, ckpt_path=best)[0])
    if cfg.test:
        metrics.update(trainer.test(system, datamodule=datamodule, ckpt_path=best)[0])
        if cfg.iw_samples and trainer.is_global_zero:  # trainer.test left the best weights in system
            metrics.update(_importance_weighted_test(run, best, metrics))
        if trainer.is_global_zero:
            metrics.update(_latent_health(run))
    metrics.update(
        checkpoint=best,
        global_step=system.weights_step,
        last_step=trainer.global_step,
        validation=validation_cadence(cfg, best),
        epochs=trainer.current_epoch,
        tau=system.tau,
        objective=system.model.objective.name,
        num_samples=system.model.objective.num_samples,  # samples of z per image
        estimator=system.model.estimator_name,
        decoder_passes=system.model.decoder_passes,
        seed=cfg.seed,
        hardware=_hardware(trainer),
        evaluation_seconds=round(time.perf_counter() - started, 1),  # this final validation and test
    )
    if cfg.get("changes_on_resume"):
        metrics["changes_on_resume"] = OmegaConf.to_container(cfg.changes_on_resume)
    return metrics


def _importance_weighted_test(run: Run, best: str | None, metrics: dict[str, Any]) -> dict[str, Any]:
    """test/nll_iw with k = cfg.iw_samples samples and the k-sample -ELBO beside it. Interrupted
    (Ctrl-C), the numbers already computed are written before the interrupt goes on."""
    cfg, model = run.cfg, run.system.model
    images = run.datamodule.test_images.to(next(model.parameters()).device)  # fixed binarization
    try:
        results = test_set_bounds(model, images, cfg.iw_samples, cfg.seed)
    except KeyboardInterrupt:  # keep the numbers already computed; the bound is one command
        metrics.update(checkpoint=best, iw_samples_interrupted=cfg.iw_samples)
        (run.output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        print(
            f"Interrupted during the k={cfg.iw_samples} bound: metrics.json holds the rest;"
            f" python -m vae.evaluate ckpt_path={best} k={cfg.iw_samples} computes it",
            file=sys.stderr,
        )
        raise
    bounds = {
        "test/nll_iw": results["test/nll_iw"],
        "test/neg_elbo_k": results["test/neg_elbo"],
        "iw_samples": cfg.iw_samples,
    }
    for logger in run.loggers:
        logger.log_metrics(bounds, step=run.system.weights_step)
    return bounds


def _latent_health(run: Run) -> dict[str, Any]:
    """Whether the best weights use their latent, on the test images, as vae.evaluate reports it
    (Latent.health: active bits, units or variables): its numbers, not its per-coordinate lists."""
    model = run.system.model
    images = run.datamodule.test_images.to(next(model.parameters()).device)
    health = latent_health(model, TensorBatches(images, run.cfg.data.eval_batch_size))
    return {name: value for name, value in health.items() if isinstance(value, int | float)}


def _hardware(trainer: L.Trainer) -> str:
    """What the run trained on, for the tables that quote its numbers."""
    devices = f"{trainer.num_devices} x " if trainer.num_devices > 1 else ""
    return devices + describe(cuda=isinstance(trainer.accelerator, CUDAAccelerator))
