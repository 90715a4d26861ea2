"""The report's plots: validation -ELBO, tau and the encoder gradient's variance over steps, and
the final test -ELBO per configuration."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from vae.tools.report.runs import RunRecord
from vae.tools.report.tables import mean_std


def _band(curves: list[dict[int, float]]) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over runs at the steps every run has reached."""
    steps = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
    means, stds = [], []
    for step in steps:
        mean, std = mean_std([c[step] for c in curves])
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
