"""python -m vae.bench: seconds per epoch, three ways, side by side.

Every loop does the same work per epoch: one pass over the 55k training images (binarized
afresh per batch) and one pass over the 5k validation images, computing what the project's
validation reports (-ELBO with one exact z ~ q(z|x) and, for the Gumbel-Softmax, with the
relaxed sample). The training part is also timed on its own.

    project     train.py's own code path: vae.run.train(cfg) with the default config (W&B
                logging offline, validation, checkpoints and image grids each epoch, progress
                bar), timed from the start of one epoch to the start of the next
    automatic   the same, with Lightning's automatic optimization (its closure and hooks)
                instead of the training system's own optimizer step: what the manual step buys
                (models with one optimizer and no gradient clipping)
    dataloader  the loop most tutorials and peer repositories write (pytorch/examples/vae):
                torchvision MNIST with ToTensor, a DataLoader (shuffle, num_workers=0 on CPU; 1
                worker and pinned memory on a GPU), torch.bernoulli per batch, the optimizer
                with PyTorch's default implementation (not fused), loss.item() per step for the
                running loss, and a validation pass through a DataLoader too
    bare        no framework: the same images as tensors on the device, a permutation per epoch,
                binarized per batch, the same model and loss, no logging: the floor

Same model (the config's, built by train.py's code), optimizer settings, loss, tau schedule
and train/validation split in all three. Each run of a case is its own process (so its peak
memory is its own); its first epoch is warm-up (and compilation) and is excluded. Each case runs
--rounds times, in turn with the other loops of its model and batch size, and the timed epochs
of its runs are pooled: a machine that slows down for a minute slows every loop alike rather than
the one that happened to run then. Figures are printed as a table, ratios last.

    python -m vae.bench                         # both models, batch 100 and 1000, CPU or GPU
    python -m vae.bench --models categorical --batch-sizes 100 --rounds 3 --compile
    python -m vae.bench --sweep 4 --epochs 2    # a 4-job sweep: parallel launcher vs one at a time
    python -m vae.bench --train-batches 10      # a quick check: 10 training batches an epoch
    python -m vae.bench --precisions 32 bf16-mixed   # each loop in float32 and in bf16 mixed precision

--precisions times every case at each training precision: `project` and `automatic` with
trainer.precision=P (Lightning's autocast around the training step), `bare` and `dataloader`
with the same torch.autocast around their forward pass. Validation runs in float32 in every
case (the model turns autocast off for evaluation), so the validation numbers stay comparable.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from vae.run.hardware import describe, drop_unusable_nvml_check

REPO = Path(__file__).resolve().parents[2]
LOOPS = ("project", "automatic", "dataloader", "bare")
# The training precisions a case can run at: the ones every loop can mirror without Lightning
# (float32, and bfloat16 autocast, which needs no gradient scaler).
PRECISIONS = ("32", "bf16-mixed")


class EpochClock(L.Callback):
    """Wall-clock times: each training epoch's start, its validation's start, training's end."""

    def __init__(self, path: str) -> None:
        self.path, self.epochs, self.validations = Path(path), [], []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _synchronize()
        self.epochs.append(time.perf_counter())

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.epochs and not trainer.sanity_checking:  # the epoch's own validation
            _synchronize()
            self.validations.append(time.perf_counter())

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        _synchronize()
        self.epochs.append(time.perf_counter())
        self.path.write_text(json.dumps({"epochs": self.epochs, "validations": self.validations}))


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _config(args: argparse.Namespace, output_dir: Path, extra: list[str] = ()):
    """train.yaml as train.py's main receives it, with the case's settings."""
    from vae.config import compose_train_config

    overrides = [
        f"model={args.model}",
        f"data.batch_size={args.batch_size}",
        f"data.root={args.data_root}",
        f"trainer.max_epochs={args.epochs}",
        f"trainer.accelerator={args.device}",
        # An epoch is timed with its validation (EpochClock): every epoch validates, whatever an
        # experiment's check_val_every_n_epoch.
        "trainer.check_val_every_n_epoch=1",
        f"compile={str(args.compile).lower()}",
        f"seed={args.seed}",
        f"trainer.precision={args.precision}",
        "test=false",
        *([f"trainer.limit_train_batches={args.train_batches}"] if args.train_batches else []),
        *extra,
    ]
    return compose_train_config(overrides, output_dir)


