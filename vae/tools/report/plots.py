"""The report's plots: validation -ELBO, tau, the training-set -ELBO and the encoder gradient's
variance over steps (the last two when runs log them), and the final test -ELBO per
configuration."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

from vae.tools.report.runs import RunRecord
from vae.tools.report.tables import mean_std


def _band(curves: list[dict[int, float]]) -> tuple[list[int], list[float], list[float]]:
    """Mean and std over runs at the steps every run has reached. A run bounded by steps and
    resumed at an epoch's end logs its rows one step later than a run that was not stopped
    (Lightning's restart pass; measured: 12650 against 12649), so a step also matches the step on
    either side of it."""
    steps, means, stds = [], [], []
    for step in sorted(min(curves, key=len)) if curves else []:
        values = [value for curve in curves if (value := _near(curve, step)) is not None]
        if len(values) == len(curves):
            mean, std = mean_std(values)
            steps.append(step)
            means.append(mean)
            stds.append(0.0 if math.isnan(std) else std)
    return steps, means, stds


def _near(curve: dict[int, float], step: int) -> float | None:
    for near in (step, step - 1, step + 1):
        if near in curve:
            return curve[near]
    return None


def _style(index: int, points: int) -> dict:
    """Line style of the index-th configuration: ten colours, then the ten again dashed, dotted,
    dash-dotted, so that a 16-cell table's lines stay apart; markers only on short curves."""
    styles = ("-", "--", ":", "-.")
    return {
        "color": f"C{index % 10}",
        "linestyle": styles[(index // 10) % len(styles)],
        "marker": "o" if points <= 30 else None,
        "markersize": 4,
    }


def _legend(ax, fig) -> None:
    """Inside the axes for a few lines; to the right of them for many, where it would cover them."""
    handles, _ = ax.get_legend_handles_labels()
    if len(handles) > 6:
        fig.set_size_inches(11, 4.5)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif handles:  # runs without a validation yet draw no line
        ax.legend(fontsize=7)


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
    for index, configuration in enumerate(order):
        steps, mean, std = _band([r.val_curve for r in by_config[configuration] if r.val_curve])
        if steps:
            (line,) = ax.plot(steps, mean, label=configuration, **_style(index, len(steps)))
            low = [m - s for m, s in zip(mean, std, strict=True)]
            high = [m + s for m, s in zip(mean, std, strict=True)]
            ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    ax.set(
        xlabel="global step",
        ylabel="val −ELBO (nats)",
        title="Validation −ELBO, mean ± std over seeds",
    )
    _legend(ax, fig)
    written.append(_save(fig, out / "val_neg_elbo.png"))

    if any(r.tau_curve for r in runs):  # the score-function and ARM-type estimators log no tau
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for index, configuration in enumerate(order):
            curves = [r.tau_over_steps() for r in by_config[configuration] if r.tau_curve]
            if curves:
                longest = max(curves, key=len)
                style = _style(index, points=len(longest)) | {"marker": None}
                ax.plot(sorted(longest), [longest[s] for s in sorted(longest)], label=configuration, **style)
        ax.set(xlabel="global step", ylabel="τ", title="Temperature schedule")
        _legend(ax, fig)
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

    # Curves that only some experiments log, each its own plot when any run has it: the
    # training-set -ELBO of callbacks=training_set_elbo (the RELAX table's number, as the papers'
    # training curves) and the encoder gradient's variance of callbacks=gradient_variance.
    for metric, name, ylabel, title, log_scale in (
        (
            "train_set/neg_elbo",
            "train_set_neg_elbo.png",
            "training-set −ELBO (nats)",
            "Training-set −ELBO (exact samples), mean over seeds",
            False,
        ),
        (
            "train/encoder_grad_variance",
            "grad_variance.png",
            "variance",
            "Encoder gradient variance, mean over seeds",
            True,
        ),
    ):
        if not any(r.curves.get(metric) for r in runs):
            continue
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for index, configuration in enumerate(order):
            steps, mean, _ = _band([c for r in by_config[configuration] if (c := r.curves.get(metric))])
            if steps:
                ax.plot(steps, mean, label=configuration, **_style(index, len(steps)))
        if log_scale:
            ax.set_yscale("log")
        ax.set(xlabel="global step", ylabel=ylabel, title=title)
        _legend(ax, fig)
        written.append(_save(fig, out / name))
    return written


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
