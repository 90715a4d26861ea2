"""The tools speak train.py's language: data.root=, the checkpoint's own data by default, help that
lists what the tool accepts; and the README's notebook snippet runs as pasted."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import write_torchvision_dataset

import vae
import vae.run
from conftest import REPO, child_env, compose_config
from vae.tools.evaluate import evaluation_path

TOOLS = ("vae.evaluate", "vae.sample", "vae.diagnose")


def _tool(module: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )


@pytest.fixture(scope="module")
def fashion_run(tmp_path_factory):
    """A short run on Fashion-MNIST IDX files in torchvision's layout (FashionMNIST/raw/)."""
    tmp_path = tmp_path_factory.mktemp("fashion")
    write_torchvision_dataset(tmp_path / "data", "FashionMNIST", num_train=300, num_test=100)
    overrides = [
        f"data.root={tmp_path / 'data'}",
        "data.val_size=50",
        "logger=none",
        "trainer.max_epochs=2",
    ]
    metrics = vae.run.train(compose_config(overrides, tmp_path / "run", data=["data=fashion_mnist"]))
    return tmp_path, Path(metrics["checkpoint"]), metrics


def test_a_fashion_mnist_checkpoint_evaluates_from_the_checkpoint_alone(fashion_run):
    tmp_path, ckpt, metrics = fashion_run
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    result = _tool("vae.evaluate", f"ckpt_path={ckpt}", "k=5", "device=cpu", cwd=elsewhere)
    assert result.returncode == 0, result.stderr
    evaluated = json.loads(evaluation_path(ckpt, 5).read_text())
    assert evaluated["num_images"] == 100  # the FashionMNIST test file's images, not MNIST's
    # The same test images as training's final test: the KL involves no sampling.
    assert evaluated["test/kl"] == pytest.approx(metrics["test/kl"], rel=1e-4)
    data = vae.load_data(ckpt)
    assert data.dataset == "FashionMNIST" and data.test_images.shape == (100, 1, 28, 28)


def test_the_tools_take_data_root_as_train_py_does(fashion_run):
    tmp_path, ckpt, metrics = fashion_run
    moved = tmp_path / "moved"
    shutil.copytree(tmp_path / "data", moved)
    for module, extra in (
        ("vae.evaluate", ["k=3", f"output={tmp_path / 'moved.json'}"]),
        ("vae.sample", ["wandb=false"]),
    ):
        result = _tool(module, f"ckpt_path={ckpt}", f"data.root={moved}", "device=cpu", *extra, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "moved.json").read_text())["test/kl"] == pytest.approx(
        metrics["test/kl"], rel=1e-4
    )
    # A folder without the data: one message naming it and the key that fixes it.
    result = _tool("vae.evaluate", f"ckpt_path={ckpt}", f"data.root={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in result.stderr and "data.root=" in result.stderr
    )
    assert not (tmp_path / "nowhere").exists()


@pytest.mark.parametrize("key", ["data.root", "+data.root"])
def test_data_root_reaches_the_tool_however_hydra_is_given_it(fashion_run, key):
    tmp_path, ckpt, _ = fashion_run
    result = _tool("vae.evaluate", f"ckpt_path={ckpt}", f"{key}={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert result.returncode == 1 and str(tmp_path / "nowhere" / "FashionMNIST" / "raw") in result.stderr


@pytest.mark.parametrize("module", TOOLS)
def test_the_old_key_name_is_refused(module, tmp_path):
    result = _tool(module, "ckpt_path=x.ckpt", "data_root=data", cwd=tmp_path)
    assert result.returncode != 0 and "Key 'data_root' is not in struct" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("module", TOOLS)
def test_help_lists_the_keys_the_tool_takes_and_not_train_py_groups(module, tmp_path):
    result = _tool(module, "--help", cwd=tmp_path)
    assert result.returncode == 0
    assert f"python -m {module}" in result.stdout and "data:" in result.stdout and "root:" in result.stdout
    assert "experiment:" not in result.stdout and "logger:" not in result.stdout
    assert "callbacks" not in result.stdout
    if module == "vae.diagnose":  # the options of the groups it builds a fresh model from, from disk
        from vae.config import group_options

        assert f"model= ({', '.join(group_options('model'))})" in result.stdout
        assert "bernoulli" in group_options("model")


def test_diagnose_prints_its_table_with_a_header(tmp_path):
    result = _tool(
        "vae.diagnose", "data=synthetic", "num_images=5", "num_draws=4", "chunk=4", "taus=[1.0]",
        "estimators=[gumbel_softmax,reinforce_loo]", f"output_dir={tmp_path / 'out'}", cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    header = lines.index(
        "| estimator | τ | passes | cosine | bias | rel_error | noise_floor | variance | rel_variance |"
    )
    assert lines[header + 2].startswith("| gumbel_softmax | 1 | 1 |")
    assert lines[header + 3].startswith("| reinforce_loo | – | 4 |")  # its 4 samples: 4 decoder passes


def test_the_readme_notebook_snippet_runs_as_pasted(categorical_ckpt, capsys):
    readme = (REPO / "README.md").read_text()
    section = readme[readme.index("## A trained model in a notebook") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    path = re.search(r'"(runs/[^"]+\.ckpt)"', snippet).group(1)
    exec(compile(snippet.replace(path, str(categorical_ckpt)), "README.md", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.strip(), "the snippet prints what it computed"
    model = vae.load(categorical_ckpt)
    assert isinstance(model, torch.nn.Module) and not hasattr(model, "trainer")  # no Lightning in sight


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_asking_for_cuda_on_a_machine_without_it_is_one_line():
    from vae.errors import ConfigError
    from vae.tools.common import pick_device

    with pytest.raises(ConfigError, match="device='cuda' is not allowed: this machine has no CUDA device"):
        pick_device("cuda")


def test_the_bench_validates_every_epoch_it_times_whatever_the_experiment_says(tmp_path):
    # The bench times an epoch with its validation (its EpochClock pairs each epoch's start with
    # its validation's): an experiment validating every 10 epochs gave a negative training part.
    import argparse

    from vae.tools.bench import _config

    args = argparse.Namespace(
        model="bernoulli", batch_size=24, data_root=str(tmp_path), epochs=2, device="cpu",
        compile=False, seed=0, train_batches=4, precision="bf16-mixed",
    )  # fmt: skip
    cfg = _config(args, tmp_path / "run", ["experiment=relax_linear", "+relax_table=linear_nvil"])
    assert cfg.trainer.check_val_every_n_epoch == 1 and cfg.data.batch_size == 24
    assert cfg.trainer.precision == "bf16-mixed"  # the case's training precision (--precisions)
    assert cfg.group_optimizers.control_variate  # the case the bare loop now steps as the project does
