"""A trained model, and the data it was trained on, from a checkpoint alone.

Every checkpoint of train.py carries the run's resolved config (plain dicts, so `torch.load` with
`weights_only=True` accepts it) under the key "vae_config": the model, its tau schedule and its
data. `load` rebuilds the plain VAE with its weights, step and tau; `load_data` rebuilds the data
exactly as in training (same split, same fixed binarization).

    model = vae.load("runs/categorical/<date>_<time>/checkpoints/last.ckpt")
    data = vae.load_data("runs/categorical/<date>_<time>/checkpoints/last.ckpt")
    x = data.test_images[:16]      # (16, 1, 28, 28), binarized as in training
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from vae.config import build, build_model
from vae.errors import CheckpointError

CONFIG_KEY = "vae_config"  # where a checkpoint holds the run's config


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load a checkpoint of this project, with one clear error for each way it can fail."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: an empty file, not a checkpoint")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: {_unreadable(e)}") from None
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint or "state_dict" not in checkpoint:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no '{CONFIG_KEY}' key)")
    return upgrade_checkpoint(checkpoint)


def _unreadable(error: Exception) -> str:
    """Why torch.load refused a file, in a line (torch's own messages run to a page)."""
    message = str(error)
    if "Unsupported global" in message:
        return (
            "holds Python objects besides tensors and plain data, as no checkpoint of this project"
            " does (torch.load(weights_only=True) refuses to run them): not a checkpoint of this project"
        )
    if "PytorchStreamReader" in message or "inline_container" in message:
        return "a damaged PyTorch checkpoint archive (truncated or corrupt); use another checkpoint"
    return "not a readable checkpoint (truncated, corrupt, or another kind of file)"


def run_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The resolved config of the run that wrote the checkpoint."""
    return checkpoint[CONFIG_KEY]


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path = "checkpoint"):
    """The plain VAE a checkpoint dict describes, with its weights, step and tau, in eval mode."""
    config = run_config(checkpoint)
    try:
        image_shape = build(config["data"]).image_shape
        model = build_model(config["model"], image_shape, config.get("objective"))
        weights = {k.removeprefix("model."): v for k, v in checkpoint["state_dict"].items()}
        model.load_state_dict(weights)
        schedule = build(config["tau"]) if config.get("tau") and model.uses_temperature else None
    except Exception as e:  # an unknown _target_, a foreign class, mismatched weights
        raise CheckpointError(f"{path}: does not hold a model of this project: {e}") from None
    model.step = checkpoint["global_step"]
    model.tau = None if schedule is None else schedule(model.step)
    return model.eval()


def load(path: str | Path, map_location: str | torch.device = "cpu"):
    """A trained VAE (vae.model.VAE), in eval mode, from a checkpoint:
    `model = vae.load("runs/.../last.ckpt")`; model.step and model.tau say where training was."""
    return model_from_checkpoint(read_checkpoint(path, map_location), path)


def data_from_checkpoint(checkpoint: dict[str, Any], root: str | Path | None = None):
    """The data module the checkpoint was trained on (same split, same fixed binarization), not
    yet set up; root: where its files are, if not where they were in training."""
    data_config = run_config(checkpoint)["data"]
    return build(data_config, **({} if root is None else {"root": str(root)}))


def load_data(path: str | Path, root: str | Path | None = None):
    """The data a checkpoint was trained on, read and binarized exactly as in training: a data
    module with .train_images, .val_images and .test_images, (N, C, H, W) each.

    root: the folder holding the dataset, if not the one used in training (data.root=).
    """
    datamodule = data_from_checkpoint(read_checkpoint(path), root)
    datamodule.setup()
    return datamodule


def run_dir_of(checkpoint_path: str | Path) -> Path:
    """The run directory of runs/<model>/<date>/checkpoints/x.ckpt, else the checkpoint's folder."""
    folder = Path(checkpoint_path).resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder


# Checkpoints of earlier versions ---------------------------------------------------------

_OLD_LATENTS = {
    "vae.module.categorical_vae": "vae.latents.CategoricalLatent",
    "vae.module.gaussian_vae": "vae.latents.GaussianLatent",
}


def upgrade_checkpoint(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring a checkpoint of an earlier version up to date, in place."""
    _upgrade_before_the_model_system_split(checkpoint)
    config = checkpoint.get(CONFIG_KEY)
    if isinstance(config, dict) and "prior_optimizer" in config:
        # Before group_optimizers, a learned prior's optimizer had a key of its own.
        prior = config.pop("prior_optimizer")
        if prior is not None:
            config["group_optimizers"] = {"prior": prior, **(config.get("group_optimizers") or {})}
    if isinstance(config, dict):
        _follow_moved_modules(config)
    return checkpoint


# Run-layer modules that moved into vae/run/: a run config written before names the old ones.
_MOVED_MODULES = {f"vae.{name}.": f"vae.run.{name}." for name in ("callbacks", "loggers", "checkpointing")}


def _follow_moved_modules(node: Any) -> None:
    """Rename the _target_s of moved modules in a run config, in place, so that resuming an older
    run does not record a module's move as a change of its settings."""
    if isinstance(node, dict):
        target = node.get("_target_")
        for old, new in _MOVED_MODULES.items():
            if isinstance(target, str) and target.startswith(old):
                node["_target_"] = new + target.removeprefix(old)
        for value in node.values():
            _follow_moved_modules(value)


def _upgrade_before_the_model_system_split(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """Bring a checkpoint written before the model/system split up to date, in place.

    Those held only the model's config under CONFIG_KEY (latent settings, networks, optimizer, tau
    schedule), the MNIST split under "MNISTDataModule", and the weights without the "model."
    prefix of the training system. The result loads, evaluates and resumes as a new one.
    """
    old = checkpoint.get(CONFIG_KEY)
    if not (isinstance(old, dict) and old.get("_target_") in _OLD_LATENTS):
        return checkpoint
    old = dict(old)
    latent = _OLD_LATENTS[old.pop("_target_")]
    tau, optimizer = old.pop("temperature", None), old.pop("optimizer", None)
    clip = old.pop("gradient_clip_val", None)
    if isinstance(old.get("estimator"), dict):
        old["estimator"] = _estimator_node(old["estimator"])
    data_state = checkpoint.pop("MNISTDataModule", {})
    data = {"_target_": "vae.data.TorchvisionImages", "dataset": "MNIST", "root": "data", **data_state}
    checkpoint[CONFIG_KEY] = {
        "model": {"_target_": "vae.model.build_vae", "latent": latent, **old},
        "tau": tau,
        "optimizer": optimizer,
        "data": data,
        "trainer": {"gradient_clip_val": clip},
    }
    checkpoint["TorchvisionImages"] = {"dataset": "MNIST", **data_state}
    checkpoint["state_dict"] = {
        key if key.startswith("model.") else f"model.{key}": value
        for key, value in checkpoint["state_dict"].items()
    }
    return checkpoint


def _estimator_node(node: dict[str, Any]) -> dict[str, Any]:
    """{_target_: vae.estimators.GumbelRao, num_draws: 10} -> {name: gumbel_rao, num_draws: 10}."""
    from vae.latents import CategoricalLatent

    settings = dict(node)
    class_name = settings.pop("_target_").rsplit(".", 1)[-1]
    (name,) = [n for n, cls in CategoricalLatent.estimators.items() if cls.__name__ == class_name]
    return {"name": name, **settings}
