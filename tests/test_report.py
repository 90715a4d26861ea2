"""vae.report on runs written by hand: the paper layout, the extra columns, several sweeps, README blocks."""

import json
from pathlib import Path

import pytest
import yaml

from vae.run.lock import hold_run_directory
from vae.tools.report import report
from vae.tools.report.runs import collect
from vae.tools.report.tables import compute_line, paper_tables, planned_cells, summarize


def _job(
    sweep: Path, num: int, overrides: list[str], metrics: dict, published: dict | None = None, csv_rows=()
):
    job = sweep / str(num)
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (job / "config.yaml").write_text(yaml.safe_dump({"published": published} if published else {}))
    (job / "metrics.json").write_text(json.dumps(metrics))
    if csv_rows:
        (job / "csv").mkdir()
        keys = sorted({k for row in csv_rows for k in row})
        lines = [",".join(keys)] + [",".join(str(row.get(k, "")) for k in keys) for row in csv_rows]
        (job / "csv" / "metrics.csv").write_text("\n".join(lines) + "\n")


def _metrics(nll: float, seed: int, estimator: str = "disarm", passes: int = 2) -> dict:
    return {
        "test/neg_elbo": nll + 5, "test/nll_iw": nll, "val/neg_elbo": nll + 6, "seed": seed, "epochs": 3,
        "estimator": estimator, "decoder_passes": passes, "last_step": 300, "hardware": "CPU",
        "iw_samples": 100, "validation": "best of validations each epoch",
    }  # fmt: skip


def test_cells_of_a_paper_table_are_laid_out_as_in_the_paper(tmp_path):
    sweep = tmp_path / "sweep"
    cells = [
        ("Bernoulli", "SF", 112.2, 120.0),
        ("Bernoulli", "DARN", 110.9, 118.0),
        ("Categorical", "SF", 110.6, 111.0),
    ]
    for num, (row, column, published, measured) in enumerate(cells):
        cell = {"metric": "test/nll_iw", "value": published, "table": "Table 1", "row": row, "column": column}
        _job(sweep, num, [f"+cell={row}_{column}"], _metrics(measured, 0), cell)
    (table,) = paper_tables(summarize(collect(sweep)))
    lines = table.splitlines()
    assert lines[2] == "| latent | SF | DARN |"
    assert lines[4] == "| Bernoulli | 120.00 (112.2) | 118.00 (110.9) |"  # one seed: no spread shown
    assert lines[5] == "| Categorical | 111.00 (110.6) | – |"


def test_cells_a_sweep_has_not_reached_show_their_published_number(tmp_path):
    # The sweep was launched over two cells of configs/jang2017_table1/; one has run.
    sweep = tmp_path / "sweep"
    options = "bernoulli_sf,categorical_st_gumbel_softmax"
    sweep.mkdir()
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"sweeper": {"params": {"+jang2017_table1": options}}}})
    )
    table_name = "Jang et al. 2017, Table 1"
    cell = {
        "metric": "test/nll_iw",
        "value": 112.2,
        "table": table_name,
        "row": "Bernoulli (200)",
        "column": "SF",
    }
    _job(sweep, 0, ["+jang2017_table1=bernoulli_sf"], _metrics(150.0, 0), cell)
    (table,) = paper_tables(summarize(collect(sweep)), planned_cells([sweep]))
    lines = table.splitlines()
    assert lines[2] == "| latent | SF | ST Gumbel-Softmax |"
    assert lines[4] == "| Bernoulli (200) | 150.00 (112.2) | – |"
    assert lines[5] == "| Categorical (20×10) | – | – (107.8) |"  # the published number from its config file


def test_planned_cells_take_what_an_option_inherits_from_its_defaults(tmp_path):
    # configs/relax_table/nonlinear_rebar.yaml names its row and number; its table, column and
    # metric come from linear_rebar through its defaults list, as Hydra composes it.
    sweep = tmp_path / "relax_nonlinear"
    sweep.mkdir()
    options = "nonlinear_nvil,nonlinear_rebar,nonlinear_relax"
    (sweep / "multirun.yaml").write_text(
        yaml.safe_dump({"hydra": {"sweeper": {"params": {"+relax_table": options}}}})
    )
    cells = {(c["row"], c["column"]): c for c in planned_cells([sweep])}
    assert list(cells) == [("nonlinear", "NVIL"), ("nonlinear", "REBAR"), ("nonlinear", "RELAX")]
    rebar = cells["nonlinear", "REBAR"]
    assert rebar["value"] == 81.01 and rebar["metric"] == "train_set/neg_elbo_best"
    assert rebar["table"] == cells["nonlinear", "NVIL"]["table"]
    (table,) = paper_tables([], list(cells.values()))
    assert "| nonlinear | – (101.5) | – (81.01) | – (78.13) |" in table


