"""Build everything a run needs from its config, every value checked before any work starts.

build_checked: the data module (nothing read yet) and the training system around the model;
build_trainer: the Lightning Trainer with the run's loggers and callbacks.
"""

from __future__ import annotations

import lightning as L
from hydra.errors import InstantiationException
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig, OmegaConf

from vae.checkpoint import read_checkpoint, run_config
from vae.config import build_model, call_checked, instantiate_node
from vae.data import BinarizedImages
from vae.errors import CheckpointError, ConfigError, InvalidValue, require_positive_float
from vae.objectives import OBJECTIVES, build_objective
from vae.run.checkpointing import AtomicCheckpointIO
from vae.run.checks import check_optimizer, check_resume, check_run_keys, check_trainer
from vae.training import VAETraining


def build_checked(cfg: DictConfig) -> tuple[BinarizedImages, VAETraining]:
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
    tau_schedule = instantiate_node(cfg, "tau")
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
        tau_schedule=tau_schedule,
        gradient_clip_val=clip,
        evaluation_seed=cfg.seed,
        lr_schedule=instantiate_node(cfg, "lr_schedule") if cfg.get("lr_schedule") else None,
        group_optimizers={
            group: instantiate_node(cfg, f"group_optimizers.{group}")
            for group, node in (cfg.get("group_optimizers") or {}).items()
            if node is not None
        },
    )
    _check_optimizers(system, groups)
    if cfg.ckpt_path is not None:
        _check_checkpoint(cfg, datamodule, system)
    return datamodule, system


def _check_optimizers(system: VAETraining, groups: dict) -> None:
    """torch checks an optimizer's other settings (betas, eps, ...) when it is built: build each
    once, on the parameters it will train."""
    try:
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


def _check_checkpoint(cfg: DictConfig, datamodule: BinarizedImages, system: VAETraining) -> None:
    """The checkpoint to resume: readable, of the same model (shapes) and data, and a resume
    that does not change what the run is (vae/run/checks.py: check_resume)."""
    try:
        checkpoint = read_checkpoint(cfg.ckpt_path)
    except CheckpointError as e:
        raise ConfigError(f"ckpt_path={cfg.ckpt_path!r}: {e}") from None
    data_state = checkpoint.get(type(datamodule).__qualname__)
    if data_state is not None:
        call_checked("data", datamodule.load_state_dict, data_state)
    shapes = {f"model.{k}": v.shape for k, v in system.model.state_dict().items()}
    mismatched = [k for k, v in checkpoint["state_dict"].items() if shapes.get(k, v.shape) != v.shape]
    check_resume(cfg, run_config(checkpoint), mismatched)


def build_trainer(cfg: DictConfig, loggers: list[Logger], callbacks: list[L.Callback]) -> L.Trainer:
    """The Trainer of cfg.trainer, every checkpoint written atomically (vae/run/checkpointing.py)."""
    # The model clips gradients itself (VAETraining makes its own optimizer step) and took
    # trainer.gradient_clip_val in build_checked; Lightning refuses the setting then.
    try:
        return instantiate_node(
            cfg,
            "trainer",
            logger=loggers or False,
            callbacks=callbacks,
            gradient_clip_val=None,
            plugins=[AtomicCheckpointIO()],
        )
    except InstantiationException as e:  # Lightning's own checks (accelerator, precision, ...)
        reason = str(e.__cause__ or e).strip().splitlines()[0]
        raise ConfigError(f"trainer: {reason}") from None
