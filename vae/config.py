"""Turning config nodes into objects, with bad values reported by their config key.

Constructors check their own arguments and raise vae.errors.InvalidValue naming the
argument; here each config group is instantiated on its own so the error can name the full
key: ``tau.tau_min=2.0 is not allowed: must be < tau0 (1.0)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import hydra
from hydra.errors import InstantiationException
from omegaconf import DictConfig, OmegaConf, open_dict

from vae import compat
from vae.errors import ConfigError, InvalidValue

T = TypeVar("T")
CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"


def group_options(group: str) -> list[str]:
    """The options of a config group (configs/<group>/*.yaml, e.g. model: bernoulli, categorical,
    gaussian): the one list every check, help text and test reads."""
    return sorted(path.stem for path in (CONFIG_DIR / group).glob("*.yaml"))


def is_config_group(key: str) -> bool:
    return (CONFIG_DIR / key).is_dir()


def resumed_run_dir(ckpt_path: str | Path | None) -> Path | None:
    """The run directory a checkpoint belongs to (<run>/checkpoints/x.ckpt, the run's config.yaml
    beside checkpoints/), or None for a checkpoint outside any run directory."""
    if not ckpt_path:
        return None
    path = Path(ckpt_path).expanduser().resolve()
    run = path.parent.parent
    return run if path.parent.name == "checkpoints" and (run / "config.yaml").is_file() else None


def _run_dir(ckpt_path: str | None, new_run_dir: str) -> str:
    """hydra.run.dir: a resumed run continues in its own directory; any other run gets a new one."""
    resumed = resumed_run_dir(ckpt_path)
    return new_run_dir if resumed is None else str(resumed)


def parallel_jobs() -> int:
    """Jobs a sweep runs at once by default: one per GPU on a machine with GPUs, else one per core."""
    import os

    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else (os.cpu_count() or 1)


OmegaConf.register_new_resolver("run_dir", _run_dir, replace=True)
OmegaConf.register_new_resolver("parallel_jobs", parallel_jobs, replace=True)
# ${times:10,${optimizer.lr}} -> 10 times the model's rate: a rate that follows another one.
OmegaConf.register_new_resolver("times", lambda factor, value: float(factor) * float(value), replace=True)
# ${group_options:model} -> "bernoulli, categorical, gaussian": help texts list the options on disk.
OmegaConf.register_new_resolver("group_options", lambda group: ", ".join(group_options(group)), replace=True)


@contextmanager
def reported_as(key: str) -> Iterator[None]:
    """Re-raise an InvalidValue from inside the block as a ConfigError under config key `key`."""
    try:
        yield
    except InstantiationException as e:
        cause = e.__cause__
        if not isinstance(cause, InvalidValue):
            raise
        node = compat.hydra_failing_key(e) or key
        node = node if node.startswith(key) else f"{key}.{node}"
        raise ConfigError(f"{node}.{cause.name}={cause.value!r} is not allowed: {cause.allowed}") from None
    except InvalidValue as cause:
        raise ConfigError(f"{key}.{cause.name}={cause.value!r} is not allowed: {cause.allowed}") from None


def compose_train_config(overrides: list[str], output_dir: str | Path) -> DictConfig:
    """configs/train.yaml with `overrides`, as train.py's @hydra.main hands it to train(cfg).

    For code that calls train(cfg) itself (tests, vae.bench): Hydra's run-time config is set so
    the ${hydra:...} interpolations resolve, then removed, and the run writes to output_dir.
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    with initialize_config_dir(str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)
    with open_dict(cfg):
        cfg.paths.output_dir = str(output_dir)
        del cfg["hydra"]
    return cfg


def instantiate_node(cfg: DictConfig, key: str, **kwargs: Any) -> Any:
    """hydra.utils.instantiate(cfg.<key>) with bad values reported under `key`."""
    node = OmegaConf.select(cfg, key)
    with reported_as(key):
        return hydra.utils.instantiate(node, _convert_="all", **kwargs)


def call_checked(key: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """fn(*args, **kwargs) with bad values reported under `key`."""
    with reported_as(key):
        return fn(*args, **kwargs)


def build(node: DictConfig | dict[str, Any], **kwargs: Any) -> Any:
    """hydra.utils.instantiate of a config node (a DictConfig or the plain dict a checkpoint holds),
    kwargs overriding its keys; for data and tau nodes nothing is read or drawn."""
    if isinstance(node, DictConfig):
        node = OmegaConf.to_container(node, resolve=True)
    return hydra.utils.instantiate({**node, **kwargs}, _convert_="all")


def build_model(
    model_config: DictConfig | dict[str, Any],
    image_shape: tuple[int, ...],
    objective: DictConfig | dict[str, Any] | None = None,
) -> Any:
    """The VAE (vae.model.VAE) a model config node describes, for images of image_shape (C, H, W),
    trained with the objective node (configs/objective/; None: the ELBO)."""
    if isinstance(objective, DictConfig):
        objective = OmegaConf.to_container(objective, resolve=True)
    return build(model_config, image_shape=list(image_shape), objective=objective)