def _run_project(args: argparse.Namespace, workdir: Path, automatic: bool = False) -> dict[str, Any]:
    from omegaconf import open_dict

    import vae.run
    from vae.run.directory import holding

    cfg = _config(args, workdir / "run", args.overrides)
    clock = workdir / "epochs.json"
    with open_dict(cfg):
        cfg.callbacks.epoch_clock = {"_target_": "vae.tools.bench.EpochClock", "path": str(clock)}
    run = vae.run.prepare(cfg)
    matmul = _watch_matmul_dtype(args, run.system.model)
    if automatic:
        if run.system.group_optimizer_factories or run.system.gradient_clip_val is not None:
            raise SystemExit("error: the automatic loop times a model with one optimizer and no clipping")
        run.system.automatic_optimization = True  # Lightning makes the step (VAETraining.training_step)
    with holding(run.output_dir, cfg.ckpt_path):
        metrics = vae.run.fit_and_test(run)
    stamps = json.loads(clock.read_text())
    starts, validations = stamps["epochs"], stamps["validations"]
    return {
        "epoch_s": [b - a for a, b in zip(starts, starts[1:], strict=False)],
        # The training part alone: the epoch's start to its validation's start.
        "train_only_s": [v - a for a, v in zip(starts, validations, strict=False)],
        "images": _images_per_epoch(args, 60_000 - cfg.data.val_size),
        "val_neg_elbo": metrics["val/neg_elbo"],
        **matmul,
    }


def _data_and_system(args: argparse.Namespace, workdir: Path, device: torch.device):
    """The data module (set up) and the training system (VAETraining) that train.py builds."""
    import vae.run

    L.seed_everything(args.seed, verbose=False)
    torch.set_flush_denormal(True)  # as train.py does by default
    cfg = _config(args, workdir / "run", args.overrides)
    datamodule, system = vae.run.build_checked(cfg)
    system = system.to(device).train()
    if args.compile:
        system.compile_training()  # before configure_optimizers, which then compiles the update
    datamodule.setup()  # the split (and the validation binarization) that train.py uses
    return datamodule, system


