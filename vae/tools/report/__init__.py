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

runs.py reads the run directories back, tables.py makes the tables (and a search's choice on
validation), plots.py the plots.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from vae.tools.report.plots import plot
from vae.tools.report.runs import collect
from vae.tools.report.tables import (
    markdown,
    paper_tables,
    planned_cells,
    results_table,
    selected_rows,
    summarize,
)


def update_readme(readme: Path, text: str, block: str = "results") -> None:
    """Replace the text between the README's <!-- block:begin --> and <!-- block:end --> markers."""
    begin, end = f"<!-- {block}:begin -->", f"<!-- {block}:end -->"
    content = readme.read_text()
    if begin not in content or end not in content:
        raise FileNotFoundError(f"{readme}: no '{begin}' ... '{end}' block to replace")
    head, rest = content.split(begin, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{begin}\n{text}{end}{tail}")


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
