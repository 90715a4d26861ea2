"""What the checkpoint tools (vae.evaluate, vae.sample, vae.diagnose) share: checks, loading,
one error exit."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import torch
from omegaconf import DictConfig
from torch import Tensor

from vae.checkpoint import data_from_checkpoint, model_from_checkpoint, read_checkpoint
from vae.errors import CheckpointError, ConfigError, DataError, is_int
from vae.model import VAE

T = TypeVar("T")
DEVICES = "auto, cpu, cuda, cuda:N"


def require_positive_ints(cfg: DictConfig, keys: Iterable[str]) -> None:
    for key in keys:
        value = cfg[key]
        if not (is_int(value) and value > 0):
            raise ConfigError(f"{key}={value!r} is not allowed: must be a positive integer")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not str(name).startswith("cuda:"):
        raise ConfigError(f"device={name!r} is not allowed: one of {DEVICES}")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device={name!r} is not allowed: this machine has no CUDA device; use device=cpu or auto"
        )
    return torch.device(name)


def load_model_and_test_set(cfg: DictConfig) -> tuple[VAE, Tensor]:
    """The checkpoint's model and the test images of the data it was trained on, binarized as in
    training, on cfg.device; cfg.data.root, if set, is where the data's files are now."""
    device = pick_device(cfg.device)
    checkpoint = read_checkpoint(cfg.ckpt_path, map_location="cpu")
    model = model_from_checkpoint(checkpoint, cfg.ckpt_path).to(device)
    datamodule = data_from_checkpoint(checkpoint, cfg.data.root)
    datamodule.setup()
    return model, datamodule.test_images.to(device)  # (N_test, C, H, W)


def run_or_exit(tool: Callable[[DictConfig], T], cfg: DictConfig) -> T | Any:
    """Run a tool; a bad input is one line on stderr and exit code 1, with nothing written."""
    try:
        return tool(cfg)
    except (ConfigError, CheckpointError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
