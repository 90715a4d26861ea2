"""Shared fixtures: train.yaml composed with test-safe overrides, on synthetic data (the fast tier)
or on the real MNIST (the slow tier)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import DictConfig

from vae.config import compose_train_config

# Under pytest-xdist (pyproject.toml: one worker per core) the workers share the machine: each, and
# every train.py or tool process it starts, takes cores // workers threads rather than all cores.
WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
THREADS = str(max(1, (os.cpu_count() or 1) // WORKERS))
if WORKERS > 1:
    import torch

    torch.set_num_threads(int(THREADS))
    os.environ["OMP_NUM_THREADS"] = THREADS  # read by torch in every process a test starts

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "configs"
# The fast tier trains on data=synthetic (generated in memory): it passes with no dataset anywhere.
SYNTHETIC = ["data=synthetic"]


def _has_mnist(root: Path) -> bool:
    return (root / "MNIST" / "raw" / "train-images-idx3-ubyte").exists()


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """Where the real MNIST is, for the slow tier: $MNIST_ROOT, the repo's data/, or
    ../shared/data beside the repo.

    With none of them, data/ is returned and the data module downloads into it (or fails
    with its message naming the folder and the data.root= override).
    """
    candidates = [os.environ.get("MNIST_ROOT"), REPO / "data", REPO.parent / "shared" / "data"]
    for candidate in candidates:
        if candidate and _has_mnist(Path(candidate)):
            return Path(candidate)
    return REPO / "data"


@pytest.fixture(autouse=True)
def _wandb_offline(monkeypatch):
    """Tests never reach W&B's servers, whatever the machine's login."""
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")


def child_env(**extra: str) -> dict[str, str]:
    """The environment for a train.py or tool subprocess: this one's, without the address of the W&B
    service that in-process tests may have started (a child would share its runs), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    return {**env, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline", **extra}


def compose_config(overrides: list[str], output_dir: Path, data: list[str] = SYNTHETIC) -> DictConfig:
    """train.yaml with `overrides` after `data`, writing to output_dir."""
    return compose_train_config([*data, "callbacks.progress_bar.refresh_rate=0", *overrides], output_dir)


@pytest.fixture
def make_config(tmp_path):
    """make_config(overrides, name="run") -> composed config on synthetic data, writing to tmp_path/name."""

    def make(overrides: list[str], name: str = "run") -> DictConfig:
        return compose_config(overrides, tmp_path / name)

    return make


@pytest.fixture
def make_mnist_config(tmp_path, mnist_root):
    """As make_config, on the real MNIST (slow tests)."""

    def make(overrides: list[str], name: str = "run") -> DictConfig:
        return compose_config(overrides, tmp_path / name, data=["data=mnist", f"data.root={mnist_root}"])

    return make


@pytest.fixture(scope="session")
def train_checkpoint(tmp_path_factory):
    """train_checkpoint(name, overrides, steps=300) -> best checkpoint of a short run on synthetic data.

    Runs are cached per name for the session, so test files share them.
    """
    import vae.run

    cache: dict[str, Path] = {}

    def make(name: str, overrides: list[str], steps: int = 300) -> Path:
        if name not in cache:
            run = tmp_path_factory.mktemp(name) / "run"
            base = ["logger=none", "test=false", f"trainer.max_steps={steps}", "trainer.max_epochs=-1"]
            metrics = vae.run.train(compose_config([*base, *overrides], run))
            cache[name] = Path(metrics["checkpoint"])
        return cache[name]

    return make


@pytest.fixture(scope="session")
def categorical_ckpt(train_checkpoint):
    """The default 20 x 10 categorical model after 300 steps on synthetic data."""
    return train_checkpoint("categorical", [])


@pytest.fixture(scope="session")
def test_images():
    """The synthetic test set, binarized as its data module does by default, (500, 1, 28, 28)."""
    from vae.data import SyntheticImages

    datamodule = SyntheticImages()
    datamodule.setup()
    return datamodule.test_images


def tool_config(name: str, ckpt: Path, **overrides) -> DictConfig:
    """configs/<name>.yaml (evaluate or sample) as the tool's main receives it."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(CONFIGS / f"{name}.yaml")
    del cfg["defaults"], cfg["hydra"]
    cfg.ckpt_path = str(ckpt)
    cfg.update(overrides)
    return cfg
