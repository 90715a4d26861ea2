"""python -m vae.diagnose [ckpt_path=PATH] [model=...]: how biased and how noisy each gradient
estimator is.

For a VAE whose latent can be enumerated (vae.latents.MAX_ENUMERATED_CODES) and a batch of test
images, take the gradient of the batch's mean -ELBO with respect to the encoder's output theta
(B, num_params: the latent's logits):

    g      = the exact gradient (the `exact` estimator: a sum over every code)
    g_r    = estimator's gradient from draw r = 1..R, at each tau of a grid
    g_bar  = mean_r g_r

and report, per estimator and tau, beside its cost (decoder passes per image and step),

    cosine          cos(g_bar, g)                       1 is unbiased in direction
    rel_error       |g_bar - g| / |g|                   the bias, plus Monte-Carlo noise:
    noise_floor     sqrt(variance / R) / |g|            what rel_error is for an unbiased one
    bias            sqrt(max(0, rel_error^2 - noise_floor^2)), the relative bias with the noise
                    taken out (E|g_bar - g|^2 = |bias|^2 + variance / R)
    variance        mean_r |g_r - g_bar|^2              total over the B * num_params coordinates
    rel_variance    variance / |g|^2

Each estimator's gradient is the one its training takes (Estimator.elbo_terms): the KL in
closed form for most, so that their differences come from the E_q[-log p(x|z)] term alone, and
inside the learning signal for the score-function family, REBAR and RELAX, whose variance then
includes the KL's score term. The noise floor is estimated from the same draws, so for a
heavy-tailed estimator (SF) at a few hundred draws rel_error can exceed it with no bias: more
draws (num_draws) settle it. Every (estimator, tau) pair draws from the same seed (common random
numbers), so curves over tau are smooth. Estimators that do not use tau are measured once.

Writes to output_dir (printed): diagnose.json, diagnose.md (the table), bias.png and
variance.png (both against tau, one line per estimator).
"""

from __future__ import annotations

import functools
import json
import math
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import hydra
import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor

from vae.checkpoint import data_from_checkpoint, model_from_checkpoint, read_checkpoint, run_dir_of
from vae.config import CONFIG_DIR, build_model, instantiate_node
from vae.data import BinarizedImages
from vae.errors import ConfigError, InvalidValue, is_number
from vae.estimators import Estimator, build_estimator
from vae.model import VAE
from vae.tools.common import pick_device, require_positive_ints, run_or_exit

REFERENCE = "exact"  # the estimator every other one is measured against


def _model_and_data(cfg: DictConfig) -> tuple[VAE, BinarizedImages, str]:
    """The model to diagnose (on cfg.device), its data module (not yet read), and its name."""
    device = pick_device(cfg.device)
    if cfg.ckpt_path is not None:
        checkpoint = read_checkpoint(cfg.ckpt_path)
        model = model_from_checkpoint(checkpoint, cfg.ckpt_path)
        datamodule = data_from_checkpoint(checkpoint, cfg.data.root)  # its split and binarization
        source = str(Path(cfg.ckpt_path).resolve())
    else:
        datamodule = instantiate_node(cfg, "data", root=cfg.data.root or "data")
        torch.manual_seed(cfg.seed)  # the fresh weights
        model = build_model(cfg.model, datamodule.image_shape).eval()
        source = f"fresh {model.latent.describe()} model, seed {cfg.seed}"
    if not model.latent.can_enumerate:
        raise ConfigError(
            f"the {model.latent.describe()} latent cannot be enumerated:"
            f" {model.latent.enumeration_limit_message()};"
            " the exact gradient sums over every code (train a small one, e.g. model.num_variables=4"
            " model.num_classes=4)"
        )
    return model.to(device), datamodule, source


def _test_images(datamodule: BinarizedImages, num_images: int, device: torch.device) -> Tensor:
    """The first num_images test images (B, C, H, W), binarized as in training, on device."""
    datamodule.setup()
    return datamodule.test_images[:num_images].to(device)


def _per_draw_gradients(
    model: VAE,
    x: Tensor,
    params: Tensor,
    estimator: Estimator,
    tau: float | None,
    draws: int,
    chunk: int,
    seed: int,
) -> Tensor:
    """(draws, B, num_params): the gradient of the batch's mean -ELBO w.r.t. the encoder's output,
    one per draw.

    Each chunk of draws is one batched call: R copies of the encoder's output as the rows of one
    leaf, so row r of its gradient is draw r's (the draws are independent given the parameters).
    """
    generator = torch.Generator(params.device).manual_seed(seed)
    grads = []
    for start in range(0, draws, chunk):
        rows = params.expand(min(chunk, draws - start), *params.shape).clone().requires_grad_()  # (R, B, P)
        q = model.latent.posterior(rows)  # batch_shape (R, B)
        terms = estimator.elbo_terms(
            q, lambda z: -model.decode(z).log_prob(x), model.prior(), tau, generator, inputs=x
        )  # (R, B) each: what training differentiates with this estimator
        terms["neg_elbo"].mean(-1).sum().backward()
        grads.append(rows.grad)
    return torch.cat(grads)


