"""The report's tables: per configuration over seeds (a search's chosen values alone), the
README block with what the runs cost, and the papers' tables laid out as published."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from pathlib import Path

import yaml

from vae.config import CONFIG_DIR
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
from vae.tools.report.runs import UNFINISHED, RunRecord, shared_overrides

CONFIGS = CONFIG_DIR  # where a sweep's config groups live
REPORTED = ("test/neg_elbo", "test/nll_iw", "val/neg_elbo", "test/neg_elbo_relaxed", "test/kl", "epochs")
# Numbers taken from a curve rather than from metrics.json: name -> the curve (its best is its min).
FROM_CURVES = {"train_set/neg_elbo_best": "train_set/neg_elbo"}  # the RELAX paper's "highest training ELBO"


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


def mean_std(values: list[float]) -> tuple[float, float]:
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
        recorded = [r for r in done if "latent/in_use" in r.metrics]  # Latent.health, since it was recorded
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
            # The step of the weights the checkpoint column chose, per seed: far below the last step,
            # validation stopped improving early.
            "checkpoint_steps": [
                r.metrics["global_step"] for r in sorted(done, key=_seed) if "global_step" in r.metrics
            ],
            "estimator": sorted(
                {
                    f"{r.metrics['estimator']} ({r.metrics['decoder_passes']})"
                    for r in done
                    if "estimator" in r.metrics
                }
            ),
            "train_last_epoch": mean_std(
                [v for r in done if not math.isnan(v := r.last_epoch_train_neg_elbo())]
            ),
            "grad_variance": mean_std(
                [v for r in done if not math.isnan(v := r.last("train/encoder_grad_variance"))]
            ),
            "in_use": mean_std([r.metrics["latent/in_use"] for r in recorded]),
            "in_use_of": sorted({r.metrics["latent/coordinates"] for r in recorded}),
            "in_use_seeds": sorted(r.metrics.get("seed") for r in recorded),
        }
        for key in REPORTED:
            row[key] = mean_std([r.metrics[key] for r in done if key in r.metrics])
        for key, curve in FROM_CURVES.items():
            row[key] = mean_std([v for r in done if not math.isnan(v := r.best(curve))])
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


def _seed(run: RunRecord) -> float:
    seed = run.metrics.get("seed")
    return seed if isinstance(seed, int | float) else math.inf


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
            ("in_use", "latent in use"),
        )
        if any(not math.isnan(row[key][0]) for row in rows)
    ]
    dirs = " ".join(str(d) for d in sweep_dirs)
    chosen = any(row.get("chosen") for row in rows)
    lines = [
        f"Measured by `python -m vae.report {dirs} --readme README.md --block {block}` from the runs of"
        f" `python train.py -m {' '.join([*shared_overrides(runs), '<configuration>'])} seed=...`.",
        "Mean ± std over seeds, nats per image, on the test images of the configuration's data, from the"
        " checkpoint the checkpoint column names (its step: where its weights are from, per seed);"
        " −ELBO with exact (one-hot, binary) samples, IW bound with"
        " k importance samples; the estimator with its decoder passes per image and step.",
        *compute_line(runs),
        "",
        "| configuration | estimator (passes) | steps | epochs | checkpoint | its step"
        " | test −ELBO | test IW bound"
        + "".join(f" | {title}" for _, title in extra)
        + " | published | seeds | k | hardware |"
        + (" chosen on validation |" if chosen else ""),
        "|---|---|---|---|---|---|---|---|"
        + "---|" * len(extra)
        + "---|---|---|---|"
        + ("---|" if chosen else ""),
    ]
    for row in rows:
        epochs = row["epochs"][0]
        lines.append(
            f"| {row['configuration']} | {_joined(row['estimator'])} | {_joined(row['steps'])}"
            f" | {'–' if math.isnan(epochs) else f'{epochs:.0f}'} | {'; '.join(row['validation']) or '–'}"
            f" | {_joined(row['checkpoint_steps'])}"
            f" | {_cell(row['test/neg_elbo'])} | {_cell(row['test/nll_iw'])}"
            + "".join(f" | {_extra_cell(row, key)}" for key, _ in extra)
            + f" | {_published(row)} | {_joined(row['seeds'])} | {_joined(row['iw_samples'])}"
            f" | {'; '.join(row['hardware']) or '–'} |" + (f" {row.get('chosen') or '–'} |" if chosen else "")
        )
    return "\n".join(lines) + "\n" + "".join("\n" + t for t in paper_tables(rows, planned_cells(sweep_dirs)))


def _extra_cell(row: dict, key: str) -> str:
    if key == "grad_variance":
        return _cell(row[key], ".4g")
    if key != "in_use":
        return _cell(row[key])
    if math.isnan(row["in_use"][0]):
        return "–"
    # How many latent coordinates carry information about x (Latent.health: active bits, variables
    # that do not ignore x, active units), of how many; the seeds that recorded it where not all did.
    text = f"{_cell(row['in_use'], '.0f')} of {_joined(row['in_use_of'])}"
    seeds = row["in_use_seeds"]
    return text if seeds == row["seeds"] else f"{text} (seed{'s' * (len(seeds) > 1)} {_joined(seeds)})"


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
    rates: dict[str, list[float]] = defaultdict(list)  # seconds per step, by configuration
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


def _cost_key(run: RunRecord) -> str:
    """What sets a run's cost per step: its configuration less the values its selection chose
    among (a learning rate does not change what a step computes)."""
    return configuration_of(run.overrides, (run.selection or {}).get("keys") or [])


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
                published = _published_of(group, option)
                if {"table", "row", "column"} <= set(published):
                    planned.append(published)
    return planned


def _published_of(group: Path, option: str) -> dict:
    """The `published` node of a config-group option as Hydra composes it: merged over those of
    the options of its own group that its defaults list names (nonlinear_rebar takes its table and
    column from linear_rebar), in the list's order, its own at `_self_` (last when not listed)."""
    option_file = group / f"{option}.yaml"
    if not option_file.exists():
        return {}
    node = yaml.safe_load(option_file.read_text()) or {}
    defaults = list(node.get("defaults") or [])
    if "_self_" not in defaults:
        defaults.append("_self_")
    published: dict = {}
    for entry in defaults:  # dict entries name other groups (override /model/estimator: ...)
        if entry == "_self_":
            published.update(node.get("published") or {})
        elif isinstance(entry, str):
            published.update(_published_of(group, entry))
    return published


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
                        f"{status} at step {step}: best so far {value:.2f}"
                        for status, step, value in cell[f"{metric} so far"]
                    )
                parts.append(f"{measured} ({cell['published'].get('value')})")
            lines.append(f"| {row_name} | " + " | ".join(parts) + " |")
        rendered.append("\n".join(lines) + "\n")
    return rendered


def markdown(rows: list[dict], runs: list[RunRecord], sweep_dir: Path) -> str:
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        "Mean ± std over seeds, nats per image; test and val −ELBO with exact (one-hot, binary) samples for a"
        " discrete latent, from the checkpoint each run chose (the checkpoint column). Best first.",
        "",
        f"Settings shared by every run: `{' '.join(shared_overrides(runs)) or '(none)'}`",
        "",
        "| configuration | checkpoint | its step | test −ELBO | test IW bound | published | val −ELBO"
        " | test −ELBO relaxed | test KL | seeds | done | failed | unfinished |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['configuration']} | {'; '.join(row['validation']) or '–'}"
            f" | {_joined(row['checkpoint_steps'])}"
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
