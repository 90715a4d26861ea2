"""What the checkpoint tools (vae.evaluate, vae.sample) share: checks, loading, one error exit."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig
from torch import Tensor

from vae.checkpoint import (
    CheckpointError,
    datamodule_from_checkpoint,
    model_from_checkpoint,
    read_checkpoint,
)
from vae.config import ConfigError
from vae.data import DataNotFoundError
from vae.module import VAE

T = TypeVar("T")
DEVICES = "auto, cpu, cuda, cuda:N"


def require_positive_ints(cfg: DictConfig, keys: Iterable[str]) -> None:
    for key in keys:
        value = cfg[key]
        if not (isinstance(value, int) and not isinstance(value, bool) and value > 0):
            raise ConfigError(f"{key}={value!r} is not allowed: must be a positive integer")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not str(name).startswith("cuda:"):
        raise ConfigError(f"device={name!r} is not allowed: one of {DEVICES}")
    return torch.device(name)


def load_model_and_test_set(cfg: DictConfig) -> tuple[VAE, Tensor]:
    """The checkpoint's model and the official test set binarized as in its training, on cfg.device."""
    device = pick_device(cfg.device)
    checkpoint = read_checkpoint(cfg.ckpt_path, map_location="cpu")
    model = model_from_checkpoint(checkpoint, cfg.ckpt_path).to(device)
    datamodule = datamodule_from_checkpoint(checkpoint, cfg.data_root)
    datamodule.setup()
    return model, datamodule.test_images.to(device)  # (10k, 1, 28, 28)


def run_or_exit(tool: Callable[[DictConfig], T], cfg: DictConfig) -> T | Any:
    """Run a tool; a bad input is one line on stderr and exit code 1, with nothing written."""
    try:
        return tool(cfg)
    except (ConfigError, CheckpointError, DataNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