def _statistics(grads: Tensor, exact: Tensor) -> dict[str, float]:
    mean = grads.mean(0)
    norm = exact.norm().item()
    # Unbiased over draws (R - 1), so that variance / R is the expected squared error of the mean.
    variance = (grads - mean).pow(2).flatten(1).sum(-1).sum().item() / max(len(grads) - 1, 1)
    rel_error = ((mean - exact).norm() / norm).item()
    noise_floor = math.sqrt(variance / len(grads)) / norm
    return {
        "cosine": torch.nn.functional.cosine_similarity(mean.flatten(), exact.flatten(), dim=0).item(),
        "bias": math.sqrt(max(0.0, rel_error**2 - noise_floor**2)),
        "rel_error": rel_error,
        "noise_floor": noise_floor,
        "variance": variance,
        "rel_variance": variance / norm**2,
    }


def diagnose(cfg: DictConfig) -> dict[str, Any]:
    """Measure every estimator of cfg.estimators at every tau of cfg.taus; write and return the rows."""
    require_positive_ints(cfg, ("num_images", "num_draws", "chunk"))
    taus = list(cfg.taus) if OmegaConf.is_list(cfg.taus) else []
    numbers = all(is_number(t) for t in taus)
    if not (taus and numbers and all(math.isfinite(t) and t > 0 for t in taus)):
        raise ConfigError(f"taus={list(cfg.taus)} is not allowed: must be a non-empty list of numbers > 0")
    if cfg.estimators is not None and not OmegaConf.is_list(cfg.estimators):
        raise ConfigError(f"estimators={cfg.estimators!r} is not allowed: a list of names, or null for all")
    model, datamodule, source = _model_and_data(cfg)
    estimators = _estimators(cfg.estimators, model)
    x = _test_images(datamodule, cfg.num_images, next(model.parameters()).device)
    model.requires_grad_(False)  # only the gradient w.r.t. the encoder's output is measured
    output_dir = Path(cfg.output_dir) if cfg.output_dir else _default_output_dir(cfg)
    plan = [(name, tau) for name, e in estimators.items() for tau in (taus if e.uses_temperature else [None])]
    # Progress on stderr (a row can take minutes), the table on stdout.
    progress = functools.partial(print, file=sys.stderr, flush=True)
    progress(
        f"{source}: {len(plan)} rows ({len(estimators)} estimators), {cfg.num_draws} draws each on"
        f" {len(x)} test images; first the exact gradient, a sum over all {model.latent.num_codes} codes"
    )

    started = time.perf_counter()
    with torch.no_grad():
        params = model.encoder(x)  # (B, num_params): q(z|x)'s parameters
    reference = _estimators([REFERENCE], model, reference=True)[REFERENCE]
    exact = _per_draw_gradients(model, x, params, reference, None, 1, 1, cfg.seed)[0]  # (B, num_params)
    progress(f"exact gradient: {time.perf_counter() - started:.1f} s")
    print(_HEADER, flush=True)
    rows = []
    for i, (name, tau) in enumerate(plan, 1):
        estimator = estimators[name]
        started = time.perf_counter()
        progress(f"[{i}/{len(plan)}] {name}" + ("" if tau is None else f" at τ={tau:g}"), end=": ")
        grads = _per_draw_gradients(model, x, params, estimator, tau, cfg.num_draws, cfg.chunk, cfg.seed)
        progress(f"{time.perf_counter() - started:.1f} s")
        rows.append(
            {
                "estimator": name,
                "tau": None if tau is None else float(tau),
                "decoder_passes": estimator.decoder_passes,
                **_statistics(grads, exact),
            }
        )
        print(_format_row(rows[-1]), flush=True)

    results = {
        "model": source,
        "num_images": len(x),
        "num_draws": cfg.num_draws,
        "seed": cfg.seed,
        "exact_gradient_norm": exact.norm().item(),
        "rows": rows,
    }
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "diagnose.json").write_text(json.dumps(results, indent=2) + "\n")
    (output_dir / "diagnose.md").write_text(_markdown(results))
    _plot(rows, taus, output_dir)
    print(f"Wrote diagnose.json, diagnose.md, bias.png, variance.png to {output_dir.resolve()}")
    return results


