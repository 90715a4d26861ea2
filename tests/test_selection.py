"""Choosing settings on validation (vae/run/selection.py): successive halving over a sweep's
learning rates, the other seeds at the chosen rate, and the report's table of the chosen runs."""

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from conftest import REPO, child_env
from vae.run.selection import Job, Ladder, _ladders_of, configuration_of, launched_jobs, plan_job, sweep_grid
from vae.tools.report.runs import collect
from vae.tools.report.tables import selected_rows

SELECT = [
    "selection.keys=[optimizer.lr]",
    "selection.rungs=[18]",  # one epoch of the synthetic data
    "selection.keep=1",
    "trainer.max_steps=36",
    "trainer.max_epochs=-1",
]


def _sweep(*overrides: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "data=synthetic", "logger=csv", "hydra/launcher=basic",
         "callbacks.progress_bar.refresh_rate=0", *SELECT, *overrides],
        cwd=cwd, capture_output=True, text=True, timeout=600, env=child_env(),
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _last_step(job: Path) -> int:
    return json.loads((job / "metrics.json").read_text())["last_step"]


def test_every_rate_to_the_rung_then_the_best_to_the_end_then_the_other_seeds_at_the_chosen_rate(tmp_path):
    search, seeds = tmp_path / "search", tmp_path / "seeds"
    rates = "optimizer.lr=1e-4,3e-3,3e-2"
    _sweep(rates, f"hydra.sweep.dir={search}", cwd=tmp_path)
    jobs = [search / str(i) for i in range(3)]
    assert [_last_step(j) for j in jobs] == [18, 18, 18]  # nobody went further than the rung yet
    assert not any("test/neg_elbo" in json.loads((j / "metrics.json").read_text()) for j in jobs)
    val = {j.name: json.loads((j / "rungs.json").read_text())["18"]["val/neg_elbo"] for j in jobs}
    best = min(val, key=val.get)

    out = _sweep(rates, f"hydra.sweep.dir={search}", cwd=tmp_path)  # the same command again
    assert [_last_step(j) for j in jobs] == [36 if j.name == best else 18 for j in jobs]
    assert "test/neg_elbo" in json.loads((search / best / "metrics.json").read_text())
    assert out.count("not among the 1 best") == 2
    for j in jobs:  # rungs.json keeps the rung's numbers after the run went on
        assert json.loads((j / "rungs.json").read_text())["18"]["val/neg_elbo"] == val[j.name]

    out = _sweep(rates, f"hydra.sweep.dir={search}", cwd=tmp_path)  # nothing left to do
    assert "finished before" in out and out.count("not among") == 2

    # Seed 1 of the chosen rate only.
    _sweep(rates, "seed=1", f"selection.chosen_in={search}", f"hydra.sweep.dir={seeds}", cwd=tmp_path)
    ran = sorted(p.parent.name for p in seeds.glob("*/metrics.json"))
    assert len(ran) == 1 and _last_step(seeds / ran[0]) == 36
    chosen_lr = [
        o
        for o in yaml.safe_load((search / best / ".hydra" / "overrides.yaml").read_text())
        if o.startswith("optimizer.lr=")
    ]
    assert [
        o
        for o in yaml.safe_load((seeds / ran[0] / ".hydra" / "overrides.yaml").read_text())
        if o.startswith("optimizer.lr=")
    ] == chosen_lr

    # The report's table: the chosen runs only (seeds 0 and 1), and what was chosen from what.
    (row,) = selected_rows(collect(search, seeds))
    assert row["seeds"] == [0, 1] and row["done"] == 2
    assert row["chosen"].startswith(chosen_lr[0]) and "of 3" in row["chosen"]


