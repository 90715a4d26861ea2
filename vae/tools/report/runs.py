"""A sweep's run directories read back: overrides, status, metrics.json and the logged curves."""

from __future__ import annotations

import csv
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from hydra.errors import InstantiationException

from vae.config import build
from vae.run.lock import held_by_a_process
from vae.run.selection import override_key, sets_what_the_run_is

CURVES = ("val/neg_elbo", "train/tau", "train/neg_elbo", "train/encoder_grad_variance", "train_set/neg_elbo")
UNFINISHED = ("running", "stopped")  # the statuses of a run without metrics.json


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
    if "last_step" in run.metrics:
        # The chosen checkpoint's validation after training (vae/run/fit.py: trainer.validate) is
        # logged at the last step, where no validation during training logs (they log at the step
        # before theirs): the checkpoint's numbers again, not a point of the curve.
        last = int(run.metrics["last_step"])
        run.curves["val/neg_elbo"] = {s: v for s, v in run.val_curve.items() if s < last}
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
        varying = [o for o in run.overrides if o not in shared and sets_what_the_run_is(override_key(o))]
        run.configuration = " ".join(sorted(varying)) or "(all runs alike)"
    return runs
