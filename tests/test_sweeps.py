"""Sweeps: Hydra multirun, failures, W&B groups, the report, the W&B sweep file, DDP, submitit."""

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from hydra import compose, initialize_config_dir
from PIL import Image

import vae
from conftest import CONFIGS, REPO, child_env
from vae.run.lock import hold_run_directory
from vae.run.wandb_records import read_records
from vae.tools.report import report
from vae.tools.report.runs import collect
from vae.tools.report.tables import summarize

pytestmark = pytest.mark.slow


def _train_cli(*args: str, cwd: Path, timeout: int = 600, status: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), *args, "callbacks.progress_bar.refresh_rate=0"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(),
    )
    assert result.returncode == status, result.stderr[-3000:]
    return result


@pytest.fixture
def workdir(tmp_path, mnist_root):
    """A fresh working directory whose data/ is the real MNIST (runs/ is written here)."""
    (tmp_path / "data").symlink_to(mnist_root.resolve())
    return tmp_path


def _sweep_dir(workdir: Path) -> Path:
    (sweep,) = (workdir / "runs" / "multirun").iterdir()
    return sweep


def test_two_schedules_by_two_seeds_and_the_report(workdir):
    _train_cli(
        "-m",
        "tau=exponential,cosine",
        "seed=0,1",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=50",
        "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=10",
        "data.eval_batch_size=500",
        cwd=workdir,
    )
    sweep = _sweep_dir(workdir)
    metrics = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/metrics.json")}
    assert sorted(metrics) == ["0", "1", "2", "3"]

    # W&B: one offline run per job, all in the group named after the sweep directory.
    groups = []
    for job in sorted(sweep.glob("[0-9]*")):
        (run_file,) = job.glob("wandb/offline-run-*/run-*.wandb")
        (run,) = [r.run for r in read_records(run_file) if r.WhichOneof("record_type") == "run"]
        groups.append(run.run_group)
    assert groups == [sweep.name] * 4

    written = report(sweep)
    rows = {row["configuration"]: row for row in summarize(collect(sweep))}
    assert set(rows) == {"tau=exponential", "tau=cosine"}
    for schedule in ("exponential", "cosine"):
        overrides = {job: (sweep / job / ".hydra" / "overrides.yaml").read_text() for job in metrics}
        values = [m["test/neg_elbo"] for job, m in metrics.items() if f"tau={schedule}" in overrides[job]]
        mean, std = rows[f"tau={schedule}"]["test/neg_elbo"]
        assert mean == pytest.approx(statistics.fmean(values))
        assert std == pytest.approx(statistics.stdev(values))
        assert rows[f"tau={schedule}"]["seeds"] == [0, 1]
        assert f"{mean:.2f} ± {std:.2f}" in written["table"].read_text()
    table = written["table"].read_text().splitlines()
    best_first = sorted(rows, key=lambda c: rows[c]["test/neg_elbo"][0])
    assert [line.split("|")[1].strip() for line in table if line.startswith("| tau=")] == best_first

    # Curves from the W&B run files: val at the end of each epoch, tau at every step.
    run = collect(sweep)[0]
    # val at each epoch end; the best checkpoint's validation after training, logged at the last
    # step (100), is not a point of the curve.
    assert sorted(run.val_curve) == [49, 99] and len(run.tau_curve) == 10  # every 10 steps
    # The tau plot: the run's schedule at every step it trained, from step 0, as logged where logged.
    for each in collect(sweep):  # exponential (1.0 before step 1000) and cosine (falling) alike
        drawn = each.tau_over_steps()
        assert sorted(drawn) == list(range(100)) and drawn[0] == 1.0
        assert all(drawn[step] == pytest.approx(tau, rel=1e-6) for step, tau in each.tau_curve.items())
    cosine = next(r for r in collect(sweep) if "tau=cosine" in r.overrides).tau_over_steps()
    assert all(cosine[step + 1] < cosine[step] for step in range(99))  # falling at every step
    for name in ("val_neg_elbo", "tau", "test_neg_elbo"):
        pixels = np.asarray(Image.open(written[name]).convert("L"))
        assert pixels.shape[0] > 300 and pixels.std() > 10
        # Colored curves or bars drawn, not just axes: some pixels are neither white nor black.
        rgb = np.asarray(Image.open(written[name]).convert("RGB")).astype(int)
        assert (rgb.max(-1) - rgb.min(-1) > 60).mean() > 0.002


