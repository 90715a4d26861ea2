"""Choosing settings on validation: successive halving over a sweep's selection keys, then the
runs of other seeds at the chosen values. Test numbers are never read here.

An experiment (or the command line) declares what is chosen (configs/train.yaml, `selection`):

    selection:
      keys: [optimizer.lr]     # the settings chosen, for each configuration
      metric: val/neg_elbo     # a validation number; lower is better
      rungs: [10000]           # steps at which the candidates are compared before trainer.max_steps
      keep: 2                  # how many values go on from each rung
      chosen_in: null          # a sweep directory: run only the values chosen there

A *configuration* is a job's overrides less the selection keys, the seed, and where the run is
(ckpt_path, the run and sweep directories, selection.*). Its *candidates* are the values of the
keys the sweep launches (its multirun.yaml: the sweeper's params and the command line, expanded as
Hydra's BasicSweeper expands them), with any other values its jobs were given; so a sweep stopped
before some of its jobs started decides nothing until they have run too.

Every candidate trains to the first rung; once all are there, the `keep` best by the metric (the
mean over the seeds every candidate has) go on to the next rung from their own last.ckpt (no step
is repeated), and so on to trainer.max_steps; the choice is the best at the last rung. A job that
reaches a rung before its rivals stops there; running the same multirun command again moves every
job as far as the others allow (so: run it until no job says it is waiting). With `chosen_in`, a
job runs to trainer.max_steps only if its values are the ones chosen in that sweep (other seeds of
the chosen setting), and is skipped otherwise.

What each job did is in its directory: rungs.json (its validation numbers at each rung it
finished) and selection.json (why it stopped, or waits).
"""

from __future__ import annotations

import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser

from vae.run.checks import may_change_on_resume

SEED_KEYS = ("seed",)
# Where a run was, and how it was chosen: not what it was.
WHERE_KEYS = ("ckpt_path", "hydra.run.dir", "hydra.sweep.dir", "data.root", "paths.log_dir")
# What a resumed run may change that still makes other numbers: its length, its final test.
LENGTH_AND_TEST_KEYS = ("trainer.max_steps", "trainer.max_epochs", "test", "iw_samples")
RUNGS_FILE = "rungs.json"
STATUS_FILE = "selection.json"


def override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("+~")


def override_value(override: str) -> str:
    return override.split("=", 1)[1] if "=" in override else ""


def sets_what_the_run_is(key: str) -> bool:
    """Whether an override of this key makes another run: not the seed, where the run is, how it
    was chosen, nor the rest of what a resumed run may change but its length and its final test
    (logging, callbacks, hardware: a progress bar turned off does not make another configuration)."""
    if key in SEED_KEYS or key in WHERE_KEYS:
        return False  # selection.* is among what a resumed run may change
    return key in LENGTH_AND_TEST_KEYS or not may_change_on_resume(key)


def configuration_of(overrides: list[str], keys: list[str]) -> str:
    """The overrides that make a configuration: those that set what the run is, less the
    selection keys."""
    kept = [o for o in overrides if override_key(o) not in keys and sets_what_the_run_is(override_key(o))]
    return " ".join(sorted(kept))


def describe(keys: list[str], values: tuple[str, ...]) -> str:
    """'optimizer.lr=3e-4' for keys and their values."""
    return ", ".join(f"{k}={v}" for k, v in zip(keys, values, strict=True))


def values_of(overrides: list[str], keys: list[str]) -> tuple[str, ...]:
    """The values of the selection keys in a job's overrides ('' for a key it does not set)."""
    given = {override_key(o): override_value(o) for o in overrides}
    return tuple(given.get(key, "") for key in keys)


@dataclass
class Job:
    """One job directory of a sweep, as selection sees it."""

    path: Path
    configuration: str
    values: tuple[str, ...]
    seed: int
    rung_scores: dict[int, float] = field(default_factory=dict)  # steps -> the metric at that rung
    last_step: int = 0  # the steps its metrics.json reports; 0 if none

    @property
    def reached(self) -> int:
        """The furthest it trained: its metrics.json's steps, or a rung it recorded (a job whose
        metrics.json was set aside when it went on from step 0 still has its rung)."""
        return max(self.last_step, max(self.rung_scores, default=0))

    @classmethod
    def read(cls, path: Path, keys: list[str], metric: str) -> Job | None:
        overrides_file = path / ".hydra" / "overrides.yaml"
        if not overrides_file.is_file():
            return None
        overrides = list(yaml.safe_load(overrides_file.read_text()) or [])
        seed = next((int(override_value(o)) for o in overrides if override_key(o) in SEED_KEYS), 0)
        job = cls(path, configuration_of(overrides, keys), values_of(overrides, keys), seed)
        rungs = path / RUNGS_FILE
        if rungs.is_file():
            for steps, numbers in json.loads(rungs.read_text()).items():
                if metric in numbers:
                    job.rung_scores[int(steps)] = float(numbers[metric])
        metrics_file = path / "metrics.json"
        if metrics_file.is_file():
            metrics = json.loads(metrics_file.read_text())
            job.last_step = int(metrics.get("last_step", 0))
            if metric in metrics:  # a run that predates rungs.json
                job.rung_scores.setdefault(job.last_step, float(metrics[metric]))
        return job


