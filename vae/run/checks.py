"""Every value a run reads, checked before any work: one message naming the key, the value and
what is allowed (vae.errors.ConfigError), never a traceback from deep inside a library.

The config groups' constructors check their own arguments (vae/errors.py); what is checked
here are the run-level keys, the optimizer and trainer settings that torch and Lightning would
only reject later or with their own wording, and whether a checkpoint to resume fits the model.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from vae.config import group_options, is_config_group
from vae.errors import ConfigError, is_int, is_number

MAX_SEED = 2**32 - 1  # what torch and numpy accept


def _require(ok: bool, key: str, value: Any, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


def check_run_keys(cfg: DictConfig) -> None:
    """seed, test, compile, flush_denormal, iw_samples, ckpt_path."""
    seed = cfg.seed
    _require(is_int(seed) and 0 <= seed <= MAX_SEED, "seed", seed, f"must be an integer in [0, {MAX_SEED}]")
    for key in ("test", "compile", "flush_denormal"):
        _require(isinstance(cfg[key], bool), key, cfg[key], "must be true or false")
    iw = cfg.iw_samples
    _require(is_int(iw) and iw >= 0, "iw_samples", iw, "must be an integer >= 0 (0: off)")
    ckpt = cfg.ckpt_path
    _require(
        ckpt is None or isinstance(ckpt, str), "ckpt_path", ckpt, "must be the path of a checkpoint file"
    )


def check_optimizer(cfg: DictConfig) -> None:
    """optimizer.lr (torch only compares it with 0, so text or nan would pass or fail obscurely)."""
    lr = cfg.optimizer.get("lr")
    ok = is_number(lr) and math.isfinite(lr) and lr > 0
    _require(ok, "optimizer.lr", lr, "must be a finite number > 0")


def check_trainer(cfg: DictConfig) -> None:
    """The trainer keys whose wrong types Lightning reports as bare assertions or late errors."""
    trainer = cfg.trainer
    for key in ("max_epochs", "max_steps"):
        value = trainer.get(key)
        _require(
            value is None or (is_int(value) and value >= -1),
            f"trainer.{key}",
            value,
            "must be an integer >= 0, or -1 for no limit",
        )
    for key in ("log_every_n_steps", "check_val_every_n_epoch"):
        value = trainer.get(key)
        _require(
            value is None or (is_int(value) and value > 0), f"trainer.{key}", value, "must be an integer > 0"
        )
    for key in ("limit_train_batches", "limit_val_batches"):
        value = trainer.get(key)
        ok = value is None or (is_int(value) and value >= 0) or (isinstance(value, float) and 0 <= value <= 1)
        _require(ok, f"trainer.{key}", value, "must be a fraction in [0, 1] or a number of batches >= 0")
    precision = str(trainer.get("precision"))
    _require(
        not (cfg.get("group_optimizers") and precision.startswith("16")),
        "trainer.precision",
        precision,
        "with group_optimizers must be 32, 64 or bf16-mixed (16-bit precision scales the gradients"
        " for the main optimizer only)",
    )
    value = trainer.get("val_check_interval")
    ok = value is None or (is_int(value) and value >= 1) or (isinstance(value, float) and 0 < value <= 1)
    _require(
        ok,
        "trainer.val_check_interval",
        value,
        "must be a fraction of an epoch in (0, 1] or a number of steps >= 1",
    )


def check_resume(cfg: DictConfig, checkpoint_config: dict[str, Any], mismatched: list[str]) -> None:
    """Refuse to resume a checkpoint whose weights do not fit the model this run builds, naming the
    settings that differ from the checkpoint's (mismatched: the weights whose shapes differ)."""
    if not mismatched:
        return
    now = OmegaConf.to_container(cfg, resolve=True)
    differences = []
    for group in ("model", "network"):
        for key, (before, after) in _differences(
            checkpoint_config.get(group) or {}, now.get(group) or {}, group
        ):
            differences.append(f"{key}={after!r} (the checkpoint has {before!r})")
    detail = "; ".join(differences) or f"weights of other shapes: {', '.join(mismatched[:3])}"
    raise ConfigError(
        f"ckpt_path={cfg.ckpt_path!r}: the checkpoint holds another model than this run builds: {detail};"
        " resume with the checkpoint's model settings"
    )