def test_a_failing_job_is_recorded_and_the_others_run_and_csv_runs_are_read(workdir):
    _train_cli(
        "-m",
        "tau=constant",
        "tau.tau0=-1,0.5",
        "logger=csv",
        "trainer.log_every_n_steps=1",
        "trainer.max_epochs=1",
        "trainer.limit_train_batches=3",
        "trainer.limit_val_batches=1",
        "data.eval_batch_size=500",
        cwd=workdir,
        status=1,  # the sweep ends with the failure
    )
    sweep = _sweep_dir(workdir)
    failure = json.loads((sweep / "0" / "failed.json").read_text())
    assert failure["error"] == "ConfigError" and "tau.tau0=-1" in failure["message"]
    assert (sweep / "1" / "metrics.json").exists()
    (sweep / "2" / ".hydra").mkdir(parents=True)  # a job that has started and not finished
    (sweep / "2" / ".hydra" / "overrides.yaml").write_text("- tau=constant\n- tau.tau0=2.0\n")

    # No process holds job 2's run lock: it was stopped (killed, preempted), not running.
    runs = {run.path.name: run for run in collect(sweep)}
    assert [runs[j].status for j in "012"] == ["failed", "done", "stopped"]
    assert runs["1"].tau_curve == {0: 0.5, 1: 0.5, 2: 0.5}  # read from csv/metrics.csv
    text = report(sweep)["table"].read_text()
    assert "**failed**: ConfigError: tau.tau0=-1 is not allowed" in text
    assert "**stopped**: the sweep's command, run again, goes on with it" in text
    with hold_run_directory(sweep / "2"):  # a run writing there now (the lock a job holds)
        assert {run.path.name: run.status for run in collect(sweep)}["2"] == "running"
        assert "**running** (no metrics.json yet)" in report(sweep)["table"].read_text()
    assert {run.path.name: run.status for run in collect(sweep)}["2"] == "stopped"


def test_report_of_a_folder_without_runs_is_one_message(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vae.report", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert (
        result.stderr.strip() == f"error: {tmp_path}: no runs (folders with .hydra/overrides.yaml) below it"
    )


def test_tau_sweep_experiment_runs_every_combination_through_the_cli(workdir):
    _train_cli("-m", "experiment=tau_sweep", "debug=fast", cwd=workdir, timeout=900)
    sweep = _sweep_dir(workdir)
    overrides = sorted(
        tuple(yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text())) for job in sweep.glob("[0-9]*")
    )
    expected = sorted(
        (
            "experiment=tau_sweep",
            "debug=fast",
            "callbacks.progress_bar.refresh_rate=0",
            f"tau={t}",
            f"seed={s}",
        )
        for t, s in itertools.product(["constant", "exponential", "linear", "cosine"], [0, 1, 2])
    )
    assert [sorted(o) for o in overrides] == [sorted(o) for o in expected]
    assert len(list(sweep.glob("*/metrics.json"))) == 12


def test_paper_experiments_run_through_the_cli_and_fill_the_readme_results(workdir):
    experiments = ["jang2017", "jang2017_st", "reinmax_8x4", "reinmax_4x24", "reinmax_10x30"]
    _train_cli("-m", f"experiment={','.join(experiments)}", "debug=fast", "iw_samples=3", cwd=workdir)
    sweep = _sweep_dir(workdir)
    runs = {run.configuration: run for run in collect(sweep)}
    assert set(runs) == {f"experiment={e}" for e in experiments}
    settings = {c: yaml.safe_load((r.path / "config.yaml").read_text()) for c, r in runs.items()}
    jang, reinmax = settings["experiment=jang2017"], settings["experiment=reinmax_4x24"]
    assert jang["model"]["estimator"]["name"] == "gumbel_softmax"
    assert settings["experiment=jang2017_st"]["model"]["estimator"]["name"] == "st_gumbel"
    assert (jang["model"]["num_variables"], jang["model"]["num_classes"]) == (20, 10)
    assert jang["trainer"]["max_steps"] == 50000 and jang["data"]["binarization"] == "fixed"
    assert (reinmax["model"]["num_variables"], reinmax["model"]["num_classes"]) == (24, 4)
    assert reinmax["optimizer"]["_target_"] == "torch.optim.RAdam" and reinmax["tau"]["tau0"] == 1.5
    for run in runs.values():
        assert run.metrics["iw_samples"] == 3 and run.metrics["test/nll_iw"] <= run.metrics["test/neg_elbo_k"]

    readme = workdir / "README.md"
    readme.write_text("# Title\n\n<!-- results:begin -->\nold numbers\n<!-- results:end -->\n\nAfter.\n")
    report(sweep, readme=readme)
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# Title") and text.endswith("After.\n")
    jang_row = next(line for line in text.splitlines() if line.startswith("| experiment=jang2017 |"))
    measured = f"{runs['experiment=jang2017'].metrics['test/nll_iw']:.2f}"
    assert measured in jang_row and "101.5 (test/nll_iw)" in jang_row


