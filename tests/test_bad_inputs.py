"""Every bad input is refused before any work: one message naming the key or the path and what is
allowed, no traceback, nothing written (vae.run.prepare builds and checks everything, writes nothing)."""

import argparse
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from datasets import write_torchvision_dataset

import vae.run
from conftest import REPO, child_env, compose_config
from vae.errors import ConfigError, DataError

# (overrides, the start of the message)
BAD_VALUES = [
    ("optimizer.lr=-1", "optimizer.lr=-1 is not allowed: must be a finite number > 0"),
    ("optimizer.lr=0", "optimizer.lr=0 is not allowed: must be a finite number > 0"),
    ("optimizer.lr=nan", "optimizer.lr=nan is not allowed: must be a finite number > 0"),
    ("optimizer.lr=1e-3x", "optimizer.lr='1e-3x' is not allowed: must be a finite number > 0"),
    ("+optimizer.betas=[0.9,1.5]", "optimizer: Invalid beta parameter at index 1: 1.5"),
    ("optimizer=radam +optimizer.weight_decay=-1", "optimizer: Invalid weight_decay value: -1"),
    ("seed=abc", "seed='abc' is not allowed: must be an integer in [0, 4294967295]"),
    ("seed=-1", "seed=-1 is not allowed: must be an integer in [0, 4294967295]"),
    ("seed=1.5", "seed=1.5 is not allowed"),
    ("trainer.max_epochs=two", "trainer.max_epochs='two' is not allowed: must be an integer >= 0, or -1"),
    ("trainer.max_epochs=-5", "trainer.max_epochs=-5 is not allowed: must be an integer >= 0, or -1"),
    ("trainer.max_steps=-2", "trainer.max_steps=-2 is not allowed"),
    ("trainer.log_every_n_steps=0", "trainer.log_every_n_steps=0 is not allowed: must be an integer > 0"),
    ("trainer.check_val_every_n_epoch=0.5", "trainer.check_val_every_n_epoch=0.5 is not allowed"),
    ("trainer.limit_train_batches=1.5", "trainer.limit_train_batches=1.5 is not allowed: must be a fraction"),
    ("trainer.precision=64-bogus", "trainer: Precision '64-bogus' is invalid"),
    ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 is not allowed: must be a finite"),
    ("test=maybe", "test='maybe' is not allowed: must be true or false"),
    ("compile=1", "compile=1 is not allowed: must be true or false"),
    ("flush_denormal=yes", "flush_denormal='yes' is not allowed: must be true or false"),
    ("iw_samples=-3", "iw_samples=-3 is not allowed: must be an integer >= 0"),
    ("iw_samples=ten", "iw_samples='ten' is not allowed"),
    ("ckpt_path=123", "ckpt_path=123 is not allowed: must be the path of a checkpoint file"),
    ("model.num_variables=0", "model.num_variables=0 is not allowed"),
    (
        "model/estimator=reinforce_loo model.estimator.num_samples=1",
        "model.estimator.num_samples=1 is not allowed",
    ),
    ("model/estimator=gumbel_rao model.estimator.num_draws=0", "model.estimator.num_draws=0 is not allowed"),
    ("data.batch_size=0", "data.batch_size=0 is not allowed"),
    ("tau.tau_min=2.0", "tau.tau_min=2.0 is not allowed: must be < tau0"),
    (
        "trainer.val_check_interval=1000",
        "trainer.val_check_interval=1000 is not allowed: an epoch has 18 training batches",
    ),
]
if torch.cuda.is_available():  # the accelerator check needs a machine without a GPU
    BAD_VALUES = [b for b in BAD_VALUES if "accelerator" not in b[0]]
else:
    BAD_VALUES.append(("trainer.accelerator=gpu", "trainer: "))


@pytest.mark.parametrize("overrides, message", BAD_VALUES, ids=[b[0] for b in BAD_VALUES])
def test_a_bad_value_is_one_message_before_any_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError) as error:
        vae.run.prepare(compose_config(overrides.split(), tmp_path / "run"))
    assert str(error.value).startswith(message), str(error.value)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    run = tmp_path_factory.mktemp("small") / "run"
    metrics = vae.run.train(
        compose_config(["logger=none", "trainer.max_epochs=1", "model.num_variables=4"], run)
    )
    return Path(metrics["checkpoint"])