def _training_precision(args: argparse.Namespace, device: torch.device):
    """The context the forward pass of the loops without Lightning runs in: what Lightning's
    precision plugin puts around training_step (nothing for float32, bfloat16 autocast for
    bf16-mixed); the backward pass and the optimizer step run outside it, as there."""
    if args.precision == "bf16-mixed":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _watch_matmul_dtype(args: argparse.Namespace, model: torch.nn.Module) -> dict[str, str]:
    """{"matmul_dtype": ...}, filled with the dtype the model's first linear layer outputs while
    training (not while evaluating, which is float32 by design): the precision the loop's matrix
    products ran at. Not for compiled cases (a hook's side effect inside a compiled graph)."""
    seen: dict[str, str] = {}
    if args.compile:
        return seen
    linear = next((m for m in model.modules() if isinstance(m, torch.nn.Linear)), None)

    def record(module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        if module.training:
            seen["matmul_dtype"] = str(output.dtype).removeprefix("torch.")

    if linear is not None:
        linear.register_forward_hook(record)
    return seen


def _validate(system, batches) -> float:
    """The project's validation work without Lightning: the summed -ELBO of the batches."""
    system.eval()
    generator = torch.Generator(system.device).manual_seed(0)
    with torch.no_grad():
        total = sum(
            system.model.evaluation_terms(x, system.tau, generator)["neg_elbo"].sum() for x in batches
        )
    system.train()
    return total.item()


def _run_dataloader(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from torch.utils.data import DataLoader, Subset
    from torchvision import datasets, transforms

    device = _device(args)
    datamodule, system = _data_and_system(args, workdir, device)
    matmul = _watch_matmul_dtype(args, system.model)
    # The optimizer as tutorials build it: the config's, with PyTorch's default implementation.
    factory = system.optimizer_factory
    defaults = {"fused": None} if "fused" in getattr(factory, "keywords", {}) else {}
    optimizer = factory(system.parameters(), **defaults)
    dataset = datasets.MNIST(args.data_root, train=True, download=False, transform=transforms.ToTensor())
    train_indices, val_indices = datamodule.split_indices()
    cuda = {"num_workers": 1, "pin_memory": True} if device.type == "cuda" else {}
    loader = DataLoader(Subset(dataset, train_indices), batch_size=args.batch_size, shuffle=True, **cuda)
    val_loader = DataLoader(Subset(dataset, val_indices), batch_size=datamodule.eval_batch_size, **cuda)
    step, epoch_s, train_s = 0, [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        train_loss = 0.0
        for x, _ in itertools.islice(loader, args.train_batches or None):
            x = torch.bernoulli(x.to(device))
            with _training_precision(args, device):
                loss = system.step_terms(x, system.tau_at(step))["neg_elbo"].mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            train_loss += loss.item()
            step += 1
        _synchronize()
        train_s.append(time.perf_counter() - start)
        system.weights_step = step
        val_batches = (torch.bernoulli(x.to(device)) for x, _ in val_loader)
        val_neg_elbo = _validate(system, val_batches) / len(val_indices)
        _synchronize()
        epoch_s.append(time.perf_counter() - start)
    return {
        "epoch_s": epoch_s,
        "train_only_s": train_s,
        "images": _images_per_epoch(args, len(train_indices)),
        "train_neg_elbo_last_epoch": train_loss / min(len(loader), args.train_batches or len(loader)),
        "val_neg_elbo": val_neg_elbo,
        **matmul,
    }


def _run_bare(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    device = _device(args)
    datamodule, system = _data_and_system(args, workdir, device)
    matmul = _watch_matmul_dtype(args, system.model)
    configured = system.configure_optimizers()  # the project's (compiled with --compile)
    # One optimizer, or (with group_optimizers) a list of {"optimizer": ...} entries, main first.
    optimizers = [
        entry["optimizer"] if isinstance(entry, dict) else entry
        for entry in (configured if isinstance(configured, list) else [configured])
    ]
    images = datamodule.train_images.to(device)  # (55k, 1, 28, 28) intensities in [0, 1]
    val_images = datamodule.val_images.to(device)  # (5k, 1, 28, 28), binarized once
    batch = args.batch_size
    step, epoch_s, train_s = 0, [], []
    for _ in range(args.epochs):
        start = time.perf_counter()
        order = torch.randperm(len(images), device=device)
        for i in itertools.islice(range(0, len(images), batch), args.train_batches or None):
            x = images[order[i : i + batch]]
            x = (torch.rand_like(x) < x).to(x.dtype)  # dynamic binarization
            with _training_precision(args, device):
                loss = system.step_terms(x, system.tau_at(step))["neg_elbo"].mean()
            for optimizer in optimizers:
                optimizer.zero_grad()
            loss.backward()
            for optimizer in optimizers:
                optimizer.step()
            step += 1
        _synchronize()
        train_s.append(time.perf_counter() - start)
        system.weights_step = step
        val_neg_elbo = _validate(system, val_images.split(datamodule.eval_batch_size)) / len(val_images)
        _synchronize()
        epoch_s.append(time.perf_counter() - start)
    return {
        "epoch_s": epoch_s,
        "train_only_s": train_s,
        "images": _images_per_epoch(args, len(images)),
        "train_neg_elbo_last_batch": loss.item(),
        "val_neg_elbo": val_neg_elbo,
        **matmul,
    }


def _images_per_epoch(args: argparse.Namespace, split_size: int) -> int:
    """The training images one epoch of a loop goes through (all of the split, or --train-batches)."""
    return split_size if not args.train_batches else min(split_size, args.train_batches * args.batch_size)


def _device(args: argparse.Namespace) -> torch.device:
    return torch.device(
        "cuda"
        if args.device == "gpu"
        else args.device
        if args.device != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )


def _one_case(args: argparse.Namespace) -> None:
    """Run one case in this process and print its figures as one JSON line."""
    os.environ.setdefault("WANDB_MODE", "offline")  # never reach the network from a benchmark
    os.environ.setdefault("WANDB_SILENT", "true")
    # train.train does this for the project; every loop gets it, as a script without Lightning
    # would not have the variable Lightning sets (vae/run/hardware.py).
    drop_unusable_nvml_check()
    run = {
        "project": _run_project,
        "automatic": functools.partial(_run_project, automatic=True),
        "dataloader": _run_dataloader,
        "bare": _run_bare,
    }[args.case]
    with tempfile.TemporaryDirectory() as workdir:
        result = run(args, Path(workdir))
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    result["peak_rss_mb"] = peak_rss_mb
    if torch.cuda.is_available():
        result["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print("BENCH " + json.dumps(result), flush=True)


Case = tuple[str, str, int, bool, str]  # loop, model, batch size, compiled, training precision


def _spawn(args: argparse.Namespace, case: Case) -> dict[str, Any]:
    """Run one case in a fresh process; its raw figures."""
    loop, model, batch_size, compiled, precision = case
    command = [
        sys.executable, "-m", "vae.bench", "--case", loop, "--models", model,
        "--batch-sizes", str(batch_size), "--precisions", precision,
        "--epochs", str(args.epochs), "--device", args.device,
        "--data-root", str(args.data_root), "--seed", str(args.seed),
        "--train-batches", str(args.train_batches), "--overrides", *args.overrides,
    ] + (["--compile"] if compiled else [])  # fmt: skip
    started = time.time()
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True)
    lines = [line for line in done.stdout.splitlines() if line.startswith("BENCH ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return {"started": started, **json.loads(lines[-1][len("BENCH ") :])}


def _pooled(case: Case, runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One row from a case's runs: their timed epochs pooled (each run's first is warm-up)."""
    loop, model, batch_size, compiled, precision = case
    timed = [t for run in runs for t in run["epoch_s"][1:]]
    train_only = [t for run in runs for t in run["train_only_s"][1:]]
    median = statistics.median(timed)
    return {
        "loop": loop,
        "model": model,
        "batch_size": batch_size,
        "compile": compiled,
        "precision": precision,
        "epoch_s": timed,
        "train_only_s": train_only,
        "warmup_s": [run["epoch_s"][0] for run in runs],
        "median_s": median,
        "min_s": min(timed),
        "max_s": max(timed),
        "train_only_median_s": statistics.median(train_only),
        "images": runs[0]["images"],
        "images_per_s": runs[0]["images"] / median,
        "val_neg_elbo": runs[-1]["val_neg_elbo"],
        **({"matmul_dtype": runs[-1]["matmul_dtype"]} if "matmul_dtype" in runs[-1] else {}),
        "peak_rss_mb": max(run["peak_rss_mb"] for run in runs),
        **({"peak_gpu_mb": max(run["peak_gpu_mb"] for run in runs)} if "peak_gpu_mb" in runs[0] else {}),
        "runs": runs,
    }


def _label(row: dict[str, Any]) -> str:
    precision = row.get("precision", "32")
    compiled = " +compile" if row["compile"] else ""
    return row["loop"] + compiled + ("" if precision == "32" else f" {precision}")


def _table(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | batch | loop | s/epoch (median) | min–max | of which training | training images/s"
        " | peak RSS MB | peak GPU MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gpu = f"{r['peak_gpu_mb']:.0f}" if "peak_gpu_mb" in r else "–"
        lines.append(
            f"| {r['model']} | {r['batch_size']} | {_label(r)} | {r['median_s']:.2f} |"
            f" {r['min_s']:.2f}–{r['max_s']:.2f} | {r['train_only_median_s']:.2f} | {r['images_per_s']:,.0f}"
            f" | {r['peak_rss_mb']:.0f} | {gpu} |"
        )
    return "\n".join(lines)


def _ratios(rows: list[dict[str, Any]]) -> str:
    """The project's epoch against the others', per model and batch size (the same work each)."""
    lines = []
    for model, batch in sorted({(r["model"], r["batch_size"]) for r in rows}):
        loops = {_label(r): r for r in rows if (r["model"], r["batch_size"]) == (model, batch)}
        parts = []
        if "project" in loops and "bare" in loops:
            project, bare = loops["project"], loops["bare"]
            training = project["train_only_median_s"] / bare["train_only_median_s"]
            parts.append(f"project/bare = {project['median_s'] / bare['median_s']:.2f}")
            parts.append(f"training part: project/bare = {training:.2f}")
        if "project" in loops and "automatic" in loops:
            saved = loops["automatic"]["train_only_median_s"] - loops["project"]["train_only_median_s"]
            steps = loops["project"]["images"] / batch
            parts.append(
                f"automatic/project = {loops['automatic']['median_s'] / loops['project']['median_s']:.2f}"
                f" (the manual step saves {1000 * saved / steps:.2f} ms a step)"
            )
        if "project" in loops and "dataloader" in loops:
            speedup = loops["dataloader"]["median_s"] / loops["project"]["median_s"]
            parts.append(f"dataloader/project = {speedup:.2f}x")
        for loop in ("project +compile", "bare +compile"):
            if loop in loops and "bare" in loops:
                parts.append(f"{loop}/bare eager = {loops[loop]['median_s'] / loops['bare']['median_s']:.2f}")
        # Each loop in float32 against the same loop in another precision: the training part
        # (validation is float32 in both).
        for row in loops.values():
            if row.get("precision", "32") != "32":
                base = loops.get(_label({**row, "precision": "32"}))
                if base is not None:
                    speedup = base["train_only_median_s"] / row["train_only_median_s"]
                    parts.append(f"{_label(row)}: training {speedup:.2f}x as fast as float32")
        lines.append(f"{model}, batch {batch}: " + ", ".join(parts))
    return "\n".join(lines)


def _machine(device: str) -> str:
    return f"{describe(cuda=device != 'cpu')}, torch {torch.__version__}"


def _sweep_seconds(args: argparse.Namespace, launcher: list[str], workdir: Path) -> tuple[float, int]:
    """Wall-clock seconds of `python train.py -m` over args.sweep seeds, from start to exit, and the
    training images its jobs went through."""
    seeds = ",".join(str(args.seed + i) for i in range(args.sweep))
    command = [
        sys.executable, str(REPO / "train.py"), "-m", f"seed={seeds}", f"model={args.models[0]}",
        f"data.batch_size={args.batch_sizes[0]}", f"data.root={args.data_root.resolve()}",
        f"trainer.max_epochs={args.epochs}", "logger=none", "test=false",
        f"trainer.precision={args.precisions[0]}", f"hydra.sweep.dir={workdir}", *launcher, *args.overrides,
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    started = time.perf_counter()
    done = subprocess.run(command, cwd=workdir.parent, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or len(list(workdir.glob("*/metrics.json"))) != args.sweep:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    steps = sum(json.loads(p.read_text())["last_step"] for p in workdir.glob("*/metrics.json"))
    return seconds, steps * args.batch_sizes[0]


def sweep_throughput(args: argparse.Namespace) -> list[dict[str, Any]]:
    """A sweep of args.sweep jobs with the default (parallel) launcher and with Hydra's basic one
    (one job at a time), each args.rounds times in turn: images trained per second of the sweep."""
    from vae.config import parallel_jobs

    launchers = {"parallel": [], "basic": ["hydra/launcher=basic"]}
    seconds: dict[str, list[float]] = {name: [] for name in launchers}
    for round_number in range(args.rounds):
        for name, launcher in launchers.items():
            with tempfile.TemporaryDirectory() as workdir:
                took, images = _sweep_seconds(args, launcher, Path(workdir) / "sweep")
                seconds[name].append(took)
            print(
                f"  sweep of {args.sweep}, {name:<8} round {round_number + 1}: {seconds[name][-1]:6.1f} s",
                flush=True,
            )
    rows = []
    for name, times in seconds.items():
        median = statistics.median(times)
        jobs_at_once = parallel_jobs() if name == "parallel" else 1
        rows.append({"launcher": name, "jobs_at_once": jobs_at_once, "seconds": times, "median_s": median,
                     "images_per_s": images / median})  # fmt: skip
    return rows


def _sweep_table(rows: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"Sweep of {args.sweep} jobs ({args.models[0]}, batch {args.batch_sizes[0]},"
        f" {args.epochs} epochs each, start-up included):",
        "",
        "| launcher | jobs at once | seconds (median) | all runs | training images/s across the sweep |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        runs = ", ".join(f"{t:.1f}" for t in r["seconds"])
        lines.append(
            f"| {r['launcher']} | {r['jobs_at_once']} | {r['median_s']:.1f} | {runs}"
            f" | {r['images_per_s']:,.0f} |"
        )
    speedup = rows[1]["median_s"] / rows[0]["median_s"]
    return "\n".join(lines) + f"\n\nbasic / parallel = {speedup:.2f}x"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m vae.bench", description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=["categorical", "gaussian"])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[100, 1000])
    parser.add_argument("--loops", nargs="+", default=list(LOOPS), choices=LOOPS)
    parser.add_argument("--epochs", type=int, default=3, help="per run of a case; the first is warm-up")
    parser.add_argument(
        "--train-batches", type=int, default=0, help="train each epoch on this many batches (0: all)"
    )
    parser.add_argument(
        "--rounds", type=int, default=2, help="runs of each case, taken in turn with the other loops"
    )
    parser.add_argument("--compile", action="store_true", help="also time project and bare with compile=true")
    parser.add_argument("--device", default="auto", help="auto | cpu | gpu")
    parser.add_argument(
        "--precisions",
        nargs="+",
        default=["32"],
        help=f"training precisions to time each loop at: {', '.join(PRECISIONS)}",
    )
    parser.add_argument("--data-root", type=Path, default=REPO / "data", help="folder holding MNIST/raw/")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--overrides", nargs="*", default=[], help="train.py overrides for every loop")
    parser.add_argument("--out", type=Path, default=None, help="also write the rows as JSON here")
    parser.add_argument(
        "--sweep",
        type=int,
        default=0,
        help="instead: time a sweep of this many jobs, parallel vs basic launcher",
    )
    parser.add_argument("--case", choices=LOOPS, help=argparse.SUPPRESS)  # internal: one case
    args = parser.parse_args(argv)
    if args.epochs < (1 if args.sweep else 2):
        raise SystemExit(f"error: --epochs={args.epochs} is not allowed: at least 2 (the first is warm-up)")
    if args.sweep < 0:
        raise SystemExit(f"error: --sweep={args.sweep} is not allowed: a number of jobs >= 1")
    if args.train_batches < 0:
        raise SystemExit(
            f"error: --train-batches={args.train_batches} is not allowed: a number >= 0 (0: all)"
        )
    if args.rounds < 1:
        raise SystemExit(f"error: --rounds={args.rounds} is not allowed: at least 1")
    for precision in args.precisions:
        if precision not in PRECISIONS:
            raise SystemExit(
                f"error: --precisions={precision} is not allowed: one of {', '.join(PRECISIONS)}"
                " (the precisions every loop can run at)"
            )
    if not (args.data_root / "MNIST" / "raw").is_dir():
        raise SystemExit(f"error: --data-root={args.data_root}: no MNIST/raw/ folder there")
    if args.sweep and len(args.precisions) > 1:
        raise SystemExit(
            f"error: --precisions={' '.join(args.precisions)} is not allowed with --sweep: one precision"
        )
    if args.case:
        args.model, args.batch_size, args.precision = args.models[0], args.batch_sizes[0], args.precisions[0]
        _one_case(args)
        return
    if args.sweep:
        print(f"Machine: {_machine(args.device)}", flush=True)
        rows = sweep_throughput(args)
        print()
        print(_sweep_table(rows, args))
        if args.out:
            args.out.write_text(
                json.dumps({"machine": _machine(args.device), "sweep": rows}, indent=2) + "\n"
            )
        return

    print(
        f"Machine: {_machine(args.device)}; {args.rounds} rounds of {args.epochs} epochs per case,"
        " the first of each run excluded",
        flush=True,
    )
    rows = []
    for model in args.models:
        for batch_size in args.batch_sizes:
            cases = [
                (loop, model, batch_size, compiled, precision)
                for precision in args.precisions
                for loop in args.loops
                for compiled in ([False, True] if args.compile and loop in ("project", "bare") else [False])
            ]
            runs: dict[Case, list[dict[str, Any]]] = {case: [] for case in cases}
            # Round by round, every case once: a machine that slows down for a while (other
            # tenants, thermal limits) then slows every loop of the comparison alike.
            for round_number in range(args.rounds):
                for case in cases:
                    runs[case].append(_spawn(args, case))
                    epoch = statistics.median(runs[case][-1]["epoch_s"][1:])
                    label = _label({"loop": case[0], "compile": case[3], "precision": case[4]})
                    print(
                        f"  {model:<11} batch {batch_size:<5} {label:<17} round {round_number + 1}:"
                        f" {epoch:6.2f} s/epoch",
                        flush=True,
                    )
            rows += [_pooled(case, runs[case]) for case in cases]
    print()
    print(_table(rows))
    print()
    print(_ratios(rows))
    if args.out:
        args.out.write_text(json.dumps({"machine": _machine(args.device), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