def test_two_sweeps_one_readme_block_with_train_elbo_and_gradient_variance(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    rows = [
        {"step": 9, "epoch": 0, "train/neg_elbo": 150.0},
        {"step": 19, "epoch": 1, "train/neg_elbo": 110.0, "train/encoder_grad_variance": 0.5},
        {"step": 29, "epoch": 1, "train/neg_elbo": 100.0, "train/encoder_grad_variance": 0.25},
        {"step": 29, "epoch": 1, "train_set/neg_elbo": 98.5},  # callbacks=training_set_elbo
    ]
    timed = {"train_seconds": 5400.0, "evaluation_seconds": 1800.0}
    kl = {"test/kl": 21.5}
    _job(first, 0, ["model.estimator=arm", "seed=0"], _metrics(100.0, 0, "arm") | timed | kl, csv_rows=rows)
    _job(second, 0, ["model.estimator=disarm", "seed=0"], _metrics(99.0, 0), csv_rows=rows)
    _job(second, 1, ["model.estimator=reinforce", "seed=0"], _metrics(130.0, 0, "reinforce") | timed)
    partly = timed | {"train_seconds_untimed_steps": 10000}
    _job(second, 2, ["model.estimator=nvil", "seed=0"], _metrics(120.0, 0, "nvil") | partly)
    readme = tmp_path / "README.md"
    blocks = (
        "<!-- results:begin -->\nold\n<!-- results:end -->\n<!-- other:begin -->\nx\n<!-- other:end -->\n"
    )
    readme.write_text("# T\n" + blocks)
    report([first, second], out=tmp_path / "out", readme=readme, block="other")
    text = readme.read_text()
    assert "old" in text and "\nx\n" not in text  # only the named block was replaced
    (arm_row,) = [line for line in text.splitlines() if line.startswith("| model.estimator=arm |")]
    assert "| arm (2) |" in arm_row and "| 105.00 |" in arm_row  # the last epoch's mean train -ELBO
    assert "| 100.00 | 21.50 | 105.00 |" in arm_row  # the test KL after the IW bound
    assert "| 0.25 |" in arm_row  # the last gradient variance
    # What the table cost: the two timed runs' 2 x 2 hours; the disarm run predates the record.
    # A run that went on from a checkpoint of before the record counts with the untimed ones.
    assert (
        "Compute: 2 runs took 4.0 hours of training and evaluation together (each its own process; CPU);"
        " 2 more runs did not record all their time" in text
    )
    assert (tmp_path / "out" / "grad_variance.png").exists()
    assert (tmp_path / "out" / "train_set_neg_elbo.png").exists()


def test_untimed_runs_are_estimated_at_the_seconds_per_step_their_configuration_measured(tmp_path):
    # A search over learning rates (selection.keys) and its seeds: a step costs the same at any
    # rate, so the timed seed-0 run of a cell prices the untimed steps of its other runs.
    sweep = tmp_path / "sweep"
    selection = {"selection": {"keys": ["optimizer.lr"]}}
    hour = {"train_seconds": 3000.0, "evaluation_seconds": 600.0}  # 3 s a step over 1000 steps
    runs = [
        (["+cell=a", "optimizer.lr=0.1"], 0, {**hour, "last_step": 1000}),  # timed
        (["+cell=a", "optimizer.lr=0.01"], 0, {"last_step": 1000}),  # untimed: 3000 s
        (["+cell=a", "seed=1", "selection.chosen_in=x"], 1, {"train_seconds": 900.0, "last_step": 1000,
                                                             "train_seconds_untimed_steps": 700}),  # 2100 s
        (["+cell=b", "optimizer.lr=0.1"], 0, {"last_step": 1000}),  # no timed run of cell b
    ]  # fmt: skip
    for num, (overrides, seed, record) in enumerate(runs):
        _job(sweep, num, overrides, _metrics(100.0, seed) | record)
        (sweep / str(num) / "config.yaml").write_text(yaml.safe_dump(selection))
    (line,) = compute_line(collect(sweep))
    assert line == (
        "Compute: 1 runs took 1.0 hours of training and evaluation together (each its own process; CPU);"
        " 3 more runs did not record all their time (they, or the checkpoints they went on from, predate"
        " the record): about 1.4 hours more of training (an estimate: their untimed steps at the seconds"
        " per step that the timed runs of their configuration took; 1 with no timed run of their"
        " configuration not counted)."
    )


def test_a_table_of_the_best_training_set_elbo_shows_each_runs_minimum_and_where_a_running_one_is(tmp_path):
    # The RELAX paper's table: the highest training ELBO, here the lowest train_set/neg_elbo a run
    # logged at its validations; a 2M-step run still training shows its best so far and its step.
    sweep = tmp_path / "sweep"
    curves = {
        "nvil": [(20840, 120.0), (41680, 112.0), (62520, 115.0)],
        "rebar": [(20840, 130.0), (41680, 125.0)],
    }
    for num, (column, curve) in enumerate(curves.items()):
        cell = {
            "metric": "train_set/neg_elbo_best",
            "value": {"nvil": 112.5, "rebar": 111.6}[column],
            "table": "RELAX, Table 1",
            "row_title": "MNIST model",
            "row": "linear one-layer",
            "column": column,
        }
        rows = [{"step": step, "epoch": step // 2084, "train_set/neg_elbo": v} for step, v in curve]
        _job(sweep, num, [f"+relax_table={column}"], _metrics(100.0, 0), cell, csv_rows=rows)
    (sweep / "1" / "metrics.json").unlink()  # rebar is not finished
    with hold_run_directory(sweep / "1"):  # a process trains it now
        (table,) = paper_tables(summarize(collect(sweep)))
    lines = table.splitlines()
    assert lines[2] == "| MNIST model | nvil | rebar |"
    running = "| linear one-layer | 112.00 (112.5) | running at step 41680: best so far 125.00 (111.6) |"
    assert lines[4] == running
    (table,) = paper_tables(summarize(collect(sweep)))  # its process has ended: stopped, to go on
    stopped = running.replace("running", "stopped")
    assert table.splitlines()[4] == stopped


def test_the_latent_in_use_column_averages_the_seeds_that_recorded_it_and_names_them(tmp_path):
    sweep = tmp_path / "sweep"

    def health(in_use: int) -> dict:
        return {"latent/in_use": in_use, "latent/coordinates": 200}

    _job(
        sweep,
        1,
        ["model.estimator=arm", "seed=1"],
        _metrics(101.0, 1, "arm") | health(160) | {"global_step": 120},
    )
    _job(
        sweep,
        0,
        ["model.estimator=arm", "seed=0"],
        _metrics(100.0, 0, "arm") | health(150) | {"global_step": 300},
    )
    _job(sweep, 2, ["model.estimator=nvil", "seed=0"], _metrics(110.0, 0, "nvil"))  # predates the record
    _job(sweep, 3, ["model.estimator=nvil", "seed=1"], _metrics(111.0, 1, "nvil") | health(3))
    _job(sweep, 4, ["model.estimator=sf", "seed=0"], _metrics(190.0, 0, "sf"))
    _job(sweep, 5, ["model.estimator=darn", "seed=0"], _metrics(115.0, 0, "darn"))
    for seed in (1, 2):
        darn = _metrics(115.0, seed, "darn") | health(190)
        _job(sweep, 5 + seed, ["model.estimator=darn", f"seed={seed}"], darn)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:begin -->\n<!-- results:end -->\n")
    written = report([sweep], out=tmp_path / "out", readme=readme, block="results")
    assert set(written) == {"table", "val_neg_elbo", "test_neg_elbo"}  # no run logged the optional curves
    lines = readme.read_text().splitlines()
    (header,) = [line for line in lines if line.startswith("| configuration |")]
    column = header.split(" | ").index("latent in use")

    def cell(estimator: str) -> str:
        (row,) = [line for line in lines if line.startswith(f"| model.estimator={estimator} |")]
        return row.split(" | ")[column]

    assert cell("arm") == "155 ± 7 of 200"  # both seeds: mean ± std
    # The checkpoint's step beside the checkpoint rule, seed by seed: seed 1's weights are from step 120.
    (arm,) = [line for line in lines if line.startswith("| model.estimator=arm |")]
    assert "| best of validations each epoch | 300, 120 |" in arm
    assert cell("nvil") == "3 of 200 (seed 1)"  # one of two seeds recorded it: named
    assert cell("sf") == "–"
    assert cell("darn") == "190 ± 0 of 200 (seeds 1, 2)"  # the two that recorded it: named


def test_the_validation_curve_leaves_out_the_chosen_checkpoints_validation_after_training(tmp_path):
    # As a run writes them (data=synthetic, max_steps=40, 18 steps an epoch): validations during
    # training at steps 17 and 35, then trainer.validate on the best checkpoint logged at step 40.
    rows = [
        {"step": 17, "epoch": 0, "val/neg_elbo": 311.7},
        {"step": 35, "epoch": 1, "val/neg_elbo": 299.5},
        {"step": 39, "epoch": 2, "train/neg_elbo": 305.0},
        {"step": 40, "epoch": 3, "val/neg_elbo": 299.5},
    ]
    sweep = tmp_path / "sweep"
    _job(sweep, 0, ["seed=0"], _metrics(290.0, 0) | {"last_step": 40}, csv_rows=rows)
    (run,) = collect(sweep)
    assert run.val_curve == {17: 311.7, 35: 299.5}
    assert run.curves["train/neg_elbo"] == {39: 305.0}


def test_the_validation_band_pairs_a_resumed_runs_steps_with_their_neighbours():
    from vae.tools.report.plots import _band

    straight = {549: 150.0, 1099: 140.0, 12649: 120.0, 13199: 118.0}
    resumed = {549: 152.0, 1099: 142.0, 12650: 124.0, 13200: 122.0}  # stopped near 12k, resumed
    running = {549: 151.0, 1099: 141.0}  # not as far yet
    steps, mean, std = _band([straight, resumed])
    assert steps == [549, 1099, 12649, 13199]
    assert mean == [151.0, 141.0, 122.0, 120.0]
    assert std[2] == pytest.approx(2 * 2**0.5)
    assert _band([straight, resumed, running])[0] == [549, 1099]  # the steps every run has reached
    assert _band([]) == ([], [], [])
