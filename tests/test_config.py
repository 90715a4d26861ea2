"""Every config group composes and builds; every bad value is stopped with its key named."""

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

import vae.run
from conftest import child_env
from vae.config import group_options, instantiate_node
from vae.errors import ConfigError
from vae.latents import TwoLayerBernoulliLatent

REPO = Path(__file__).resolve().parents[1]
GROUPS = {
    group: group_options(group)
    for group in ("model", "network", "tau", "optimizer", "logger", "trainer", "data", "debug")
}


def test_the_readme_lists_every_option_of_each_config_group_on_disk():
    """The README's table of config groups against configs/<group>/*.yaml, the one source."""
    rows = {}
    for line in (REPO / "README.md").read_text().splitlines():
        cells = line.split("|")
        if len(cells) > 3 and cells[1].strip().startswith("`"):
            rows[cells[1].strip().strip("`")] = sorted(re.findall(r"`([a-z_0-9]+)`", cells[2]))
    # Not in the table: set by train.yaml alone (paths, hydra), the cells of the paper tables'
    # sweeps (their experiment files list them), vae.diagnose's own, a W&B sweep file.
    unlisted = {"paths", "hydra", "jang2017_table1", "relax_table", "disarm_benchmark", "diagnose", "sweep"}
    groups = sorted(p.name for p in (REPO / "configs").iterdir() if p.is_dir() and p.name not in unlisted)
    assert {"model", "experiment", "objective", "optimizer"} <= set(groups)  # the listing found them
    for group in groups:  # every group a user picks from, each option on disk named in its row
        assert group in rows, f"README: no row for the config group {group}"
        assert rows[group] == group_options(group), group


def test_the_readme_estimator_table_has_a_row_for_every_estimator_config():
    """Every file of configs/model/estimator is the row of its name, or a preset of another (its
    `name` another estimator's) that the README names as model/estimator=<file>."""
    readme = (REPO / "README.md").read_text()
    header = readme.index("| `model.estimator=` |")
    rows = re.findall(r"^\| `([a-z_0-9]+)` \|", readme[header : readme.index("\n\n", header)], flags=re.M)
    configs = (REPO / "configs/model/estimator").glob("*.yaml")
    files = {p.stem: yaml.safe_load(p.read_text())["name"] for p in configs}
    assert sorted(rows) == sorted(stem for stem, name in files.items() if stem == name)
    for stem, name in files.items():
        assert stem == name or (name in rows and f"`model/estimator={stem}`" in readme), stem


@pytest.mark.parametrize("model", GROUPS["model"])
@pytest.mark.parametrize("network", GROUPS["network"])
@pytest.mark.parametrize("tau", GROUPS["tau"])
def test_every_model_network_and_schedule_builds_and_computes_a_finite_loss(make_config, model, network, tau):
    cfg = make_config([f"model={model}", f"network={network}", f"tau={tau}"])
    _, system = vae.run.build_checked(cfg)
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    terms = system.model.training_terms(x, system.tau_at(0))
    assert terms["neg_elbo"].shape == (4,) and torch.isfinite(terms["neg_elbo"]).all()
    assert (system.tau_schedule is not None) == (model == "categorical")


@pytest.mark.parametrize("network", GROUPS["network"])
def test_the_image_shape_flows_from_the_data_to_the_networks(make_config, network):
    # 3 x 12 x 16 images: the encoder reads them and the decoder writes that shape.
    cfg = make_config([f"network={network}", "data.image_shape=[3,12,16]"])
    datamodule, system = vae.run.build_checked(cfg)
    assert datamodule.image_shape == (3, 12, 16)
    x = torch.bernoulli(torch.full((2, 3, 12, 16), 0.5))
    assert system.model.decode(system.model.encode(x).sample()).mean.shape == (2, 3, 12, 16)


@pytest.mark.parametrize("optimizer", GROUPS["optimizer"])
def test_every_optimizer_builds(make_config, optimizer):
    cfg = make_config([f"optimizer={optimizer}", "optimizer.lr=0.0123"])
    _, system = vae.run.build_checked(cfg)
    built = system.configure_optimizers()
    assert type(built).__name__.lower() == optimizer
    assert built.param_groups[0]["lr"] == 0.0123


@pytest.mark.parametrize("logger", GROUPS["logger"])
def test_every_logger_trainer_and_callback_instantiates(make_config, logger):
    cfg = make_config([f"logger={logger}"])
    loggers = [instantiate_node(cfg, f"logger.{name}") for name in (cfg.get("logger") or {})]
    assert len(loggers) == (0 if logger == "none" else 1)
    callbacks = [instantiate_node(cfg, f"callbacks.{name}") for name in cfg.callbacks]
    trainer = instantiate_node(cfg, "trainer", logger=loggers or False, callbacks=callbacks)
    assert trainer.max_epochs == 100


