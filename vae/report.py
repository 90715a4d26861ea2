"""python -m vae.report SWEEP_DIR: one table and three plots for a sweep of train.py runs.

Collects every job under SWEEP_DIR (a folder holding `.hydra/overrides.yaml`): its overrides,
its status (done: metrics.json; failed: failed.json; else running or killed), its final
val/test numbers, and its curves (val -ELBO and tau over steps) from the CSV log or, failing
that, the W&B run file. Runs are grouped into configurations by their overrides less the seed.

Writes to SWEEP_DIR (or --out):
- report.md: per configuration, mean +- std over seeds of the final numbers, best first, beside
  the published number when the run's config carries one (experiment=jang2017 and the like);
- val_neg_elbo.png: val -ELBO over steps, mean with a +-1 std band over seeds;
- tau.png: the tau each configuration trained with, over steps;
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

SEED_KEYS = ("seed",)
IGNORED_KEYS = ("ckpt_path", "hydra.run.dir", "hydra.sweep.dir")  # where a run was, not what it was
REPORTED = ("test/neg_elbo", "test/nll_iw", "val/neg_elbo", "test/neg_elbo_relaxed", "test/kl", "epochs")
README_BEGIN, README_END = "<!-- results:begin -->", "<!-- results:end -->"


@dataclass
class Run:
    path: Path
    overrides: list[str]
    status: str  # done | failed | running
    metrics: dict[str, float] = field(default_factory=dict)
    error: str = ""
    val_curve: dict[int, float] = field(default_factory=dict)  # step -> val/neg_elbo
    tau_curve: dict[int, float] = field(default_factory=dict)  # step -> train/tau
    configuration: str = ""  # the overrides that vary across the sweep, less the seed
    published: dict = field(default_factory=dict)  # the config's `published` node, if any


def _key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def shared_overrides(runs: list[Run]) -> list[str]:
    """Overrides every run of the sweep has (the sweep's fixed settings)."""
    common = set(runs[0].overrides) if runs else set()
    for run in runs[1:]:
        common &= set(run.overrides)
    return sorted(common)


def _curves_from_csv(path: Path) -> tuple[dict[int, float], dict[int, float]]:
    val, tau = {}, {}
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row["step"]) if row.get("step") else None
            if step is None:
                continue
            if row.get("val/neg_elbo"):
                val[step] = float(row["val/neg_elbo"])
            if row.get("train/tau"):
                tau[step] = float(row["train/tau"])
    return val, tau


def _curves_from_wandb(path: Path) -> tuple[dict[int, float], dict[int, float]]:
    from vae.wandb_records import history

    val, tau = {}, {}
    for row in history(path):
        step = row.get("trainer/global_step")
        if step is None:
            continue
        if "val/neg_elbo" in row:
            val[int(step)] = float(row["val/neg_elbo"])
        if "train/tau" in row:
            tau[int(step)] = float(row["train/tau"])
    return val, tau


def load_run(path: Path) -> Run:
    overrides = yaml.safe_load((path / ".hydra" / "overrides.yaml").read_text()) or []
    run = Run(path=path, overrides=list(overrides), status="running")
    config = path / "config.yaml"
    if config.exists():
        run.published = (yaml.safe_load(config.read_text()) or {}).get("published") or {}
    if (path / "metrics.json").exists():
        run.status = "done"
        run.metrics = json.loads((path / "metrics.json").read_text())
    elif (path / "failed.json").exists():
        failure = json.loads((path / "failed.json").read_text())
        run.status, run.error = "failed", f"{failure['error']}: {failure['message']}"
    csv_log = path / "csv" / "metrics.csv"
    wandb_runs = sorted(path.glob("wandb/*run-*/run-*.wandb"))
    if csv_log.exists():
        run.val_curve, run.tau_curve = _curves_from_csv(csv_log)
    elif wandb_runs:
        run.val_curve, run.tau_curve = _curves_from_wandb(wandb_runs[0])
    return run


def collect(sweep_dir: Path) -> list[Run]:
    """Every job below sweep_dir, in job order."""
    jobs = sorted(p.parent.parent for p in sweep_dir.rglob(".hydra/overrides.yaml"))
    runs = [load_run(job) for job in jobs]
    shared = set(shared_overrides(runs))
    for run in runs:
        varying = [o for o in run.overrides if o not in shared and _key(o) not in SEED_KEYS + IGNORED_KEYS]
        run.configuration = " ".join(sorted(varying)) or "(all runs alike)"
    return runs