def read_jobs(sweep_dir: Path, keys: list[str], metric: str) -> list[Job]:
    jobs = [
        Job.read(p.parent.parent, keys, metric)
        for p in sorted(Path(sweep_dir).rglob(".hydra/overrides.yaml"))
    ]
    return [j for j in jobs if j is not None]


@dataclass
class Ladder:
    """The successive halving of one configuration's candidates."""

    candidates: dict[tuple[str, ...], list[Job]]  # values -> its jobs (one per seed)
    rungs: list[int]  # increasing steps, the last one trainer.max_steps
    keep: int

    def score(self, values: tuple[str, ...], rung: int, seeds: set[int]) -> float:
        scores = [j.rung_scores[rung] for j in self.candidates[values] if j.seed in seeds]
        return statistics.fmean(scores)

    def reached(self, values: tuple[str, ...], rung: int) -> bool:
        jobs = self.candidates[values]  # none yet for a value of the grid whose job has not started
        return bool(jobs) and all(rung in j.rung_scores for j in jobs)

    def common_seeds(self, values: list[tuple[str, ...]]) -> set[int]:
        seeds = [{j.seed for j in self.candidates[v]} for v in values]
        return set.intersection(*seeds) if seeds else set()

    def kept(self) -> list[list[tuple[str, ...]]]:
        """The values at each rung, as far as it is decided: kept()[i] trains to rungs[i]."""
        levels = [list(self.candidates)]
        for rung in self.rungs[:-1]:
            current = levels[-1]
            if not all(self.reached(v, rung) for v in current):
                break  # the rung is not decided until every candidate is there
            seeds = self.common_seeds(current)
            ranked = sorted(current, key=lambda v: self.score(v, rung, seeds))
            levels.append(ranked[: self.keep])
        return levels

    def choice(self) -> tuple[str, ...] | None:
        """The values chosen, once the last rung is decided; None before."""
        levels = self.kept()
        final = levels[-1]
        if len(levels) < len(self.rungs) or not all(self.reached(v, self.rungs[-1]) for v in final):
            return None
        seeds = self.common_seeds(final)
        return min(final, key=lambda v: self.score(v, self.rungs[-1], seeds))

    def describe(self, metric: str) -> dict[str, Any]:
        """What was tried, kept and chosen, for the report."""
        levels = self.kept()
        choice = self.choice()
        rungs = []
        for i, values in enumerate(levels):
            rung = self.rungs[i]
            seeds = self.common_seeds(values)
            scores = {
                ",".join(v): self.score(v, rung, seeds) for v in values if self.reached(v, rung) and seeds
            }
            rungs.append({"steps": rung, "candidates": len(values), "seeds": sorted(seeds), metric: scores})
        return {"chosen": None if choice is None else list(choice), "rungs": rungs}


def ladders(jobs: list[Job], rungs: list[int], keep: int, keys: list[str] | None = None) -> dict[str, Ladder]:
    """One Ladder per configuration. With `keys`, each configuration's candidates include every
    value of the keys its jobs' sweeps launch (sweep_grid), started or not."""
    grouped: dict[str, dict[tuple[str, ...], list[Job]]] = {}
    grids: dict[Path | None, list[tuple[str, ...]]] = {}
    for job in jobs:
        candidates = grouped.setdefault(job.configuration, {})
        if keys:
            sweep_dir = sweep_dir_of(job.path)
            if sweep_dir not in grids:
                grids[sweep_dir] = (sweep_grid(sweep_dir, keys) if sweep_dir else None) or []
            for values in grids[sweep_dir]:
                candidates.setdefault(values, [])
        candidates.setdefault(job.values, []).append(job)
    return {c: Ladder(candidates, rungs, keep) for c, candidates in grouped.items()}


MULTIRUN_FILE = "multirun.yaml"


def sweep_dir_of(job_dir: Path, depth: int = 3) -> Path | None:
    """The sweep directory a job's directory lies in: the nearest one above with a multirun.yaml."""
    for parent in list(Path(job_dir).parents)[:depth]:
        if (parent / MULTIRUN_FILE).is_file():
            return parent
    return None


def swept_values(sweep_dir: Path) -> dict[str, list[str]] | None:
    """Each key the sweep in `sweep_dir` sets (a config group without its '+'), with the values it
    launches as its jobs' overrides spell them ("1.0e-5" on the command line is "1e-05" there): from
    its multirun.yaml, the sweeper's params then the command line (the later wins), parsed by
    Hydra's override parser as its BasicSweeper parses them. None if it recorded no multirun.yaml."""
    path = Path(sweep_dir) / MULTIRUN_FILE
    if not path.is_file():
        return None
    hydra = (yaml.safe_load(path.read_text()) or {}).get("hydra") or {}
    return {override_key(key): values for key, values in _sweep_values(hydra).items()}