def _estimators(names: list[str] | None, model: VAE, reference: bool = False) -> dict[str, Estimator]:
    """The named estimators of the model's latent (all but the reference when names is None)."""
    available = model.latent.estimators
    if names is None:
        names = [name for name in available if name != REFERENCE]
    built = {}
    for name in names:
        if name == REFERENCE and not reference:
            raise ConfigError(
                f"estimators: {REFERENCE!r} is the reference every estimator is measured against"
            )
        try:
            built[name] = build_estimator(name, available)
            built[name].bind_latent(model.latent)  # RELAX: a control-variate network, untrained
            built[name].bind_inputs(model.image_shape)  # NVIL: a baseline network, untrained
            built[name].to(next(model.parameters()).device).eval()  # running averages stay put
        except InvalidValue:
            allowed = ", ".join(n for n in available if n != REFERENCE)
            raise ConfigError(
                f"estimators: {name!r} is not allowed for the {model.latent.describe()} latent:"
                f" one of {allowed}"
            ) from None
    return built


def _default_output_dir(cfg: DictConfig) -> Path:
    stamp = datetime.now().strftime("%Y-%m-%d_%H-%M-%S")
    if cfg.ckpt_path is not None:
        return run_dir_of(cfg.ckpt_path) / "diagnose" / stamp
    return Path("runs") / "diagnose" / stamp


_HEADER = (
    "| estimator | τ | passes | cosine | bias | rel_error | noise_floor | variance | rel_variance |\n"
    "|---|---|---|---|---|---|---|---|---|"
)


def _format_row(row: dict[str, Any]) -> str:
    tau = "–" if row["tau"] is None else f"{row['tau']:g}"
    return (
        f"| {row['estimator']} | {tau} | {row['decoder_passes']} | {row['cosine']:.4f} | {row['bias']:.4f}"
        f" | {row['rel_error']:.4f}"
        f" | {row['noise_floor']:.4f} | {row['variance']:.4g} | {row['rel_variance']:.4g} |"
    )


def _markdown(results: dict[str, Any]) -> str:
    lines = [
        f"# Gradient estimators against the exact gradient: {results['model']}",
        "",
        f"Gradient of the mean −ELBO of {results['num_images']} test images w.r.t. the encoder's"
        f" output (the latent's logits); {results['num_draws']} draws per row; |exact gradient| ="
        f" {results['exact_gradient_norm']:.4g}. rel_error below noise_floor means no bias is"
        " visible at this number of draws; bias is rel_error with that noise taken out.",
        "",
        _HEADER,
        *[_format_row(row) for row in results["rows"]],
    ]
    return "\n".join(lines) + "\n"


def _plot(rows: list[dict[str, Any]], taus: list[float], output_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(row["estimator"] for row in rows))
    panels = {
        "bias.png": [
            ("bias", "relative bias |E g_r - g| / |g|"),
            ("cosine", "cosine of the mean gradient to exact"),
        ],
        "variance.png": [("rel_variance", "variance / |exact gradient|²")],
    }
    for filename, metrics in panels.items():
        fig, axes = plt.subplots(1, len(metrics), figsize=(6 * len(metrics), 4.5), squeeze=False)
        for ax, (metric, label) in zip(axes[0], metrics, strict=True):
            for i, name in enumerate(names):
                mine = [row for row in rows if row["estimator"] == name]
                color = f"C{i}"
                if mine[0]["tau"] is None:  # no temperature: one value, drawn across the grid
                    ax.axhline(mine[0][metric], linestyle="--", color=color, label=f"{name} (no τ)")
                    continue
                x = [row["tau"] for row in mine]
                ax.plot(x, [row[metric] for row in mine], marker="o", color=color, label=name)
                if metric == "bias":  # the Monte-Carlo error of the mean: smaller biases are not seen
                    ax.plot(x, [row["noise_floor"] for row in mine], linestyle=":", linewidth=1, color=color)
            ax.set_xscale("log")
            if metric == "rel_variance":
                ax.set_yscale("log")
            ax.set(xlabel="τ", ylabel=label + (" (dotted: noise floor)" if metric == "bias" else ""))
            ax.legend(fontsize=7)
        fig.suptitle(f"Gradient estimators against the exact gradient, {len(taus)} values of τ")
        fig.tight_layout()
        fig.savefig(output_dir / filename, dpi=120)
        plt.close(fig)


@hydra.main(version_base="1.3", config_path=str(CONFIG_DIR), config_name="diagnose")
def main(cfg: DictConfig) -> None:
    run_or_exit(diagnose, cfg)


if __name__ == "__main__":
    main()