def _bad_checkpoints(folder: Path, good: Path) -> dict[str, tuple[Path, str]]:
    (folder / "empty.ckpt").write_bytes(b"")
    (folder / "text.ckpt").write_text("these are my notes\n")
    (folder / "truncated.ckpt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    torch.save({"options": argparse.Namespace(lr=1)}, folder / "pickled.ckpt")
    torch.save({"state_dict": {"w": torch.zeros(2)}, "epoch": 3}, folder / "foreign.ckpt")
    return {
        "missing": (folder / "missing.ckpt", "no such checkpoint file"),
        "empty": (folder / "empty.ckpt", "an empty file, not a checkpoint"),
        "text": (folder / "text.ckpt", "not a readable checkpoint (truncated, corrupt, or another kind"),
        "truncated": (folder / "truncated.ckpt", "a damaged PyTorch checkpoint archive"),
        "pickled": (folder / "pickled.ckpt", "holds Python objects besides tensors and plain data"),
        "foreign": (folder / "foreign.ckpt", "not a checkpoint of this project (no 'vae_config' key)"),
    }


def test_bad_checkpoints_to_resume_are_named(tmp_path, small_checkpoint):
    for path, reason in _bad_checkpoints(tmp_path, small_checkpoint).values():
        with pytest.raises(ConfigError) as error:
            vae.run.prepare(compose_config([f"ckpt_path={path}"], tmp_path / "run"))
        assert (
            str(error.value)
            == f"ckpt_path={str(path)!r}: {path}: " + str(error.value).split(f"{path}: ", 2)[-1]
        )
        assert reason in str(error.value) and "\n" not in str(error.value)
        assert not (tmp_path / "run").exists()


def test_resuming_another_model_size_names_the_settings_that_differ(tmp_path, small_checkpoint):
    overrides = [
        f"ckpt_path={small_checkpoint}",
        "model.num_variables=5",
        "network.encoder.hidden_sizes=[512,128]",
    ]
    with pytest.raises(ConfigError) as error:
        vae.run.prepare(compose_config(overrides, tmp_path / "run"))
    message = str(error.value)
    assert "the checkpoint holds another model than this run builds" in message
    assert "model.num_variables=5 (the checkpoint has 4)" in message
    assert "network.encoder.hidden_sizes=[512, 128] (the checkpoint has [512, 256])" in message
    # Settings that leave the weights' shapes alone are refused too: the run would be another run.
    with pytest.raises(ConfigError, match="model.estimator='st_gumbel'"):
        vae.run.prepare(
            compose_config(
                [f"ckpt_path={small_checkpoint}", "model.num_variables=4", "model.estimator=st_gumbel"],
                tmp_path / "ok",
            )
        )


def test_truncated_data_files_are_named_before_any_work(tmp_path):
    raw = write_torchvision_dataset(tmp_path / "data", "MNIST")
    (raw / "train-labels-idx1-ubyte").write_bytes((raw / "train-labels-idx1-ubyte").read_bytes()[:100])
    with pytest.raises(DataError, match="train-labels-idx1-ubyte: 100 bytes where its header promises 308"):
        vae.run.prepare(
            compose_config(
                [f"data.root={tmp_path / 'data'}", "data.val_size=50"], tmp_path / "run", data=["data=mnist"]
            )
        )
    assert not (tmp_path / "run").exists()


CLI_CASES = [
    ("optimizer.lr=1e-3x", "optimizer.lr='1e-3x' is not allowed"),
    ("trainer.max_epochs=-5", "trainer.max_epochs=-5 is not allowed"),
    ("seed=abc", "seed='abc' is not allowed"),
    ("ckpt_path=notes.ckpt", "ckpt_path='notes.ckpt': notes.ckpt: not a readable checkpoint"),
]


@pytest.mark.parametrize("override, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_the_cli_prints_one_line_and_writes_nothing(tmp_path, override, message):
    (tmp_path / "notes.ckpt").write_text("not a checkpoint\n")
    run = tmp_path / "run"
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "data=synthetic", override, f"hydra.run.dir={run}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
        env=child_env(),
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: {message}") and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stdout + result.stderr and "Run directory" not in result.stdout
    assert not run.exists()  # Hydra made it before the run was refused: the run removed it


def test_a_config_group_given_a_number_is_one_line_and_a_refused_run_leaves_no_directory(tmp_path):
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(REPO / "train.py"), "data=synthetic", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=child_env(),
        )  # fmt: skip

    result = run("tau=0")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: tau=0 is not allowed: tau is a config group, one of constant, cosine, exponential,"
        " linear, slope (its settings: tau.<name>=...)"
    )
    # The default folder, <log_dir>/<model>/<time>: the folders Hydra made for it go with it (new/
    # and all under it), and the folder that was there before stays.
    (tmp_path / "kept").mkdir()
    result = run("tau.tau0=-1", f"paths.log_dir={tmp_path / 'kept' / 'new'}")
    assert result.returncode == 1 and result.stderr.strip().splitlines()[-1].startswith("error: tau.tau0=-1")
    assert list((tmp_path / "kept").iterdir()) == [] and not (tmp_path / "runs").exists()


def test_a_run_or_sweep_directory_that_cannot_be_written_is_one_line_before_hydra_makes_it(tmp_path):
    def train(*args: str) -> subprocess.CompletedProcess:
        flags = [a for a in args if a.startswith("-")]  # -m before the overrides
        overrides = [a for a in args if a not in flags]
        return subprocess.run(
            [sys.executable, str(REPO / "train.py"), *flags, "data=synthetic", *overrides],
            cwd=tmp_path, capture_output=True, text=True, timeout=300, env=child_env(),
        )  # fmt: skip

    (tmp_path / "notes.txt").write_text("a file where a folder would go\n")
    bad = tmp_path / "notes.txt" / "run"
    for args, key in [
        ([f"hydra.run.dir={bad}"], "hydra.run.dir"),
        (["-m", f"hydra.sweep.dir={bad}"], "hydra.sweep.dir"),
    ]:
        result = train(*args)
        assert result.returncode == 1
        assert result.stderr.strip() == (
            f"error: {key}='{bad}' cannot be made: {tmp_path / 'notes.txt'} is a file, not a folder;"
            f" choose another {key}"
        )
    result = train(f"paths.log_dir={bad}")  # the default run folder: the message names what was set
    assert result.returncode == 1 and result.stderr.strip() == (
        f"error: paths.log_dir='{bad}' cannot be made: {tmp_path / 'notes.txt'} is a file, not a folder;"
        " choose another paths.log_dir"
    )
    # A read-only folder (root writes into one all the same: then it is not read-only to this run).
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        (locked / "probe").touch()
        (locked / "probe").unlink()
        read_only = False
    except PermissionError:
        read_only = True
    result = train(f"hydra.run.dir={locked / 'run'}", "trainer.max_steps=1", "logger=none")
    if read_only:
        assert result.returncode == 1 and result.stderr.strip() == (
            f"error: hydra.run.dir='{locked / 'run'}' is not writable ({locked}: Permission denied);"
            " choose a writable hydra.run.dir"
        )
    else:
        assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in locked.iterdir()) == ([] if read_only else ["run"])
    locked.chmod(0o755)