def test_wandb_sweep_file_names_real_keys_and_builds_an_accepted_command(workdir):
    sweep = yaml.safe_load((CONFIGS / "sweep" / "tau.yaml").read_text())
    assert sweep["command"] == ["${env}", "${interpreter}", "${program}", "${args_no_hyphens}"]
    assert (REPO / sweep["program"]).exists()
    parameters = sweep["parameters"]
    grid = [[f"{k}={v}" for v in spec.get("values", [spec.get("value")])] for k, spec in parameters.items()]
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        for combination in itertools.product(*grid):
            cfg = compose("train", overrides=list(combination))  # unknown keys or options raise
            for override in combination:
                key, value = override.split("=")
                if key in ("model", "tau"):  # a config group: check the option was taken
                    continue
                assert str(cfg[key.split(".")[0]][key.split(".")[1]] if "." in key else cfg[key]) == value
    # What `wandb agent` runs (${args_no_hyphens}), accepted by train.py end to end.
    first = [options[0] for options in grid]
    _train_cli(*first, "debug=fast", "logger=none", cwd=workdir)


def test_ddp_with_two_cpu_processes(workdir):
    _train_cli(
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "logger=csv",
        "trainer.max_epochs=2",
        "trainer.limit_train_batches=50",
        cwd=workdir,
    )
    (run_dir,) = (workdir / "runs" / "categorical").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 100  # 2 epochs of 50 steps, each step on 2 processes
    # The test KL, reduced over the two processes' halves of the test set, equals a
    # single-process computation on the same checkpoint (no sampling in the KL).
    model = vae.load(metrics["checkpoint"])
    test_images = vae.load_data(metrics["checkpoint"]).test_images
    import torch
    from torch.distributions import kl_divergence

    with torch.no_grad():
        kl = kl_divergence(model.encode(test_images), model.prior()).mean().item()
    assert metrics["test/kl"] == pytest.approx(kl, rel=1e-4)
    assert math.isfinite(metrics["test/neg_elbo"])


def test_submitit_local_launcher_runs_the_sweep(workdir):
    _train_cli("-m", "hydra/launcher=submitit_local", "tau=constant,cosine", "debug=fast", cwd=workdir)
    sweep = _sweep_dir(workdir)
    assert len(list(sweep.glob("*/metrics.json"))) == 2
    assert list(sweep.glob(".submitit/*/*_result.pkl"))  # run by submitit, not in-process


def test_slurm_launcher_config_composes():
    with initialize_config_dir(str(CONFIGS), version_base="1.3"):
        cfg = compose("train", overrides=["hydra/launcher=slurm"], return_hydra_config=True)
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("SlurmLauncher")
    assert launcher.gpus_per_node == 1 and launcher.timeout_min == 240


def test_a_sweep_runs_its_jobs_side_by_side_each_with_its_share_and_its_own_console(workdir):
    result = _train_cli(
        "-m", "data=synthetic", "seed=0,1,2,3", "trainer.max_epochs=2", "logger=none", cwd=workdir
    )
    sweep = _sweep_dir(workdir)
    cores = os.cpu_count()
    for job in "0123":
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        # n_jobs defaults to one job per core, so each job has one thread
        assert metrics["hardware"].startswith(f"CPU, 1 thread of {cores} cores")
        console = (sweep / job / "console.log").read_text()
        assert f"Run directory: {sweep / job}" in console.replace(str(workdir.resolve()), str(workdir))
        assert "epoch 1 step 36: " in console  # a line per validation instead of a progress bar
        assert f"[job {job}] " in result.stderr and f"[job {job}] data=synthetic seed={job}" in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("[job ")]
    assert len(lines) == 8 and sum(": done in " in line for line in lines) == 4
    assert "it/s" not in result.stdout + result.stderr  # no progress bars on the sweep's console


def test_the_basic_launcher_still_runs_one_job_at_a_time_in_this_process(workdir):
    result = _train_cli(
        "-m", "data=synthetic", "seed=0,1", "debug=fast", "hydra/launcher=basic", cwd=workdir
    )  # fmt: skip
    sweep = _sweep_dir(workdir)
    assert len(list(sweep.glob("*/metrics.json"))) == 2 and not list(sweep.glob("*/console.log"))
    assert "Joblib" not in result.stdout + result.stderr


def test_schedules_are_swept_with_the_keys_a_user_types(workdir):
    _train_cli(
        "-m", "data=synthetic", "tau=linear,cosine,constant", "tau.num_steps=400", "debug=fast", cwd=workdir
    )
    sweep = _sweep_dir(workdir)
    configs = [yaml.safe_load((job / "config.yaml").read_text()) for job in sorted(sweep.glob("[0-9]"))]
    assert [c["tau"]["_target_"].rsplit(".", 1)[1] for c in configs] == [
        "LinearTemperature",
        "CosineTemperature",
        "ConstantTemperature",
    ]
    assert all(c["tau"]["num_steps"] == 400 for c in configs) and len(list(sweep.glob("*/metrics.json"))) == 3