def launched_jobs(hydra: dict[str, Any]) -> list[list[str]]:
    """The overrides of each job a sweep launches, in the order of their job numbers, from the
    sweep's `hydra` config node (the sweeper's params, then the command line, the later winning):
    every combination, the first key's values outermost, as Hydra's BasicSweeper expands them."""
    choices = [[f"{key}={value}" for value in values] for key, values in _sweep_values(hydra).items()]
    return [list(job) for job in itertools.product(*choices)]


def _sweep_values(hydra: dict[str, Any]) -> dict[str, list[str]]:
    """Each key as the command line spells it (`+group` keeps its '+'), in the order Hydra's
    BasicSweeper takes them (a key given again keeps its first place), with the values it launches."""
    params = (hydra.get("sweeper") or {}).get("params") or {}
    arguments = [f"{k}={v}" for k, v in params.items()]
    arguments += list((hydra.get("overrides") or {}).get("task") or [])
    given: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.is_sweep_override():
            given[override.get_key_element()] = list(override.sweep_string_iterator())
        else:
            given[override.get_key_element()] = [override.get_value_element_as_str()]
    return given


def sweep_grid(sweep_dir: Path, keys: list[str]) -> list[tuple[str, ...]] | None:
    """The values of `keys` the sweep in `sweep_dir` launches (swept_values), every combination;
    a key it does not set has the value ''. None if it recorded no multirun.yaml."""
    given = swept_values(sweep_dir)
    if given is None:
        return None
    return list(itertools.product(*(given.get(key, [""]) for key in keys)))


@dataclass
class Plan:
    """What a sweep job does now: run to `steps` (testing only at the last rung), or not run."""

    action: str  # "run" | "done" | "wait"
    steps: int | None = None
    final: bool = True
    reason: str = ""


def plan_job(output_dir: Path, overrides: list[str], selection: dict[str, Any], max_steps: int) -> Plan:
    """The plan of the sweep job in `output_dir` given its overrides and the `selection` node."""
    keys = list(selection.get("keys") or [])
    metric = selection.get("metric") or "val/neg_elbo"
    configuration, values = configuration_of(overrides, keys), values_of(overrides, keys)
    label = describe(keys, values)
    chosen_in = selection.get("chosen_in")
    if chosen_in:
        ladder = _ladders_of(Path(chosen_in), selection, max_steps).get(configuration)
        choice = ladder.choice() if ladder else None
        if choice is None:
            return Plan("wait", reason=f"the choice in {chosen_in} is not made yet")
        if choice != values:
            chosen = describe(keys, choice)
            return Plan("done", reason=f"{label} was not chosen in {chosen_in} ({chosen} was)")
        return Plan("run", max_steps, True)
    rungs = selection_rungs(selection, max_steps)
    if not keys or len(rungs) == 1:
        return Plan("run", max_steps, True)
    ladder = _ladders_of(output_dir.parent, selection, max_steps).get(configuration)
    this = Job.read(output_dir, keys, metric) if (output_dir / ".hydra").is_dir() else None
    reached = this.reached if this is not None else 0
    if ladder is None or values not in ladder.candidates:  # not run yet: the first rung
        return Plan("run", rungs[0], len(rungs) == 1)
    levels = ladder.kept()
    allowed = max(i for i, level in enumerate(levels) if values in level)
    if reached < rungs[allowed]:
        return Plan("run", rungs[allowed], allowed == len(rungs) - 1)
    if allowed == len(rungs) - 1:
        return Plan("done", reason=f"finished before ({rungs[-1]} steps)")
    if allowed + 1 < len(levels):  # the next rung is decided and this value is not in it
        return Plan(
            "done", reason=f"{label} stopped at {rungs[allowed]} steps: not among the {ladder.keep} best"
        )
    return Plan("wait", reason=f"waiting for the other values of {metric} at {rungs[allowed]} steps")


def selection_rungs(selection: dict[str, Any], max_steps: int) -> list[int]:
    rungs = sorted(int(r) for r in (selection.get("rungs") or []) if 0 < int(r) < max_steps)
    return [*rungs, max_steps]


def _ladders_of(sweep_dir: Path, selection: dict[str, Any], max_steps: int) -> dict[str, Ladder]:
    keys = list(selection.get("keys") or [])
    metric = selection.get("metric") or "val/neg_elbo"
    return ladders(
        read_jobs(sweep_dir, keys, metric),
        selection_rungs(selection, max_steps),
        int(selection.get("keep") or 1),
        keys,
    )


def record_rung(output_dir: Path, metrics: dict[str, Any]) -> None:
    """Add the run's validation numbers at its last step to rungs.json."""
    path = output_dir / RUNGS_FILE
    rungs = json.loads(path.read_text()) if path.is_file() else {}
    rungs[str(metrics["last_step"])] = {
        k: v for k, v in metrics.items() if k.startswith("val/") and isinstance(v, float) and math.isfinite(v)
    }
    path.write_text(json.dumps(rungs, indent=2) + "\n")


def record_status(output_dir: Path, plan: Plan) -> None:
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / STATUS_FILE).write_text(json.dumps({"action": plan.action, "reason": plan.reason}) + "\n")
