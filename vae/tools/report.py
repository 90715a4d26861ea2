"""python -m vae.report SWEEP_DIR: one table and three plots for a sweep of train.py runs.

Collects every job under SWEEP_DIR (a folder holding `.hydra/overrides.yaml`): its overrides,
its status (done: metrics.json; failed: failed.json; else running, when a process holds its run
lock, or stopped: killed or preempted, to go on when its command is run again), its final
val/test numbers, and its curves (val -ELBO and tau over steps) from the CSV log or, failing
that, the W&B run file. Runs are grouped into configurations by their overrides less the seed.

Writes to SWEEP_DIR (or --out):
- report.md: per configuration, mean +- std over seeds of the final numbers, best first, beside
  the published number when the run's config carries one (experiment=jang2017 and the like);
- val_neg_elbo.png: val -ELBO over steps, mean with a +-1 std band over seeds;
- tau.png: the tau each configuration trained with, at every step from 0 (when any run logged one);
- test_neg_elbo.png: final test -ELBO per configuration with +-1 std error bars.

With --readme README.md, the results table also replaces the block between the README's
`<!-- results:begin -->` and `<!-- results:end -->` markers, so the README's numbers are
regenerated from the runs, never typed.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.errors import InstantiationException

from vae.config import CONFIG_DIR, build
from vae.run.lock import held_by_a_process
from vae.run.selection import (
    Job,
    configuration_of,
    describe,
    ladders,
    override_key,
    selection_rungs,
    swept_values,
    values_of,
)

SEED_KEYS = ("seed",)
IGNORED_KEYS = ("ckpt_path", "hydra.run.dir", "hydra.sweep.dir")  # where a run was, not what it was
CONFIGS = CONFIG_DIR  # where a sweep's config groups live

REPORTED = ("test/neg_elbo", "test/nll_iw", "val/neg_elbo", "test/neg_elbo_relaxed", "test/kl", "epochs")
CURVES = ("val/neg_elbo", "train/tau", "train/neg_elbo", "train/encoder_grad_variance", "train_set/neg_elbo")
# Numbers taken from a curve rather than from metrics.json: name -> (curve, its best is its min).
UNFINISHED = ("running", "stopped")
FROM_CURVES = {"train_set/neg_elbo_best": "train_set/neg_elbo"}  # the RELAX paper's "highest training ELBO"


@dataclass
class RunRecord:
    """One run directory as the report reads it back (vae.run.fit.Run is a run about to train)."""

    path: Path
    overrides: list[str]
    status: str  # done | failed | running (a process holds its lock) | stopped (none does)
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    curves: dict[str, dict[int, float]] = field(default_factory=dict)  # metric -> {step: value}
    epochs: dict[int, int] = field(default_factory=dict)  # step -> epoch of the logged train rows
    configuration: str = ""  # the overrides that vary across the sweep, less the seed
    published: dict = field(default_factory=dict)  # the config's `published` node, if any
    selection: dict = field(default_factory=dict)  # the config's `selection` node (vae/run/selection.py)
    max_steps: int = -1  # the config's trainer.max_steps
    tau_schedule: dict = field(default_factory=dict)  # the config's tau node (vae/temperature.py)

    @property
    def val_curve(self) -> dict[int, float]:
        return self.curves.get("val/neg_elbo", {})

    @property
    def tau_curve(self) -> dict[int, float]:
        return self.curves.get("train/tau", {})

    def tau_over_steps(self) -> dict[int, float]:
        """tau at every step the run trained, from step 0, computed from its schedule: the log
        holds every log_every_n_steps-th step only and so misses the start. The logged values
        when the run logged no tau (its estimator reads none) or its schedule cannot be rebuilt."""
        logged = self.tau_curve
        if not logged or not self.tau_schedule:
            return logged
        try:
            schedule = build(self.tau_schedule)
        except (InstantiationException, ValueError, TypeError):  # a config of another version
            return logged
        last = max(max(logged), int(self.metrics.get("last_step", 0)) - 1)  # step t trains with tau(t)
        return {step: schedule(step) for step in range(last + 1)}

    def last_epoch_train_neg_elbo(self) -> float:
        """The training -ELBO (one sample per image) averaged over the rows of the last epoch."""
        train = self.curves.get("train/neg_elbo", {})
        last = max((self.epochs.get(step, -1) for step in train), default=-1)
        values = [v for step, v in train.items() if self.epochs.get(step, -1) == last]
        return statistics.fmean(values) if values else math.nan

    def last(self, metric: str) -> float:
        curve = self.curves.get(metric, {})
        return curve[max(curve)] if curve else math.nan

    def best(self, metric: str) -> float:
        """The lowest value the curve reached (every curve here is a loss)."""
        curve = self.curves.get(metric, {})
        return min(curve.values()) if curve else math.nan

    def last_step(self) -> int:
        """The last step any curve logged: how far a run still training has come."""
        return max((max(curve) for curve in self.curves.values() if curve), default=0)


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def shared_overrides(runs: list[RunRecord]) -> list[str]:
    """Overrides every run of the sweep has (the sweep's fixed settings)."""
    common = set(runs[0].overrides) if runs else set()
    for run in runs[1:]:
        common &= set(run.overrides)
    return sorted(common)


def _curves_from_csv(path: Path) -> tuple[dict[str, dict[int, float]], dict[int, int]]:
    curves: dict[str, dict[int, float]] = {name: {} for name in CURVES}
    epochs: dict[int, int] = {}
    with open(path) as f:
        for row in csv.DictReader(f):  # a step logged twice (a resumed run) keeps its last row
            if not row.get("step"):
                continue
            step = int(row["step"])
            for name in CURVES:
                if row.get(name):
                    curves[name][step] = float(row[name])
            if row.get("epoch") and row.get("train/neg_elbo"):
                epochs[step] = int(float(row["epoch"]))
    return curves, epochs


def _curves_from_wandb(paths: list[Path]) -> tuple[dict[str, dict[int, float]], dict[int, int]]:
    from vae.run.wandb_records import history

    curves: dict[str, dict[int, float]] = {name: {} for name in CURVES}
    epochs: dict[int, int] = {}
    for path in paths:  # every session of the run, in order (a resumed run has several)
        for row in history(path):
            step = row.get("trainer/global_step")
            if step is None:
                continue
            for name in CURVES:
                if name in row:
                    curves[name][int(step)] = float(row[name])
            if "epoch" in row and "train/neg_elbo" in row:
                epochs[int(step)] = int(row["epoch"])
    return curves, epochs


def _estimator_from_config(run: RunRecord, resolved: dict) -> None:
    """The estimator and its decoder passes per step, read from the run's config."""
    from vae.estimators import BINARY_ESTIMATORS, CATEGORICAL_ESTIMATORS, DISCRETE_ESTIMATORS

    spec = (resolved.get("model") or {}).get("estimator")
    name = spec.get("name") if isinstance(spec, dict) else spec
    estimator = {**BINARY_ESTIMATORS, **CATEGORICAL_ESTIMATORS, **DISCRETE_ESTIMATORS}.get(name)
    passes = getattr(estimator, "decoder_passes", None)
    if isinstance(passes, int):  # a class attribute (the exact sum sets its own per latent)
        run.metrics.update(estimator=name, decoder_passes=passes)


def _bound_from_evaluation(run: RunRecord) -> None:
    """The k-sample bound that vae.evaluate wrote beside the run's chosen checkpoint
    (<checkpoint>.eval-k<k>.json), the largest k, for a run trained without iw_samples."""
    checkpoint = Path(run.metrics["checkpoint"])
    found = []
    for path in checkpoint.parent.glob(f"{checkpoint.stem}.eval-k*.json"):
        k = path.stem.rsplit("-k", 1)[-1]
        if k.isdigit():
            found.append((int(k), path))
    if found:
        k, path = max(found)
        numbers = json.loads(path.read_text())
        if "test/nll_iw" in numbers:
            run.metrics.update({"test/nll_iw": numbers["test/nll_iw"], "iw_samples": k})


def load_run(path: Path) -> RunRecord:
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    run = RunRecord(path=path, overrides=list(overrides), status="running")
    config = path / "config.yaml"
    resolved = yaml.safe_load(config.read_text()) or {} if config.exists() else {}
    run.published = resolved.get("published") or {}
    run.selection = resolved.get("selection") or {}
    run.max_steps = int((resolved.get("trainer") or {}).get("max_steps") or -1)
    run.tau_schedule = resolved.get("tau") or {}
    if (path / "metrics.json").exists():
        run.status = "done"
        run.metrics = json.loads((path / "metrics.json").read_text())
        if "estimator" not in run.metrics:  # metrics.json of versions before it named the estimator
            _estimator_from_config(run, resolved)
        if "test/nll_iw" not in run.metrics and run.metrics.get("checkpoint"):
            _bound_from_evaluation(run)
    elif (path / "failed.json").exists():
        failure = json.loads((path / "failed.json").read_text())
        run.status, run.error = "failed", f"{failure['error']}: {failure['message']}"
    elif not held_by_a_process(path):
        run.status = "stopped"
    csv_log = path / "csv" / "metrics.csv"
    wandb_runs = sorted(
        path.glob("wandb/*run-*/run-*.wandb"), key=lambda p: p.parent.name.split("run-", 1)[1]
    )
    if csv_log.exists():
        run.curves, run.epochs = _curves_from_csv(csv_log)
    elif wandb_runs:
        run.curves, run.epochs = _curves_from_wandb(wandb_runs)
    return run


def collect(*sweep_dirs: Path) -> list[RunRecord]:
    """Every job below the sweep directories, in job order; configurations are the overrides that
    vary across all of them."""

    def job_order(job: Path) -> tuple[float, str]:  # Hydra numbers its jobs 0, 1, ..., 10: numerically
        return (int(job.name), "") if job.name.isdigit() else (math.inf, job.name)

    jobs = []
    for d in sweep_dirs:
        jobs += sorted({p.parent.parent for p in d.rglob(".hydra/overrides.yaml")}, key=job_order)
    runs = [load_run(job) for job in jobs]
    shared = set(shared_overrides(runs))
    for run in runs:
        varying = [
            o
            for o in run.overrides
            if o not in shared
            and _key(o) not in SEED_KEYS + IGNORED_KEYS
            and not _key(o).startswith("selection.")
        ]
        run.configuration = " ".join(sorted(varying)) or "(all runs alike)"
    return runs


def selected_rows(runs: list[RunRecord]) -> list[dict]:
    """The table of a sweep whose runs choose settings on validation (their config's
    `selection`): for each configuration, the runs at the chosen values only (every seed, in
    any of the sweep directories), and in `chosen` what was chosen from which values, by which
    validation number, over which rungs. The runs of other values are not reported; test
    numbers play no part in the choice."""
    choosing = [r for r in runs if r.selection.get("keys")]
    if not choosing:
        return []
    # The longest run's declaration: a search continued with a longer schedule (more rungs) records
    # it in the runs it continued.
    declared = max(choosing, key=lambda r: r.max_steps).selection
    keys = list(declared["keys"])
    metric = declared.get("metric") or "val/neg_elbo"
    max_steps = max(r.max_steps for r in choosing)
    rungs = selection_rungs(declared, max_steps)
    search = [r for r in runs if not r.selection.get("chosen_in")]
    jobs = [j for r in search if (j := Job.read(r.path, keys, metric)) is not None]
    chosen_runs, notes = [], {}
    for configuration, ladder in ladders(jobs, rungs, int(declared.get("keep") or 1), keys).items():
        choice = ladder.choice()
        if choice is None:
            continue
        members = [
            r
            for r in runs
            if configuration_of(r.overrides, keys) == configuration and values_of(r.overrides, keys) == choice
        ]
        for run in members:
            run.configuration = (
                " ".join(o for o in run.configuration.split(" ") if override_key(o) not in keys)
                or "(all runs alike)"
            )
        chosen_runs += members
        grid = sorted(ladder.candidates, key=lambda v: [float(x) if _is_float(x) else x for x in v])
        label = describe(keys, choice)
        tried = "; ".join(
            f"{len(level)} to {rung} steps" for level, rung in zip(ladder.kept(), rungs, strict=False)
        )
        values = ", ".join(",".join(v) for v in grid)
        notes[members[0].configuration if members else configuration] = (
            f"{label} of {len(grid)} ({values}) by {metric}: {tried}"
        )
    rows = summarize(chosen_runs)
    for row in rows:
        row["chosen"] = notes.get(row["configuration"], "")
    return rows


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    # One run has no spread: its std is NaN, and a table shows the value alone.
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else math.nan


def summarize(runs: list[RunRecord]) -> list[dict]:
    """One row per configuration: counts and mean/std of the reported numbers, best first."""
    groups: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        groups[run.configuration].append(run)
    rows = []
    for first_job, (configuration, members) in enumerate(groups.items()):
        done = [r for r in members if r.status == "done"]
        row = {
            "configuration": configuration,
            "first_job": first_job,  # the configurations' order in the sweeps
            "done": len(done),
            "failed": sum(r.status == "failed" for r in members),
            "unfinished": sum(r.status in UNFINISHED for r in members),
            "seeds": sorted(r.metrics.get("seed") for r in done),
            "published": members[0].published,
            "hardware": sorted({r.metrics["hardware"] for r in done if "hardware" in r.metrics}),
            "iw_samples": sorted({r.metrics["iw_samples"] for r in done if "iw_samples" in r.metrics}),
            "validation": sorted(
                {r.metrics.get("validation", "best of validations each epoch") for r in done}
            ),
            "steps": sorted({r.metrics["last_step"] for r in done if "last_step" in r.metrics}),
            "estimator": sorted(
                {
                    f"{r.metrics['estimator']} ({r.metrics['decoder_passes']})"
                    for r in done
                    if "estimator" in r.metrics
                }
            ),
            "train_last_epoch": _mean_std(
                [v for r in done if not math.isnan(v := r.last_epoch_train_neg_elbo())]
            ),
            "grad_variance": _mean_std(
                [v for r in done if not math.isnan(v := r.last("train/encoder_grad_variance"))]
            ),
        }
        for key in REPORTED:
            row[key] = _mean_std([r.metrics[key] for r in done if key in r.metrics])
        for key, curve in FROM_CURVES.items():
            row[key] = _mean_std([v for r in done if not math.isnan(v := r.best(curve))])
            # A long run not finished (training, or stopped to go on later): how far it has come,
            # and its best so far.
            row[f"{key} so far"] = [
                (r.status, r.last_step(), v)
                for r in members
                if r.status in UNFINISHED and not math.isnan(v := r.best(curve))
            ]
        rows.append(row)

    def rank(row: dict) -> tuple[float, float]:
        test, val = row["test/neg_elbo"][0], row["val/neg_elbo"][0]
        return (
            test if not math.isnan(test) else math.inf,
            val if not math.isnan(val) else math.inf,
        )

    return sorted(rows, key=rank)


def _cell(value: tuple[float, float], spec: str = ".2f") -> str:
    mean, std = value
    if math.isnan(mean):
        return "–"
    return f"{mean:{spec}}" if math.isnan(std) else f"{mean:{spec}} ± {std:{spec}}"


def _published(row: dict) -> str:
    published = row["published"]
    if not published:
        return "–"
    value = published.get("value")
    metric = published.get("metric", "")
    return f"{value} ({metric})" if value is not None else f"not quoted ({published.get('source', '')})"


def _joined(values: list) -> str:
    return ", ".join(map(str, values)) or "–"


def results_table(
    rows: list[dict], runs: list[RunRecord], sweep_dirs: list[Path], block: str = "results"
) -> str:
    """The README's results: measured beside published, with what the runs were; the test KL, the
    train -ELBO and the encoder gradient's variance when the runs logged them."""
    extra = [
        (key, title)
        for key, title in (
            ("test/kl", "test KL"),  # near 0: the posterior collapsed onto the prior
            ("train_last_epoch", "train −ELBO (last epoch)"),
            ("train_set/neg_elbo_best", "best train-set −ELBO"),
            ("grad_variance", "encoder grad variance (last)"),
        )
        if any(not math.isnan(row[key][0]) for row in rows)
    ]
    dirs = " ".join(str(d) for d in sweep_dirs)
    chosen = any(row.get("chosen") for row in rows)
    lines = [
        f"Measured by `python -m vae.report {dirs} --readme README.md --block {block}` from the runs of"
        f" `python train.py -m {' '.join([*shared_overrides(runs), '<configuration>'])} seed=...`.",
        "Mean ± std over seeds, nats per image, on the test images of the configuration's data, from the"
        " checkpoint the checkpoint column names; −ELBO with exact (one-hot, binary) samples, IW bound with"
        " k importance samples; the estimator with its decoder passes per image and step.",
        *compute_line(runs),
        "",
        "| configuration | estimator (passes) | steps | epochs | checkpoint | test −ELBO | test IW bound"
        + "".join(f" | {title}" for _, title in extra)
        + " | published | seeds | k | hardware |"
        + (" chosen on validation |" if chosen else ""),
        "|---|---|---|---|---|---|---|"
        + "---|" * len(extra)
        + "---|---|---|---|"
        + ("---|" if chosen else ""),
    ]
    for row in rows:
        epochs = row["epochs"][0]
        lines.append(
            f"| {row['configuration']} | {_joined(row['estimator'])} | {_joined(row['steps'])}"
            f" | {'–' if math.isnan(epochs) else f'{epochs:.0f}'} | {'; '.join(row['validation']) or '–'}"
            f" | {_cell(row['test/neg_elbo'])} | {_cell(row['test/nll_iw'])}"
            + "".join(f" | {_cell(row[key], '.4g' if key == 'grad_variance' else '.2f')}" for key, _ in extra)
            + f" | {_published(row)} | {_joined(row['seeds'])} | {_joined(row['iw_samples'])}"
            f" | {'; '.join(row['hardware']) or '–'} |" + (f" {row.get('chosen') or '–'} |" if chosen else "")
        )
    return "\n".join(lines) + "\n" + "".join("\n" + t for t in paper_tables(rows, planned_cells(sweep_dirs)))


def compute_line(runs: list[RunRecord]) -> list[str]:
    """What the finished runs of the directories cost (every value a search tried, every seed):
    the sum of their train_seconds (steps and validations over every resume; vae/run/fit.py) and
    evaluation_seconds, each run one process, and on what. The runs that predate the record, or
    resumed from a checkpoint that does, are counted apart: their untimed steps are estimated at
    the seconds per training step that the timed runs of their configuration measured (labelled
    an estimate), or said to be unknown where no run of it was timed."""
    finished = [r for r in runs if "last_step" in r.metrics]
    timed = [r for r in finished if "train_seconds" in r.metrics and not _untimed_steps(r)]
    if not finished:
        return []
    seconds = sum(r.metrics["train_seconds"] + r.metrics.get("evaluation_seconds", 0.0) for r in timed)
    hardware = sorted({r.metrics["hardware"] for r in finished if "hardware" in r.metrics})
    line = (
        f"Compute: {len(timed)} runs took {seconds / 3600:.1f} hours of training and evaluation together"
        f" (each its own process; {'; '.join(hardware) or 'hardware not recorded'})"
    )
    untimed = [r for r in finished if r not in timed]
    if not untimed:
        return [line + "."]
    if not timed:
        return [
            f"Compute: not recorded by the {len(untimed)} runs here (they, or the checkpoints they went on"
            f" from, predate the record; {'; '.join(hardware) or 'hardware not recorded'})."
        ]
    rates: dict[tuple[str, ...], list[float]] = defaultdict(list)  # seconds per step, by configuration
    for r in timed:
        if r.metrics["last_step"] > 0:
            rates[_cost_key(r)].append(r.metrics["train_seconds"] / r.metrics["last_step"])
    estimated, unknown = 0.0, 0
    for r in untimed:
        if rates.get(_cost_key(r)):
            estimated += statistics.median(rates[_cost_key(r)]) * _untimed_steps(r)
        else:
            unknown += 1
    line += (
        f"; {len(untimed)} more run{'s' * (len(untimed) > 1)} did not record all their time (they, or the"
        " checkpoints they went on from, predate the record)"
    )
    if unknown < len(untimed):
        line += (
            f": about {estimated / 3600:.1f} hours more of training (an estimate: their untimed steps at"
            " the seconds per step that the timed runs of their configuration took"
            + (f"; {unknown} with no timed run of their configuration not counted" if unknown else "")
            + ")"
        )
    return [line + "."]


def _untimed_steps(run: RunRecord) -> int:
    """The steps of a finished run that its train_seconds leaves out (all of them without it)."""
    if "train_seconds" not in run.metrics:
        return int(run.metrics["last_step"])
    return int(run.metrics.get("train_seconds_untimed_steps") or 0)


def _cost_key(run: RunRecord) -> tuple[str, ...]:
    """What sets a run's cost per step: its overrides less its seed and the values its selection
    chose among (a learning rate does not change what a step computes)."""
    chosen = set((run.selection or {}).get("keys") or [])
    return tuple(
        sorted(
            o
            for o in run.overrides
            if _key(o) not in SEED_KEYS and _key(o) not in chosen and not _key(o).startswith("selection.")
        )
    )


def planned_cells(sweep_dirs: list[Path]) -> list[dict]:
    """The `published` nodes of the config-group options a sweep was launched over (its
    multirun.yaml's sweeper params and command line, e.g. +jang2017_table1=bernoulli_sf,...), so that a paper
    table shows the cells no run has reached yet, with their published numbers."""
    planned = []
    for sweep_dir in sweep_dirs:
        for group_name, options in (swept_values(sweep_dir) or {}).items():
            group = CONFIGS / group_name
            if not group.is_dir():
                continue
            for option in options:
                option_file = group / f"{option}.yaml"
                if option_file.exists():
                    published = (yaml.safe_load(option_file.read_text()) or {}).get("published") or {}
                    if {"table", "row", "column"} <= set(published):
                        planned.append(published)
    return planned


def paper_tables(rows: list[dict], planned: list[dict] = ()) -> list[str]:
    """Rows whose configs name a paper's table cell (published: table, row, column), in the
    paper's layout: the measured number (mean ± std over seeds) beside the published one; the
    planned cells (published nodes) that no row holds yet show their published number alone."""
    tables: dict[str, dict[tuple[str, str], dict]] = defaultdict(dict)
    for published in planned:  # the sweep's order of rows and columns, run or not
        tables[published["table"]][published["row"], published["column"]] = {"published": published}
    for row in sorted(rows, key=lambda r: r["first_job"]):  # the rows and columns in the sweep's order
        published = row["published"] or {}
        if {"table", "row", "column"} <= set(published):
            tables[published["table"]][published["row"], published["column"]] = row
    rendered = []
    for name, cells in tables.items():
        row_names = list(dict.fromkeys(r for r, _ in cells))
        columns = list(dict.fromkeys(c for _, c in cells))
        metric = next(iter(cells.values()))["published"]["metric"]
        lines = [
            f"{name}, measured (published), {metric}, nats:",
            "",
            f"| {next(iter(cells.values()))['published'].get('row_title', 'latent')} | "
            + " | ".join(columns)
            + " |",
            "|---|" + "---|" * len(columns),
        ]
        for row_name in row_names:
            parts = []
            for column in columns:
                cell = cells.get((row_name, column))
                if cell is None:
                    parts.append("–")
                    continue
                measured = _cell(cell[metric]) if metric in cell else "–"
                if measured == "–" and cell.get(f"{metric} so far"):  # not finished: where it is
                    measured = ", ".join(
                        f"{status}: {value:.2f} at step {step}"
                        for status, step, value in cell[f"{metric} so far"]
                    )
                parts.append(f"{measured} ({cell['published'].get('value')})")
            lines.append(f"| {row_name} | " + " | ".join(parts) + " |")
        rendered.append("\n".join(lines) + "\n")
    return rendered


def update_readme(readme: Path, text: str, block: str = "results") -> None:
    """Replace the text between the README's <!-- block:begin --> and <!-- block:end --> markers."""
    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    content = readme.read_text()
    if begin not in content or end not in content:
        raise FileNotFoundError(f"{readme}: no '{begin}' ... '{end}' block to replace")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{text}{end}{tail}")


def markdown(rows: list[dict], runs: list[RunRecord], sweep_dir: Path) -> str:
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        "Mean ± std over seeds, nats per image; test and val −ELBO with exact (one-hot, binary) samples for a"
        " discrete latent, from the checkpoint each run chose (the checkpoint column). Best first.",
        "",
        f"Settings shared by every run: `{' '.join(shared_overrides(runs)) or '(none)'}`",
        "",
        "| configuration | checkpoint | test −ELBO | test IW bound | published | val −ELBO"
        " | test −ELBO relaxed | test KL | seeds | done | failed | unfinished |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['configuration']} | {'; '.join(row['validation']) or '–'}"
            f" | {_cell(row['test/neg_elbo'])} | {_cell(row['test/nll_iw'])}"
            f" | {_published(row)} | {_cell(row['val/neg_elbo'])}"
            f" | {_cell(row['test/neg_elbo_relaxed'])} | {_cell(row['test/kl'])}"
            f" | {', '.join(map(str, row['seeds'])) or '–'} | {row['done']} | {row['failed']}"
            f" | {row['unfinished']} |"
        )
    problems = [r for r in runs if r.status != "done"]
    if problems:
        lines += ["", "## Runs not finished", ""]
        for run in problems:
            detail = f": {run.error}" if run.error else _unfinished_detail(run)
            lines.append(f"- `{run.path.name}` {' '.join(run.overrides)}: **{run.status}**{detail}")
    return "\n".join(lines) + "\n"