def _mean_std(values: list[float]) -> tuple[float, float]:
    if not values:
        return math.nan, math.nan
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def summarize(runs: list[Run]) -> list[dict]:
    """One row per configuration: counts and mean/std of the reported numbers, best first."""
    groups: dict[str, list[Run]] = defaultdict(list)
    for run in runs:
        groups[run.configuration].append(run)
    rows = []
    for configuration, members in groups.items():
        done = [r for r in members if r.status == "done"]
        row = {
            "configuration": configuration,
            "done": len(done),
            "failed": sum(r.status == "failed" for r in members),
            "running": sum(r.status == "running" for r in members),
            "seeds": sorted(r.metrics.get("seed") for r in done),
            "published": members[0].published,
            "hardware": sorted({r.metrics["hardware"] for r in done if "hardware" in r.metrics}),
            "iw_samples": sorted({r.metrics["iw_samples"] for r in done if "iw_samples" in r.metrics}),
            "validation": sorted(
                {r.metrics.get("validation", "best of validations each epoch") for r in done}
            ),
            "steps": sorted({r.metrics["last_step"] for r in done if "last_step" in r.metrics}),
        }
        for key in REPORTED:
            row[key] = _mean_std([r.metrics[key] for r in done if key in r.metrics])
        rows.append(row)

    def rank(row: dict) -> tuple[float, float]:
        test, val = row["test/neg_elbo"][0], row["val/neg_elbo"][0]
        return (
            test if not math.isnan(test) else math.inf,
            val if not math.isnan(val) else math.inf,
        )

    return sorted(rows, key=rank)


def _cell(value: tuple[float, float]) -> str:
    mean, std = value
    return "–" if math.isnan(mean) else f"{mean:.2f} ± {std:.2f}"


def _published(row: dict) -> str:
    published = row["published"]
    if not published:
        return "–"
    value = published.get("value")
    metric = published.get("metric", "")
    return f"{value} ({metric})" if value is not None else f"not quoted ({published.get('source', '')})"


def results_table(rows: list[dict], runs: list[Run], sweep_dir: Path) -> str:
    """The README's results: measured beside published, with what the runs were."""
    lines = [
        f"Measured by `python -m vae.report {sweep_dir} --readme README.md` from the runs of"
        f" `python train.py -m {' '.join(shared_overrides(runs))} <configuration> seed=...`.",
        "Mean ± std over seeds, nats per image, on the test images of the configuration's data, from the"
        " checkpoint the checkpoint column names; −ELBO with one-hot samples, IW bound with k importance"
        " samples.",
        "",
        "| configuration | steps | epochs | checkpoint | test −ELBO | test IW bound | published | seeds | k"
        " | hardware |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        epochs = row["epochs"][0]
        lines.append(
            f"| {row['configuration']} | {', '.join(map(str, row['steps'])) or '–'}"
            f" | {'–' if math.isnan(epochs) else f'{epochs:.0f}'} | {'; '.join(row['validation']) or '–'}"
            f" | {_cell(row['test/neg_elbo'])} | {_cell(row['test/nll_iw'])} | {_published(row)}"
            f" | {', '.join(map(str, row['seeds'])) or '–'} | {', '.join(map(str, row['iw_samples'])) or '–'}"
            f" | {'; '.join(row['hardware']) or '–'} |"
        )
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, table: str) -> None:
    """Replace the text between the README's results markers with `table`."""
    text = readme.read_text()
    if README_BEGIN not in text or README_END not in text:
        raise FileNotFoundError(f"{readme}: no '{README_BEGIN}' ... '{README_END}' block to replace")
    head, rest = text.split(README_BEGIN, 1)
    _, tail = rest.split(README_END, 1)
    readme.write_text(f"{head}{README_BEGIN}\n{table}{README_END}{tail}")