def _differences(before: Any, after: Any, prefix: str) -> list[tuple[str, tuple[Any, Any]]]:
    """(key, (before, after)) for every leaf that differs between two nested dicts."""
    if isinstance(before, dict) and isinstance(after, dict):
        found = []
        for key in sorted(set(before) | set(after)):
            if key in ("encoder", "decoder") and prefix == "model":
                continue  # the same settings as network.encoder / network.decoder
            found += _differences(before.get(key), after.get(key), f"{prefix}.{key}" if prefix else key)
        return found
    return [] if before == after else [(prefix, (before, after))]


def resolved_data_root(cfg: DictConfig) -> str:
    """data.root as an absolute path: the checkpoint records it so the tools find the data from
    any working directory."""
    return str(Path(cfg.data.root).expanduser().resolve())


# What a resumed run may set differently from the run that wrote its checkpoint: how long it
# trains, what it measures at the end, where its files and logs go, the non-essential callbacks
# and the hardware. Everything else would make the resumed run another run than the one it
# continues (a learning rate in config.yaml that the restored optimizer does not use, an
# estimator switched mid-run, other data).
RESUME_MAY_CHANGE = (
    "trainer.max_steps",
    "trainer.max_epochs",
    "test",
    "iw_samples",
    "ckpt_path",
    "selection",
    "published",
    "paths",
    "logger",
    "callbacks",
    "data.root",
    "data.num_workers",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.default_root_dir",
    "trainer.log_every_n_steps",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "changes_on_resume",
)


def may_change_on_resume(key: str) -> bool:
    """Whether a resumed run may set this dotted key otherwise than the run it continues."""
    return any(key == k or key.startswith(k + ".") for k in RESUME_MAY_CHANGE)


def resume_changes(now: dict[str, Any], before: dict[str, Any], ckpt_path: str) -> dict[str, list[Any]]:
    """{key: [before, now]} for the settings a resumed run changes, all of them ones it may change
    (RESUME_MAY_CHANGE); any other difference from the checkpoint's run is refused, all named."""
    # Only what the checkpoint records: one of an earlier version may lack settings added since.
    changed = {key: [old, new] for key, (old, new) in _differences(before, now, "") if _records(before, key)}
    refused = [
        f"{key}={new!r} (the checkpoint's run has {old!r})"
        for key, (old, new) in changed.items()
        if not may_change_on_resume(key)
    ]
    if refused:
        raise ConfigError(
            f"ckpt_path={ckpt_path!r}: a resumed run continues the settings it was trained with, and these"
            f" differ: {'; '.join(refused)}; resume with the checkpoint's settings (only the length,"
            " the final test, logging, callbacks and where files go may change), or start a new run"
        )
    return changed


def _records(config: dict[str, Any], key: str) -> bool:
    """Whether a nested config holds the dotted key (as opposed to lacking it)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def refuse_numbers_for_groups(args: list[str]) -> None:
    """`tau=0`: a config group given a value that is not one of its options; Hydra stops with a
    traceback that does not name the group. Say it in one line, with the options on disk, and
    exit; called on train.py's command line before Hydra parses it."""
    for arg in args:
        key, sep, value = arg.partition("=")
        skip = arg.startswith(("-", "+", "~", "hydra")) or "," in value  # Hydra's groups have built-ins
        if skip or not sep or not is_config_group(key):
            continue
        options = group_options(key)
        if value not in options and value != "null":
            print(
                f"error: {key}={value} is not allowed: {key} is a config group, one of"
                f" {', '.join(options)} (its settings: {key}.<name>=...)",
                file=sys.stderr,
            )
            sys.exit(1)
