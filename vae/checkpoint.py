"""Build a VAE from its config, and load a trained one from a checkpoint in one line.

The checkpoint carries the resolved model config (plain dicts, so `torch.load` with
`weights_only=True` accepts it) under the key "vae_config"; `load` rebuilds the model from
it and restores the weights and the step count (hence tau).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from vae.data import MNISTDataModule
from vae.module import CONFIG_KEY, VAE


class CheckpointError(ValueError):
    """A checkpoint that is missing, unreadable, or not one of this project's."""


def build_model(model_config: DictConfig | dict[str, Any]) -> VAE:
    """Instantiate the model node of a config and remember it for the checkpoint."""
    if isinstance(model_config, DictConfig):
        model_config = OmegaConf.to_container(model_config, resolve=True)
    model = hydra.utils.instantiate(model_config, _convert_="all")
    if not isinstance(model, VAE):
        raise TypeError(f"model config builds {type(model).__name__}, not a vae.module.VAE")
    model.vae_config = model_config
    return model


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """torch.load a checkpoint of this project, with one clear error for each way it can fail."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise CheckpointError(f"{path}: not a readable checkpoint (truncated or corrupt?): {e}") from None
    if not isinstance(checkpoint, dict) or CONFIG_KEY not in checkpoint:
        raise CheckpointError(f"{path}: not a checkpoint of this project (no '{CONFIG_KEY}' key)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict[str, Any], path: str | Path = "checkpoint") -> VAE:
    """The VAE a checkpoint dict describes, with its weights and step count, in eval mode."""
    try:
        model = build_model(checkpoint[CONFIG_KEY])
        model.load_state_dict(checkpoint["state_dict"])
    except Exception as e:  # an unknown _target_, a foreign class, mismatched weights
        raise CheckpointError(f"{path}: does not hold a model of this project: {e}") from None
    model.on_load_checkpoint(checkpoint)
    return model.eval()


def load(path: str | Path, map_location: str | torch.device = "cpu") -> VAE:
    """A trained VAE, in eval mode, from a checkpoint: `model = vae.load("runs/.../last.ckpt")`."""
    return model_from_checkpoint(read_checkpoint(path, map_location), path)


def datamodule_from_checkpoint(checkpoint: dict[str, Any], root: str | Path) -> MNISTDataModule:
    """The data the checkpoint was trained on (same split, same fixed binarization)."""
    return MNISTDataModule(root=str(root), **checkpoint.get(MNISTDataModule.__qualname__, {}))


def run_dir_of(checkpoint_path: str | Path) -> Path:
    """The run directory of runs/<model>/<date>/checkpoints/x.ckpt, else the checkpoint's folder."""
    folder = Path(checkpoint_path).resolve().parent
    return folder.parent if folder.name == "checkpoints" else folder