def markdown(rows: list[dict], runs: list[Run], sweep_dir: Path) -> str:
    lines = [
        f"# Sweep report: {sweep_dir}",
        "",
        "Mean ± std over seeds, nats per image; test and val −ELBO with one-hot samples for a"
        " discrete latent, from the checkpoint each run chose (the checkpoint column). Best first.",
        "",
        f"Settings shared by every run: `{' '.join(shared_overrides(runs)) or '(none)'}`",
        "",
        "| configuration | checkpoint | test −ELBO | test IW bound | published | val −ELBO"
        " | test −ELBO relaxed | test KL | seeds | done | failed | running |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row['configuration']} | {'; '.join(row['validation']) or '–'}"
            f" | {_cell(row['test/neg_elbo'])} | {_cell(row['test/nll_iw'])}"
            f" | {_published(row)} | {_cell(row['val/neg_elbo'])}"
            f" | {_cell(row['test/neg_elbo_relaxed'])} | {_cell(row['test/kl'])}"
            f" | {', '.join(map(str, row['seeds'])) or '–'} | {row['done']} | {row['failed']}"
            f" | {row['running']} |"
        )
    problems = [r for r in runs if r.status != "done"]
    if problems:
        lines += ["", "## Runs not finished", ""]
        for run in problems:
            detail = f": {run.error}" if run.error else " (no metrics.json yet)"
            lines.append(f"- `{run.path.name}` {' '.join(run.overrides)}: **{run.status}**{detail}")
    return "\n".join(lines) + "\n"


def _band(curves: list[dict[int, float]]) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over runs at the steps every run has reached."""
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    means, stds = [], []
    for step in steps:
        mean, std = _mean_std([c[step] for c in curves])
        means.append(mean)
        stds.append(std)
    return steps, means, stds


def plot(rows: list[dict], runs: list[Run], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by_config: dict[str, list[Run]] = defaultdict(list)
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
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "val_neg_elbo.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for configuration in order:
        curves = [r.tau_curve for r in by_config[configuration] if r.tau_curve]
        if curves:
            longest = max(curves, key=len)
            ax.plot(sorted(longest), [longest[s] for s in sorted(longest)], label=configuration)
    ax.set(xlabel="global step", ylabel="τ", title="Temperature schedule")
    ax.legend(fontsize=7)
    written.append(_save(fig, out / "tau.png"))

    fig, ax = plt.subplots(figsize=(7, 4.5))
    finished = [row for row in rows if not math.isnan(row["test/neg_elbo"][0])]
    ax.bar(
        range(len(finished)),
        [row["test/neg_elbo"][0] for row in finished],
        yerr=[row["test/neg_elbo"][1] for row in finished],
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
        low = min(r["test/neg_elbo"][0] - r["test/neg_elbo"][1] for r in finished)
        high = max(r["test/neg_elbo"][0] + r["test/neg_elbo"][1] for r in finished)
        ax.set_ylim(low - 0.5 * (high - low + 1), high + 0.5 * (high - low + 1))
    ax.set(ylabel="test −ELBO (nats)", title="Final test −ELBO, mean ± std over seeds")
    written.append(_save(fig, out / "test_neg_elbo.png"))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def report(sweep_dir: Path, out: Path | None = None, readme: Path | None = None) -> dict[str, Path]:
    """Write report.md and the plots for sweep_dir (and the README's results); returns their paths."""
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep directory")
    runs = collect(sweep_dir)
    if not runs:
        raise FileNotFoundError(f"{sweep_dir}: no runs (folders with .hydra/overrides.yaml) below it")
    out = out or sweep_dir
    out.mkdir(parents=True, exist_ok=True)
    rows = summarize(runs)
    table = out / "report.md"
    table.write_text(markdown(rows, runs, sweep_dir))
    plots = plot(rows, runs, out)
    if readme is not None:
        update_readme(readme, results_table(rows, runs, sweep_dir))
    return {"table": table, **{p.stem: p for p in plots}}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vae.report", description=__doc__.split("\n")[0])
    parser.add_argument("sweep_dir", type=Path, help="a multirun directory, e.g. runs/multirun/<date>")
    parser.add_argument("--out", type=Path, default=None, help="where to write (default: sweep_dir)")
    parser.add_argument(
        "--readme", type=Path, default=None, help="also write the results table into this README"
    )
    args = parser.parse_args(argv)
    try:
        written = report(args.sweep_dir, args.out, args.readme)
    except FileNotFoundError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"Wrote {', '.join(p.name for p in written.values())} to {written['table'].parent}")
    print(written["table"].read_text())


if __name__ == "__main__":
    main()