@pytest.mark.parametrize(
    "override, message",
    [
        ("tau.tau0=0", "tau.tau0=0 is not allowed"),
        ("tau.tau0=-1.5", "tau.tau0=-1.5 is not allowed"),
        ("tau=constant tau.tau0=-1", "tau.tau0=-1 is not allowed"),
        ("tau.tau_min=0", "tau.tau_min=0 is not allowed"),
        ("tau.tau_min=2.0", "tau.tau_min=2.0 is not allowed: must be < tau0"),
        ("tau=cosine tau.num_steps=0", "tau.num_steps=0 is not allowed"),
        ("model.num_variables=0", "model.num_variables=0 is not allowed"),
        ("model.num_classes=-3", "model.num_classes=-3 is not allowed"),
        ("model=gaussian model.dim=0", "model.dim=0 is not allowed"),
        ("network.encoder.hidden_sizes=[512,0]", "network.encoder.hidden_sizes=0 is not allowed"),
        ("data.batch_size=0", "data.batch_size=0 is not allowed"),
        ("data=mnist data.val_size=60000", "data.val_size=60000 is not allowed: must be < 60000"),
        ("data.val_size=2000", "data.val_size=2000 is not allowed: must be < num_train (2000)"),
        ("data=fashion_mnist data.dataset=CIFAR10", "data.dataset='CIFAR10' is not allowed: one of MNIST,"),
        ("data.image_shape=[1,28]", "data.image_shape=[1, 28] is not allowed: must be [channels, height"),
        ("model.estimator=bogus", "model.estimator='bogus' is not allowed: must be one of gumbel_softmax"),
        ("model.estimator=exact", "it sums over every code and the 20x10 categorical latent cannot be"),
        ("data.val_size=0", "data.val_size=0 is not allowed"),
        ("data.binarization=grey", "data.binarization='grey' is not allowed: one of"),
        ("ckpt_path=/no/such.ckpt", "ckpt_path='/no/such.ckpt': /no/such.ckpt: no such"),
        ("trainer.gradient_clip_val=-1", "trainer.gradient_clip_val=-1 is not allowed: must be a finite"),
        ("trainer.gradient_clip_val=0", "trainer.gradient_clip_val=0 is not allowed"),
    ],
)
def test_bad_values_stop_before_any_work_naming_key_and_value(make_config, tmp_path, override, message):
    cfg = make_config(override.split())
    with pytest.raises(ConfigError) as error:
        vae.run.train(cfg)
    assert message in str(error.value)
    assert not (tmp_path / "run").exists()  # nothing written


def _cli(*overrides: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / "train.py"), *overrides, "paths.log_dir=" + str(cwd / "runs")],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=child_env(),
    )


def test_cli_unknown_model_lists_the_options(tmp_path):
    result = _cli("model=bogus", cwd=tmp_path)
    assert result.returncode != 0
    assert result.stderr.strip() == (
        "error: model=bogus is not allowed: model is a config group, one of bernoulli, bernoulli_two_layer,"
        " categorical, gaussian (its settings: model.<name>=...)"
    )


def test_cli_unknown_schedule_lists_the_options(tmp_path):
    result = _cli("tau=sigmoid", cwd=tmp_path)
    assert result.returncode != 0 and "error: tau=sigmoid is not allowed" in result.stderr
    assert "cosine" in result.stderr and "slope" in result.stderr