def test_a_search_copied_without_its_checkpoints_goes_on_from_its_records(tmp_path):
    # What results/ keeps of a search (README, Jang et al. Table 1 under the paper's protocol):
    # each job's records, no checkpoints, images or lock. Copied into a new sweep directory, the
    # same command goes on: the jobs at the rung are not run again, the kept rate trains to the
    # end from step 0 (its checkpoint is not there) and is tested.
    search, copied = tmp_path / "search", tmp_path / "copied"
    rates = "optimizer.lr=1e-4,3e-3,3e-2"
    _sweep(rates, f"hydra.sweep.dir={search}", cwd=tmp_path)
    _a_search_stopped_before_its_last_job_started_decides_nothing(search, tmp_path / "partial")
    shutil.copytree(search, copied, ignore=shutil.ignore_patterns("checkpoints", "images", ".lock"))
    jobs = [copied / str(i) for i in range(3)]
    before = {j.name: (j / "metrics.json").read_text() for j in jobs}
    val = {j.name: json.loads((j / "rungs.json").read_text())["18"]["val/neg_elbo"] for j in jobs}
    best = min(val, key=val.get)

    out = _sweep(rates, f"hydra.sweep.dir={copied}", cwd=tmp_path)
    assert out.count("not among the 1 best") == 2
    for j in jobs:
        if j.name == best:
            assert _last_step(j) == 36 and "test/neg_elbo" in json.loads((j / "metrics.json").read_text())
            steps = [int(row["step"]) for row in csv.DictReader((j / "csv" / "metrics.csv").open())]
            assert steps.count(17) == 2  # its first 18 steps logged twice: trained again from step 0
            assert (j / "metrics-at-18.json").read_text() == before[j.name]  # kept, not overwritten
        else:
            assert (j / "metrics.json").read_text() == before[j.name]  # not run again
    assert json.loads((copied / best / "rungs.json").read_text())["18"]["val/neg_elbo"] == val[best]


def _a_search_stopped_before_its_last_job_started_decides_nothing(search: Path, partial: Path) -> None:
    # Jobs 0 and 1 at the rung, job 2 (lr=3e-2) never started: the two that ran are not "the best
    # of the grid", so neither goes on, and nothing is chosen (a seeds stage would wait).
    shutil.copytree(search, partial, ignore=shutil.ignore_patterns("checkpoints", ".lock"))
    shutil.rmtree(partial / "2")
    # Job 0 went on towards the end once, from step 0, and was stopped: its metrics.json is set
    # aside (metrics-at-18.json), its rung is in rungs.json. It does not train to the rung again.
    (partial / "0" / "metrics.json").rename(partial / "0" / "metrics-at-18.json")
    assert sweep_grid(partial, ["optimizer.lr"]) == [("0.0001",), ("0.003",), ("0.03",)]
    selection = {"keys": ["optimizer.lr"], "rungs": [18], "keep": 1}
    for job in ("0", "1"):
        overrides = yaml.safe_load((partial / job / ".hydra" / "overrides.yaml").read_text())
        assert plan_job(partial / job, overrides, selection, 36).action == "wait"
    (ladder,) = _ladders_of(partial, selection, 36).values()
    assert len(ladder.candidates) == 3 and ladder.kept() == [list(ladder.candidates)]
    assert ladder.choice() is None


def test_the_grid_is_the_sweeps_as_hydra_expands_it_the_command_line_over_the_config(tmp_path):
    (tmp_path / "multirun.yaml").write_text(
        yaml.safe_dump(
            {
                "hydra": {
                    "sweeper": {"params": {"optimizer.lr": "1.0e-5,3.0e-4", "+model": "a,b"}},
                    "overrides": {"task": ["experiment=x", "optimizer.lr=1.0e-3,3e-2", "seed=4"]},
                }
            }
        )
    )
    assert sweep_grid(tmp_path, ["optimizer.lr", "model"]) == [
        ("0.001", "a"), ("0.001", "b"), ("0.03", "a"), ("0.03", "b"),
    ]  # fmt: skip
    assert sweep_grid(tmp_path, ["seed", "optimizer.momentum"]) == [("4", "")]
    assert sweep_grid(tmp_path / "nowhere", ["optimizer.lr"]) is None


def test_the_jobs_a_sweep_launches_are_hydras_in_its_order_of_job_numbers():
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper  # the reference, in the test only
    from hydra.core.override_parser.overrides_parser import OverridesParser

    params = {"optimizer.lr": "1.0e-5,3.0e-4", "+model": "a,b"}
    task = ["experiment=x", "optimizer.lr=1.0e-3,3e-2", "seed=4,5", "++tau.tau0=0.5"]
    hydra = {"sweeper": {"params": params}, "overrides": {"task": task}}
    arguments = [f"{k}={v}" for k, v in params.items()] + task
    (expected,) = BasicSweeper.split_arguments(OverridesParser.create().parse_overrides(arguments), None)
    assert launched_jobs(hydra) == expected
    assert len(expected) == 8
    assert expected[1] == ["optimizer.lr=0.001", "+model=a", "experiment=x", "seed=5", "++tau.tau0=0.5"]