def _unfinished_detail(run: RunRecord) -> str:
    where = f" at step {step}" if (step := run.last_step()) else ""
    if run.status == "running":
        return f" (no metrics.json yet; logged up to step {step})" if where else " (no metrics.json yet)"
    return f"{where}: the sweep's command, run again, goes on with it (from its last.ckpt, if it wrote one)"


def _band(curves: list[dict[int, float]]) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over runs at the steps every run has reached."""
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    means, stds = [], []
    for step in steps:
        mean, std = _mean_std([c[step] for c in curves])
        means.append(mean)
        stds.append(0.0 if math.isnan(std) else std)
    return steps, means, stds


def plot(rows: list[dict], runs: list[RunRecord], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_config: dict[str, list[RunRecord]] = defaultdict(list)
    for run in runs:
        by_config[run.configuration].append(run)
    order = [row["configuration"] for row in rows]
    written = []

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for configuration in order:
        steps, mean, std = _band([r.val_curve for r in by_config[configuration] if r.val_curve])
        if steps:
            (line,) = ax.plot(steps, mean, marker="o", label=configuration)
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set(
        xlabel="global step",
        ylabel="val −ELBO (nats)",
        title="Validation −ELBO, mean ± std over seeds",
    )
    if ax.get_legend_handles_labels()[0]:  # runs without a validation yet draw no line
        ax.legend(fontsize=7)
    written.append(_save(fig, out / "val_neg_elbo.png"))

    if any(r.tau_curve for r in runs):  # the score-function and ARM-type estimators log no tau
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for configuration in order:
            curves = [r.tau_over_steps() for r in by_config[configuration] if r.tau_curve]
            if curves:
                longest = max(curves, key=len)
                ax.plot(sorted(longest), [longest[s] for s in sorted(longest)], label=configuration)
        ax.set(xlabel="global step", ylabel="τ", title="Temperature schedule")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / "tau.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    finished = [row for row in rows if not math.isnan(row["test/neg_elbo"][0])]
    spread = [0.0 if math.isnan(row["test/neg_elbo"][1]) else row["test/neg_elbo"][1] for row in finished]
    ax.bar(
        range(len(finished)),
        [row["test/neg_elbo"][0] for row in finished],
        yerr=spread,
        capsize=4,
    )
    ax.set_xticks(
        range(len(finished)),
        [row["configuration"] for row in finished],
        rotation=20,
        ha="right",
        fontsize=7,
    )
    if finished:
        low = min(r["test/neg_elbo"][0] - e for r, e in zip(finished, spread, strict=True))
        high = max(r["test/neg_elbo"][0] + e for r, e in zip(finished, spread, strict=True))
        ax.set_ylim(low - 0.5 * (high - low + 1), high + 0.5 * (high - low + 1))
    ax.set(ylabel="test −ELBO (nats)", title="Final test −ELBO, mean ± std over seeds")
    written.append(_save(fig, out / "test_neg_elbo.png"))

    if any(r.curves.get("train/encoder_grad_variance") for r in runs):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for configuration in order:
            curves = [
                c for r in by_config[configuration] if (c := r.curves.get("train/encoder_grad_variance"))
            ]
            steps, mean, _ = _band(curves)
            if steps:
                ax.plot(steps, mean, marker=".", label=configuration)
        ax.set_yscale("log")
        ax.set(xlabel="global step", ylabel="variance", title="Encoder gradient variance, mean over seeds")
        ax.legend(fontsize=7)
        written.append(_save(fig, out / "grad_variance.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def report(
    sweep_dir: Path | list[Path], out: Path | None = None, readme: Path | None = None, block: str = "results"
) -> dict[str, Path]:
    """Write report.md and the plots for one or more sweep directories (and the README's block
    of results); returns their paths. With several, out defaults to the first."""
    sweep_dirs = [sweep_dir] if isinstance(sweep_dir, Path) else list(sweep_dir)
    for d in sweep_dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"{d}: no such sweep directory")
    runs = collect(*sweep_dirs)
    if not runs:
        names = " ".join(str(d) for d in sweep_dirs)
        raise FileNotFoundError(f"{names}: no runs (folders with .hydra/overrides.yaml) below it")
    out = out or sweep_dirs[0]
    out.mkdir(parents=True, exist_ok=True)
    rows = selected_rows(runs) or summarize(runs)
    table = out / "report.md"
    tables = "".join("\n" + t for t in paper_tables(rows, planned_cells(sweep_dirs)))
    table.write_text(markdown(rows, runs, sweep_dirs[0]) + tables)
    plots = plot(rows, runs, out)
    if readme is not None:
        update_readme(readme, results_table(rows, runs, sweep_dirs, block), block)
    return {"table": table, **{p.stem: p for p in plots}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vae.report", description=__doc__.split("\n")[0])
    parser.add_argument(
        "sweep_dirs", type=Path, nargs="+", help="multirun directories, e.g. runs/multirun/<date>"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="where to write (default: the first sweep_dir)"
    )
    parser.add_argument(
        "--readme", type=Path, default=None, help="also write the results table into this README"
    )
    parser.add_argument(
        "--block", default="results", help="the README's <!-- BLOCK:begin --> ... <!-- BLOCK:end --> to fill"
    )
    args = parser.parse_args(argv)
    try:
        written = report(args.sweep_dirs, args.out, args.readme, args.block)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"Wrote {', '.join(p.name for p in written.values())} to {written['table'].parent}")
    print(written["table"].read_text())


if __name__ == "__main__":
    main()