def test_cli_bad_value_is_one_message_without_a_traceback(tmp_path):
    result = _cli("tau.tau0=-1", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: tau.tau0=-1 is not allowed: must be a finite number > 0")
    assert "Traceback" not in result.stderr + result.stdout
    assert not list(tmp_path.glob("runs/**/metrics.json"))


def test_an_empty_wandb_mode_in_the_environment_counts_as_unset(monkeypatch, tmp_path):
    from vae.run.loggers import wandb_logger

    monkeypatch.setenv("WANDB_MODE", "")  # `export WANDB_MODE=` in a shell profile
    logger = wandb_logger(mode="offline", save_dir=str(tmp_path))
    try:
        assert logger.experiment.settings.mode == "offline"
    finally:
        logger.experiment.finish()
    assert list(tmp_path.glob("wandb/offline-run-*"))


def test_a_routine_run_prints_no_warning_a_user_cannot_act_on(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}  # W&B as a user has it
    env["WANDB_DIR"] = str(tmp_path)
    result = subprocess.run(
        [sys.executable, str(REPO / "train.py"), "data=synthetic", "trainer.max_epochs=1",
         "trainer.log_every_n_steps=5", "paths.log_dir=" + str(tmp_path / "runs")],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    output = result.stdout + result.stderr
    assert "offline" in output  # W&B went offline by itself, without asking
    for noise in ("anonymous", "Tip:", "deprecated", "Warning", "WARNING"):
        assert noise not in output, [line for line in output.splitlines() if noise in line]


def _protocol_cells() -> list[str]:
    import yaml

    experiment = yaml.safe_load((REPO / "configs" / "experiment" / "jang2017_table1_sgd.yaml").read_text())
    cells = experiment["hydra"]["sweeper"]["params"]["+jang2017_table1"]
    return [c.strip() for c in cells.split(",")]


@pytest.mark.parametrize("cell", _protocol_cells())
def test_every_cell_of_the_paper_protocol_table_builds_as_the_paper_says(make_config, cell):
    from vae.temperature import ExponentialTemperature, SlopeTemperature

    cfg = make_config(["experiment=jang2017_table1_sgd", f"+jang2017_table1={cell}"])
    _, system = vae.run.build_checked(cfg)
    optimizer = system.optimizer_factory(system.parameters())
    assert isinstance(optimizer, torch.optim.SGD) and optimizer.defaults["momentum"] == 0.9
    assert list(cfg.selection["keys"]) == ["optimizer.lr"] and cfg.trainer.max_steps == 50000
    assert cfg.published.table == "Jang et al. 2017, Table 1"
    estimator = system.model.latent.estimator_name
    if cell.endswith("annealed_st_slope"):  # the slope, not tau's schedule: 1 -> 5 over 100 epochs
        assert isinstance(system.tau_schedule, SlopeTemperature) and system.tau_schedule(550 * 100) == 0.2
    elif estimator in ("gumbel_softmax", "st_gumbel"):  # the stated (r, N) of the paper's grid
        assert isinstance(system.tau_schedule, ExponentialTemperature)
        assert (system.tau_schedule.rate, system.tau_schedule.update_every) == (1e-4, 1000)
    if estimator in ("reinforce", "nvil", "darn", "muprop"):
        assert system.model.latent.estimator.normalizer.enabled  # variance normalization, as the paper
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    assert torch.isfinite(system.model.training_terms(x, system.tau_at(0))["neg_elbo"]).all()


def _sweep_values(experiment: str, key: str) -> list[str]:
    import yaml

    config = yaml.safe_load((REPO / "configs" / "experiment" / f"{experiment}.yaml").read_text())
    return [value.split("#")[0].strip() for value in config["hydra"]["sweeper"]["params"][key].split(",")]


@pytest.mark.parametrize("experiment", ["disarm_linear", "disarm_nonlinear"])
@pytest.mark.parametrize("row", _sweep_values("disarm_linear", "+disarm_benchmark"))
def test_every_row_of_the_disarm_benchmark_builds_and_the_linear_ones_train_two_steps(
    make_config, experiment, row
):
    assert _sweep_values(experiment, "+disarm_benchmark") == _sweep_values(
        "disarm_linear", "+disarm_benchmark"
    )
    overrides = [
        f"experiment={experiment}",
        f"+disarm_benchmark={row}",
        "data=synthetic",
        "data.val_size=100",
    ]
    short = [
        "trainer.max_steps=2",
        "logger=none",
        "test=false",
        "callbacks.gradient_variance.every_n_steps=1",
    ]
    cfg = make_config([*overrides, *short])
    expected = {"vimco_2": ("vimco", 2), "relax": ("relax", 3)}.get(row, (row.removesuffix("_2"), 2))
    if row == "relax":  # the control variate's own optimizer, as the file says
        assert cfg.group_optimizers.control_variate.weight_decay == 1e-3
    if experiment == "disarm_nonlinear":  # the same rows on a bigger network: built and checked
        model = vae.run.prepare(cfg).system.model
        assert (model.estimator_name, model.decoder_passes) == expected
        return
    metrics = vae.run.train(cfg)
    assert (metrics["estimator"], metrics["decoder_passes"]) == expected
    assert math.isfinite(metrics["val/neg_elbo"])


# The RELAX paper's Table 1, MNIST: its three rows (experiment, row prefix) and their numbers.
RELAX_TABLE = {
    "linear": {"nvil": 112.5, "muprop": 111.7, "rebar": 111.6, "relax": 111.20, "concrete": 111.3},
    "two_layer": {"nvil": 99.6, "muprop": 99.07, "rebar": 98.22, "relax": 98.00, "concrete": 99.62},
    "nonlinear": {"nvil": 101.5, "muprop": 101.1, "rebar": 81.01, "relax": 78.13, "concrete": 102.2},
}
RELAX_CELLS = [
    (experiment, cell)
    for experiment in ("relax_linear", "relax_two_layer", "relax_nonlinear")
    for cell in _sweep_values(experiment, "+relax_table")
]


@pytest.mark.parametrize(("experiment", "cell"), RELAX_CELLS)
def test_every_cell_of_the_relax_table_builds_as_the_paper_and_the_rebar_code_say(
    make_config, experiment, cell
):
    cfg = make_config(
        [f"experiment={experiment}", f"+relax_table={cell}", "optimizer.lr=5e-4", "data.val_size=100"]
    )
    _, system = vae.run.build_checked(cfg)
    assert (cfg.data.batch_size, cfg.trainer.max_steps, cfg.data.binarization) == (24, 2_000_000, "fixed")
    row, estimator = cell.rsplit("_", 1)
    assert cfg.published.value == RELAX_TABLE[row][estimator]
    assert cfg.published.metric == "train_set/neg_elbo_best" and "training_set_elbo" in cfg.callbacks
    model = system.model
    linear_layers = sum(isinstance(m, torch.nn.Linear) for m in model.encoder.modules())
    assert linear_layers == (3 if row == "nonlinear" else 1)  # 784-200-200-200 tanh, or linear
    if row == "two_layer":  # z2 -> z1 -> x, q(z2|z1) and p(z1|z2) linear, both layers the row's estimator
        assert isinstance(model.latent, TwoLayerBernoulliLatent)
        assert len(model.latent.upper_encoder) == len(model.latent.upper_decoder) == 1
        assert model.latent.upper.estimator_name == model.latent.estimator.name
    assert model.parameter_groups()["prior"]  # learned
    main, *groups = (
        e["optimizer"] if isinstance(e, dict) else e for e in _as_list(system.configure_optimizers())
    )
    assert isinstance(main, torch.optim.Adam) and main.defaults["betas"] == (0.9, 0.99999)
    control_variate = {"nvil": 5e-3, "muprop": 5e-3, "rebar": 5e-3, "relax": 5e-4}  # 10x the rate; RELAX: 1x
    if estimator == "muprop":  # the REBAR code's: learned scales, an input baseline, no normalization
        settings = model.latent.estimator.settings()
        assert settings["learned_scales"] and settings["baseline_hidden_size"] == 100
        assert not settings["normalize"]
    if estimator in control_variate:
        (own,) = groups
        assert own.defaults["lr"] == pytest.approx(control_variate[estimator])
    else:
        assert not groups
    x = torch.bernoulli(torch.full((4, 1, 28, 28), 0.3))
    assert torch.isfinite(model.training_terms(x, system.tau_at(0))["neg_elbo"]).all()


def _as_list(optimizers):
    return optimizers if isinstance(optimizers, list) else [optimizers]


def _experiment_variants() -> list[tuple[str, list[str]]]:
    """(experiment, overrides) for each experiment file on disk: its sweep's first point, then each
    other value of each swept key with the rest at their first values."""
    import yaml

    variants = []
    for experiment in group_options("experiment"):
        config = yaml.safe_load((REPO / "configs" / "experiment" / f"{experiment}.yaml").read_text())
        params = ((config.get("hydra") or {}).get("sweeper") or {}).get("params") or {}
        grid = {k: [v.split("#")[0].strip() for v in str(vals).split(",")] for k, vals in params.items()}
        first = [f"{k}={vals[0]}" for k, vals in grid.items()]
        variants.append((experiment, first))
        for key, values in grid.items():
            for value in values[1:]:
                variants.append(
                    (experiment, [o if not o.startswith(f"{key}=") else f"{key}={value}" for o in first])
                )
    return variants


@pytest.mark.parametrize(("experiment", "overrides"), _experiment_variants(), ids=lambda v: str(v))
def test_every_experiment_file_composes_and_builds_at_every_value_it_sweeps(
    make_config, experiment, overrides
):
    """The experiment files behind the README's tables, on synthetic data: each point of each
    sweep builds a model whose training loss is finite on a batch."""
    seed_free = [o for o in overrides if not o.startswith("seed=")]
    cfg = make_config(
        [f"experiment={experiment}", *seed_free, "data=synthetic", "data.val_size=100", "logger=none"]
    )
    datamodule, system = vae.run.build_checked(cfg)
    x = torch.bernoulli(torch.full((4, *datamodule.image_shape), 0.3))
    terms = system.model.training_terms(x, system.tau_at(0))
    assert torch.isfinite(terms["loss"]).all() and terms["loss"].requires_grad