def test_a_configuration_is_what_makes_the_run_not_its_logging_callbacks_or_place():
    # The seeds of a chosen rate run with the progress bar off, another logger, elsewhere: the
    # same configuration as the search's, so the choice made there applies to them.
    search = ["+cell=a", "optimizer.lr=1e-3", "experiment=x"]
    seeds = [*search, "seed=3", "callbacks.progress_bar.refresh_rate=0", "logger=csv", "data.root=/d",
             "selection.chosen_in=/s", "trainer.devices=1"]  # fmt: skip
    assert configuration_of(seeds, ["optimizer.lr"]) == configuration_of(search, ["optimizer.lr"])
    assert configuration_of(search, ["optimizer.lr"]) == "+cell=a experiment=x"
    # The length and the final test make other numbers: another configuration.
    for other in ("trainer.max_steps=10", "iw_samples=10", "model.estimator=nvil"):
        assert configuration_of([*search, other], ["optimizer.lr"]) == f"+cell=a experiment=x {other}"


def _job(tmp_path: Path, lr: str, seed: int, scores: dict[int, float]) -> Job:
    return Job(tmp_path / f"{lr}-{seed}", "cfg", (lr,), seed, dict(scores), max(scores, default=0))


def test_a_rung_is_decided_only_when_every_value_reached_it_and_on_the_seeds_all_share(tmp_path):
    a = [_job(tmp_path, "a", 0, {10: 5.0}), _job(tmp_path, "a", 1, {10: 9.0})]
    b = [_job(tmp_path, "b", 0, {10: 6.0})]
    c = [_job(tmp_path, "c", 0, {})]  # not at the rung yet
    ladder = Ladder({("a",): a, ("b",): b, ("c",): c}, rungs=[10, 20], keep=1)
    assert ladder.kept() == [[("a",), ("b",), ("c",)]] and ladder.choice() is None
    c[0].rung_scores[10] = 7.0
    # Seed 0 is the one every value has: a (5.0) beats b (6.0), though a's mean over its seeds is 7.
    assert ladder.kept() == [[("a",), ("b",), ("c",)], [("a",)]]
    assert ladder.choice() is None  # a has not reached 20 steps
    a[0].rung_scores[20] = 4.0
    a[1].rung_scores[20] = 4.5
    assert ladder.choice() == ("a",)


def test_without_selection_keys_a_job_trains_to_its_max_steps(tmp_path):
    plan = plan_job(tmp_path / "0", ["optimizer.lr=1e-3"], {"keys": [], "rungs": [10]}, 50)
    assert (plan.action, plan.steps, plan.final) == ("run", 50, True)


def test_a_sweep_with_a_failed_job_exits_non_zero_naming_it(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "-m", "data=synthetic", "debug=fast", "hydra/launcher=basic",
         "tau=constant", "tau.tau0=-1,0.5", f"hydra.sweep.dir={tmp_path / 'sweep'}"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, env=child_env(),
    )  # fmt: skip
    assert result.returncode == 1
    assert "error: job 0 failed: ConfigError: tau.tau0=-1 is not allowed" in result.stderr
    assert (tmp_path / "sweep" / "1" / "metrics.json").exists()  # the other job ran


def test_a_job_that_goes_on_from_a_rung_keeps_its_numbers_there_though_it_predates_rungs_json(tmp_path):
    import vae.run.sweep
    from conftest import compose_config

    sweep = tmp_path / "sweep"
    for job, (lr, val) in enumerate([("0.1", 100.0), ("0.2", 120.0)]):
        (sweep / str(job) / ".hydra").mkdir(parents=True)
        (sweep / str(job) / ".hydra" / "overrides.yaml").write_text(f"- optimizer.lr={lr}\n")
        (sweep / str(job) / "metrics.json").write_text(json.dumps({"last_step": 18, "val/neg_elbo": val}))
    settings = [*SELECT, "test=true"]
    cfg = compose_config([*settings, "optimizer.lr=0.1"], sweep / "0")
    plan = vae.run.sweep.continue_sweep_job(cfg, sweep / "0", ["optimizer.lr=0.1"])
    assert (plan.action, plan.steps, cfg.trainer.max_steps, cfg.test) == ("run", 36, 36, True)
    assert json.loads((sweep / "0" / "rungs.json").read_text()) == {"18": {"val/neg_elbo": 100.0}}
    cfg = compose_config([*settings, "optimizer.lr=0.2"], sweep / "1")
    assert vae.run.sweep.continue_sweep_job(cfg, sweep / "1", ["optimizer.lr=0.2"]).action == "done"
