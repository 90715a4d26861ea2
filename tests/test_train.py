"""vae.run.train() end to end on synthetic data, a few batches at a time (seconds each)."""

import copy
import csv
import json
import math

import pytest
import torch
from torch.distributions import kl_divergence

import vae
import vae.run
from vae.checkpoint import read_checkpoint
from vae.data import SyntheticImages
from vae.errors import ConfigError, NonFiniteLossError
from vae.evaluation import latent_health
from vae.model import VAE
from vae.temperature import ExponentialTemperature
from vae.training import VAETraining

SHORT = ["logger=csv", "trainer.limit_val_batches=1", "data.eval_batch_size=500"]
# tau changes at every step so a wrong step shows up as a wrong tau.
FAST_TAU = ["tau.rate=0.01", "tau.update_every=1", "tau.tau_min=0.1"]


def _csv_rows(run_dir):
    with open(run_dir / "csv" / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize(
    "model, extra",
    [("gaussian", []), ("categorical", []), ("categorical", ["model.estimator=st_gumbel"])],
)
def test_fast_dev_run(make_config, tmp_path, model, extra):
    metrics = vae.run.train(make_config([f"model={model}", "debug=fast", *extra]))
    written = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert written == pytest.approx(metrics)
    for stage in ("val", "test"):
        assert written[f"{stage}/neg_elbo"] == pytest.approx(
            written[f"{stage}/recon"] + written[f"{stage}/kl"], rel=1e-5
        )
    assert ("test/neg_elbo_relaxed" in written) == (model == "categorical")
    assert (tmp_path / "run" / "config.yaml").exists()


def test_tau_and_step_survive_a_checkpoint_and_a_resume(make_config, tmp_path):
    first = make_config(
        [*SHORT, *FAST_TAU, "trainer.max_epochs=2", "trainer.limit_train_batches=15"], "first"
    )
    vae.run.train(first)
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    schedule = ExponentialTemperature(tau0=1.0, tau_min=0.1, rate=0.01, update_every=1)

    model = vae.load(last)
    assert model.step == 30
    assert model.tau == schedule(30) < 1.0

    resumed = make_config(
        [
            *SHORT,
            *FAST_TAU,
            "trainer.max_epochs=3",
            "trainer.limit_train_batches=15",
            "trainer.log_every_n_steps=1",
            f"ckpt_path={last}",
        ],
        "resumed",
    )
    metrics = vae.run.train(resumed)
    assert metrics["global_step"] == 45
    rows = [r for r in _csv_rows(tmp_path / "resumed") if r.get("train/tau")]
    steps = [int(r["step"]) for r in rows]
    assert steps[0] == 30 and steps[-1] == 44  # continued, not restarted
    for row in rows:
        assert float(row["train/tau"]) == pytest.approx(schedule(int(row["step"])))


def test_same_seed_same_numbers_other_seed_other_numbers(make_config):
    overrides = [*SHORT, "trainer.max_epochs=1", "trainer.limit_train_batches=20"]
    a = vae.run.train(make_config([*overrides, "seed=5"], "a"))
    b = vae.run.train(make_config([*overrides, "seed=5"], "b"))
    c = vae.run.train(make_config([*overrides, "seed=6"], "c"))
    keys = [k for k in a if k.startswith(("val/", "test/"))]
    assert {k: a[k] for k in keys} == {k: b[k] for k in keys}
    assert a["test/neg_elbo"] != c["test/neg_elbo"]


def test_deferred_finite_check_names_the_first_bad_step_and_keeps_checkpoints(
    make_config, tmp_path, monkeypatch
):
    # The GPU path: no host sync per step; the first bad step is recorded on the device and
    # read every finite_check_every_n_steps steps and before validation.
    step_terms, on_train_start = VAETraining.step_terms, VAETraining.on_train_start

    def terms_that_break_at_step_23(self, x, tau):
        if self.global_step >= 23:
            x = x * float("nan")
        return step_terms(self, x, tau)

    def check_every_5_steps(self):
        self.finite_check_every_n_steps = 5
        on_train_start(self)

    monkeypatch.setattr(VAETraining, "step_terms", terms_that_break_at_step_23)
    monkeypatch.setattr(VAETraining, "on_train_start", check_every_5_steps)
    cfg = make_config([*SHORT, *FAST_TAU, "trainer.max_epochs=5", "trainer.limit_train_batches=10"])
    with pytest.raises(NonFiniteLossError, match=r"global step 23 with tau="):
        vae.run.train(cfg)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 20
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())


def test_non_finite_loss_stops_naming_step_and_tau_and_keeps_checkpoints(make_config, tmp_path, monkeypatch):
    step_terms = VAETraining.step_terms

    def terms_that_break_at_step_25(self, x, tau):
        if self.global_step >= 25:
            x = x * float("nan")
        return step_terms(self, x, tau)

    monkeypatch.setattr(VAETraining, "step_terms", terms_that_break_at_step_25)
    cfg = make_config([*SHORT, *FAST_TAU, "trainer.max_epochs=5", "trainer.limit_train_batches=10"])
    with pytest.raises(NonFiniteLossError, match=r"global step 25 with tau=0\.7788"):
        vae.run.train(cfg)
    monkeypatch.setattr(VAETraining, "step_terms", step_terms)
    checkpoint = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["global_step"] == 20
    assert all(torch.isfinite(v).all() for v in checkpoint["state_dict"].values())
    assert vae.load(tmp_path / "run" / "checkpoints" / "last.ckpt").step == 20


def test_logged_numbers_equal_numbers_computed_by_hand_from_encode_decode_prior(make_config, tmp_path):
    metrics = vae.run.train(
        make_config(["logger=csv", "trainer.max_epochs=1", "trainer.limit_train_batches=15", "seed=7"])
    )
    model = vae.load(metrics["checkpoint"])
    data = vae.load_data(metrics["checkpoint"])
    assert torch.equal(data.test_images, _synthetic_test_images())  # the data it was trained on
    # Test draws its z from a generator of its own, seeded with the run's seed: the same draws here.
    generator = torch.Generator().manual_seed(7)
    recon, kl = [], []
    with torch.no_grad():
        for x in data.test_dataloader():
            q = model.encode(x)  # q(z|x)
            recon.append(-model.decode(q.sample(generator=generator)).log_prob(x))  # -log p(x|z), z one-hot
            kl.append(kl_divergence(q, model.prior()))  # KL(q(z|x) || p(z))
    recon, kl = torch.cat(recon), torch.cat(kl)
    assert recon.shape == kl.shape == (500,)
    assert kl.mean().item() == pytest.approx(metrics["test/kl"], rel=1e-5)
    assert recon.mean().item() == pytest.approx(metrics["test/recon"], rel=1e-5)
    # The latent's health on the test images, its numbers (not its per-variable lists), as
    # vae.evaluate computes it from the checkpoint.
    health = latent_health(model, [data.test_images])
    numbers = {name: value for name, value in health.items() if not isinstance(value, list)}
    expected = {"latent/in_use", "latent/coordinates", "latent/perplexity_mean", "latent/ignored_variables"}
    assert expected <= set(numbers)
    assert {name: metrics[name] for name in numbers} == pytest.approx(numbers, rel=1e-5)
    assert "latent/perplexity" in health and "latent/perplexity" not in metrics
    # Without that generator, another draw: the numbers then agree only within Monte Carlo error.
    with torch.no_grad():
        q = model.encode(data.test_images)
        other = -model.decode(q.sample(generator=torch.Generator().manual_seed(8))).log_prob(data.test_images)
    assert other.mean().item() != pytest.approx(metrics["test/recon"], rel=1e-5)
    standard_error = other.std().item() / math.sqrt(len(other))
    assert abs(other.mean().item() - metrics["test/recon"]) < 5 * math.sqrt(2) * standard_error


def _synthetic_test_images():
    datamodule = SyntheticImages()
    datamodule.setup()
    return datamodule.test_images


def test_st_gumbel_trains_on_exactly_one_hot_codes(make_config, monkeypatch):
    seen = []
    decode = VAE.decode

    def recording_decode(self, z):
        if self.training:
            seen.append(z.detach().clone())
        return decode(self, z)

    monkeypatch.setattr(VAE, "decode", recording_decode)
    cfg = make_config([*SHORT, "model.estimator=st_gumbel", "trainer.max_steps=3", "test=false"])
    vae.run.train(cfg)
    assert len(seen) == 3
    for z in seen:
        assert z.shape == (100, 20, 10)
        assert set(z.unique().tolist()) == {0.0, 1.0} and (z.sum(-1) == 1).all()


def test_a_new_run_never_writes_into_a_finished_run(make_config, tmp_path):
    cfg = make_config(["debug=fast"])
    vae.run.train(cfg)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    before = checkpoint.read_bytes()
    with pytest.raises(ConfigError, match="already holds checkpoints and metrics.json"):
        vae.run.train(make_config(["debug=fast", "seed=1"]))
    assert checkpoint.read_bytes() == before


def test_resuming_with_other_data_settings_is_refused_before_any_work(make_config, tmp_path):
    vae.run.train(make_config(["debug=fast"], "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    cfg = make_config(["debug=fast", "data.binarization_seed=7", f"ckpt_path={last}"], "second")
    with pytest.raises(
        ConfigError,
        match="data.binarization_seed=7 is not allowed: the checkpoint was trained with 0",
    ):
        vae.run.train(cfg)
    assert not (tmp_path / "second").exists()


@pytest.mark.parametrize("flush", [True, False])
def test_flush_denormal_setting_is_applied(make_config, flush):
    subnormal = torch.tensor([1e-40])  # below float32's smallest normal number (1.2e-38)
    try:
        vae.run.train(make_config(["debug=fast", f"flush_denormal={str(flush).lower()}"]))
        assert ((subnormal * 1.0).item() == 0.0) == flush
    finally:
        torch.set_flush_denormal(False)  # the process default, for the tests that follow


@pytest.mark.parametrize("estimator", ["gumbel_softmax", "reinmax", "reinforce_loo"])
def test_bf16_mixed_precision_trains_with_finite_numbers(make_config, estimator):
    # Under autocast the networks run in bfloat16; noise, softmax and the loss stay in float32.
    cfg = make_config(
        [
            *SHORT,
            f"model.estimator={estimator}",
            "trainer.precision=bf16-mixed",
            "trainer.max_epochs=2",
            "test=false",
        ]
    )
    metrics = vae.run.train(cfg)
    assert metrics["global_step"] == 36  # 2 epochs of 1800 synthetic images
    assert all(math.isfinite(v) for k, v in metrics.items() if k.startswith("val/"))
    assert metrics["val/neg_elbo"] < 540  # moved away from the untrained model's ~540 nats


@pytest.mark.parametrize("clip", [None, 0.5])
def test_gradient_clip_val_bounds_the_norm_of_every_update(make_config, monkeypatch, clip):
    norms = []

    def record_norm(self, optimizer):  # Lightning calls it right before the update
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms.append(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item())

    monkeypatch.setattr(VAETraining, "on_before_optimizer_step", record_norm)
    override = "null" if clip is None else clip
    run = ["trainer.max_epochs=1", "trainer.limit_train_batches=15", "test=false"]
    metrics = vae.run.train(make_config([*SHORT, *run, f"trainer.gradient_clip_val={override}"]))
    assert len(norms) == metrics["global_step"] == 15
    recorded = read_checkpoint(metrics["checkpoint"])["vae_config"]  # the checkpoint's config has it
    assert recorded["trainer"]["gradient_clip_val"] == clip
    if clip is None:
        assert max(norms) > 0.5  # so the clipped run below has something to clip
    else:
        assert max(norms) <= clip * (1 + 1e-5)


def test_a_checkpoint_of_automatic_optimization_resumes_at_its_step(make_config, tmp_path):
    """Checkpoints written while Lightning made the optimizer step (before VAE.training_step made
    it) count their steps in the automatic-optimization loop; a resume continues from there."""
    first = [*SHORT, *FAST_TAU, "trainer.limit_train_batches=15"]
    vae.run.train(make_config([*first, "trainer.max_epochs=1"], "first"))
    checkpoint = torch.load(tmp_path / "first" / "checkpoints" / "last.ckpt", weights_only=True)
    fit_loop = checkpoint["loops"]["fit_loop"]
    manual = fit_loop["epoch_loop.manual_optimization.optim_step_progress"]
    automatic = fit_loop["epoch_loop.automatic_optimization.optim_progress"]["optimizer"]
    assert manual["total"]["completed"] == 15 and automatic["step"]["total"]["completed"] == 0
    automatic["step"] = copy.deepcopy(manual)  # as automatic optimization wrote it
    fit_loop["epoch_loop.manual_optimization.optim_step_progress"] = {
        part: dict.fromkeys(counts, 0) for part, counts in manual.items()
    }
    torch.save(checkpoint, tmp_path / "automatic.ckpt")

    metrics = vae.run.train(
        make_config([*first, "trainer.max_epochs=2", f"ckpt_path={tmp_path / 'automatic.ckpt'}"], "resumed")
    )
    assert metrics["global_step"] == 30  # 15 + 15, not a restart at 0
    assert metrics["tau"] == pytest.approx(ExponentialTemperature(1.0, 0.1, 0.01, 1)(30))


def test_the_step_learning_rate_schedule_multiplies_the_rate_and_resumes(make_config, tmp_path):
    schedule = ["lr_schedule=step", "lr_schedule.step_size=10", "lr_schedule.gamma=0.5"]
    vae.run.train(make_config([*SHORT, *schedule, "trainer.max_epochs=1"], "first"))
    checkpoint = torch.load(tmp_path / "first" / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.5)  # 18 steps
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    vae.run.train(make_config([*SHORT, *schedule, "trainer.max_epochs=2", f"ckpt_path={last}"], "resumed"))
    resumed = torch.load(tmp_path / "resumed" / "checkpoints" / "last.ckpt", weights_only=True)
    assert resumed["optimizer_states"][0]["param_groups"][0]["lr"] == pytest.approx(1e-3 * 0.5**3)  # 36 steps


def test_a_run_shorter_than_two_epochs_validates_every_tenth_of_its_steps(make_config, tmp_path):
    metrics = vae.run.train(make_config(["logger=csv", "trainer.max_steps=25", "trainer.max_epochs=-1"]))
    rows = _csv_rows(tmp_path / "run")
    # Lightning logs a validation at step s (after s optimizer steps) on the row of step s - 1.
    validated = sorted({int(r["step"]) + 1 for r in rows if r.get("val/neg_elbo")})
    assert validated[:-1] == list(range(2, 25, 2))  # every 2 steps (then the final validation)
    assert metrics["validation"] == "best of validations every 2 steps" and metrics["last_step"] == 25
    assert metrics["global_step"] in validated  # the checkpoint reported is one that was validated
    # A cadence the user sets is kept; a run of two epochs or more validates at epoch ends.
    assert vae.run.train(make_config(["trainer.max_epochs=2", "logger=none"], "two"))["validation"] == (
        "best of validations each epoch"
    )


@pytest.mark.parametrize("model", [["model=categorical"], ["model=bernoulli", "model.estimator=arm"]])
def test_the_gradient_variance_callback_logs_and_leaves_training_alone(make_config, tmp_path, model):
    run = [*SHORT, *model, "trainer.max_epochs=2", "trainer.log_every_n_steps=1"]
    measured = vae.run.train(
        make_config(
            [*run, "callbacks=gradient_variance", "callbacks.gradient_variance.every_n_steps=6"], "with"
        )
    )
    plain = vae.run.train(make_config(run, "without"))
    rows = _csv_rows(tmp_path / "with")
    logged = {
        int(r["step"]): float(r["train/encoder_grad_variance"])
        for r in rows
        if r.get("train/encoder_grad_variance")
    }
    assert sorted(logged) == [6, 12, 18, 24, 30, 36] and all(v > 0 for v in logged.values())
    losses = lambda name: [r["train/neg_elbo"] for r in _csv_rows(tmp_path / name) if r.get("train/neg_elbo")]  # noqa: E731
    assert losses("with") == losses("without")  # the measurement draws from a fork of the stream
    assert measured["val/neg_elbo"] == plain["val/neg_elbo"]


def test_the_training_set_elbo_is_logged_at_each_validation_and_leaves_training_alone(make_config, tmp_path):
    run = [*SHORT, "trainer.max_epochs=2", "trainer.log_every_n_steps=1", "data.binarization=fixed"]
    measured = vae.run.train(make_config([*run, "callbacks=training_set_elbo"], "with"))
    plain = vae.run.train(make_config(run, "without"))
    rows = _csv_rows(tmp_path / "with")
    logged = {int(r["step"]): float(r["train_set/neg_elbo"]) for r in rows if r.get("train_set/neg_elbo")}
    val_steps = sorted(int(r["step"]) for r in rows if r.get("val/neg_elbo"))
    assert sorted(logged) == val_steps[:2] and len(logged) == 2  # each epoch's validation
    losses = lambda name: [r["train/neg_elbo"] for r in _csv_rows(tmp_path / name) if r.get("train/neg_elbo")]  # noqa: E731
    assert losses("with") == losses("without") and measured["val/neg_elbo"] == plain["val/neg_elbo"]

    # Computed again from the final weights (vae.load, at the tau of their step), on the training
    # images the run trained on, with validation's noise (seeded with the run's seed).
    model = vae.load(tmp_path / "with" / "checkpoints" / "last.ckpt")
    datamodule = vae.run.build_checked(make_config(run, "again"))[0]
    datamodule.setup()
    generator = torch.Generator().manual_seed(measured["seed"])
    total = sum(
        model.evaluation_terms(x, model.tau, generator)["neg_elbo"].double().sum()
        for x in datamodule.train_images.split(1000)
    )
    assert logged[max(logged)] == pytest.approx(total.item() / len(datamodule.train_images), rel=1e-5)
    assert abs(logged[max(logged)] - measured["val/neg_elbo"]) < 50  # the same model on like images


def test_a_resume_with_another_learning_rate_or_estimator_is_refused_naming_each(make_config, tmp_path):
    vae.run.train(make_config([*SHORT, "trainer.max_epochs=1"], "first"))
    run = tmp_path / "first"
    last = run / "checkpoints" / "last.ckpt"
    before = {p: p.read_bytes() for p in [run / "config.yaml", last]}
    changed = [
        *SHORT,
        "trainer.max_epochs=2",
        "optimizer.lr=0.01",
        "model.estimator=st_gumbel",
        f"ckpt_path={last}",
    ]
    with pytest.raises(ConfigError) as error:
        vae.run.train(make_config(changed, "first"))
    message = str(error.value)
    assert "optimizer.lr=0.01 (the checkpoint's run has 0.001)" in message
    assert "model.estimator='st_gumbel'" in message and "\n" not in message
    assert "trainer.max_epochs" not in message  # training longer is allowed
    assert {p: p.read_bytes() for p in before} == before  # nothing rewritten


def test_a_resume_that_trains_longer_is_recorded_and_a_finished_run_is_not_run_again(make_config, tmp_path):
    vae.run.train(make_config([*SHORT, "trainer.max_epochs=1"], "first"))
    last = tmp_path / "first" / "checkpoints" / "last.ckpt"
    with pytest.raises(ConfigError, match="this run finished"):
        vae.run.train(make_config([*SHORT, "trainer.max_epochs=1", f"ckpt_path={last}"], "first"))
    stale = (tmp_path / "first" / "metrics.json").read_text()
    metrics = vae.run.train(make_config([*SHORT, "trainer.max_epochs=2", f"ckpt_path={last}"], "first"))
    assert metrics["changes_on_resume"] == [{"step": 18, "changes": {"trainer.max_epochs": [1, 2]}}]
    assert metrics["last_step"] == 36

    # Killed after training to step 36 and before its metrics.json (during the final test): the
    # metrics.json left is step 18's. A resume then tests the run rather than calling it finished.
    (tmp_path / "first" / "metrics.json").write_text(stale)
    again = vae.run.train(make_config([*SHORT, "trainer.max_epochs=2", f"ckpt_path={last}"], "first"))
    assert again["last_step"] == 36 and again["test/neg_elbo"] == metrics["test/neg_elbo"]
    with pytest.raises(ConfigError, match="this run finished"):  # and now it is finished
        vae.run.train(make_config([*SHORT, "trainer.max_epochs=2", f"ckpt_path={last}"], "first"))


@pytest.mark.parametrize(
    "overrides, named",
    [
        (["optimizer.lr=1e3"], "val/neg_elbo="),  # finite, but 10^5 nats
        (
            ["model=bernoulli", "model.estimator=reinforce", "optimizer.lr=1e6"],
            "normalizer.variance holds inf",
        ),
    ],
)
def test_a_diverged_run_fails_with_one_line_and_writes_no_checkpoint(make_config, tmp_path, overrides, named):
    from vae.errors import DivergedError

    with pytest.raises(DivergedError) as error:
        vae.run.train(make_config([*overrides, "trainer.max_epochs=2", "logger=none"]))
    assert named in str(error.value) and "\n" not in str(error.value)
    assert not list((tmp_path / "run").rglob("*.ckpt"))
    assert not (tmp_path / "run" / "metrics.json").exists()


def test_evaluation_is_float32_under_bf16_mixed_precision(make_config):
    # Validation and test run inside Lightning's bf16 autocast; their numbers must be those of the
    # float32 model all the same.
    _, system = vae.run.build_checked(make_config(["model=bernoulli", "model.estimator=nvil"]))
    x = torch.bernoulli(torch.full((64, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(1))
    plain = system.model.evaluation_terms(x, None, generator=torch.Generator().manual_seed(0))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = system.model.evaluation_terms(x, None, generator=torch.Generator().manual_seed(0))
    for name, value in plain.items():
        assert autocast[name].dtype == torch.float32
        assert torch.equal(autocast[name], value), name


@pytest.mark.parametrize(
    "overrides, group",
    [
        (["model=bernoulli", "model.prior=learned"], "prior"),
        (["model=bernoulli", "model.estimator=nvil"], "control_variate"),
        (["model=bernoulli", "model.estimator=relax"], "control_variate"),
    ],
)
def test_a_group_optimizer_trains_its_group_and_the_main_optimizer_the_rest(make_config, overrides, group):
    sgd = f"+group_optimizers.{group}={{_target_:torch.optim.SGD,_partial_:true,lr:0.5}}"
    system = vae.run.prepare(make_config([*overrides, sgd])).system
    main, own = (
        entry["optimizer"] if isinstance(entry, dict) else entry for entry in system.configure_optimizers()
    )
    grouped = system.model.parameter_groups()[group]
    main_ids = {id(p) for g in main.param_groups for p in g["params"]}
    own_ids = {id(p) for g in own.param_groups for p in g["params"]}
    assert own_ids == {id(p) for p in grouped} and not main_ids & own_ids
    assert main_ids | own_ids == {id(p) for p in system.model.parameters()}
    # One step: the group moves by -lr * grad (plain SGD), whatever the main optimizer (Adam) does.
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3), generator=torch.Generator().manual_seed(0))
    before = [p.detach().clone() for p in grouped]
    for optimizer in (main, own):
        optimizer.zero_grad()
    system.model.training_terms(x, 1.0)["loss"].mean().backward()
    grads = [p.grad.clone() for p in grouped]
    main.step()
    own.step()
    for p, b, g in zip(grouped, before, grads, strict=True):
        assert torch.allclose(p.detach(), b - 0.5 * g, atol=1e-7)


def test_max_steps_counts_batches_with_group_optimizers(make_config, monkeypatch, tmp_path):
    # Lightning adds one to global_step for each optimizer a manual step calls (its issue
    # #17958): with a learned prior's and a control variate's optimizers beside the main one,
    # max_steps=6 trained 2 batches. Every optimizer must step once a batch, max_steps batches.
    batches = []
    training_step = VAETraining.training_step

    def counting_step(self, x, batch_idx):
        batches.append(self.global_step)
        return training_step(self, x, batch_idx)

    monkeypatch.setattr(VAETraining, "training_step", counting_step)
    sgd = "{_target_:torch.optim.SGD,_partial_:true,lr:0.01,momentum:0.5}"
    cfg = make_config(
        [
            *SHORT,
            "model=bernoulli",
            "model.estimator=nvil",
            "model.prior=learned",
            f"+group_optimizers.prior={sgd}",
            f"+group_optimizers.control_variate={sgd}",
            "trainer.max_steps=6",
            "test=false",
        ]
    )
    vae.run.train(cfg)
    assert batches == [0, 1, 2, 3, 4, 5]
    checkpoint = read_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert checkpoint["global_step"] == 6
    main, *groups = checkpoint["optimizer_states"]
    assert {int(state["step"]) for state in main["state"].values()} == {6}  # Adam counts its steps
    for group in groups:  # SGD's momentum buffers exist once it has stepped; 2 groups
        assert group["state"] and all("momentum_buffer" in state for state in group["state"].values())
    assert len(groups) == 2


def test_16_bit_precision_with_group_optimizers_is_refused(make_config, tmp_path):
    sgd = "{_target_:torch.optim.SGD,_partial_:true,lr:0.5}"
    cfg = make_config(
        [
            "model=bernoulli",
            "model.prior=learned",
            f"+group_optimizers.prior={sgd}",
            "trainer.precision=16-mixed",
        ]
    )
    with pytest.raises(ConfigError, match=r"^trainer.precision='16-mixed' is not allowed: with group_opt"):
        vae.run.train(cfg)
    assert not (tmp_path / "run").exists()


def test_a_group_the_model_lacks_is_refused_naming_the_groups_it_has(make_config, tmp_path):
    sgd = "{_target_:torch.optim.SGD,_partial_:true,lr:0.5}"
    with pytest.raises(ConfigError, match=r"^group_optimizers.prior is not allowed: .* are: none"):
        vae.run.prepare(make_config(["model=bernoulli", f"+group_optimizers.prior={sgd}"]))
    with pytest.raises(ConfigError, match=r"^group_optimizers.baseline is not allowed: .* are: prior$"):
        vae.run.prepare(
            make_config(["model=bernoulli", "model.prior=learned", f"+group_optimizers.baseline={sgd}"])
        )
    with pytest.raises(ConfigError, match=r"^group_optimizers.prior: Invalid learning rate"):
        bad = "{_target_:torch.optim.SGD,_partial_:true,lr:-1.0}"
        vae.run.prepare(
            make_config(["model=bernoulli", "model.prior=learned", f"+group_optimizers.prior={bad}"])
        )
    assert not (tmp_path / "run").exists()


def test_a_checkpoint_with_a_prior_optimizer_reads_as_a_group_optimizer():
    from vae.checkpoint import CONFIG_KEY, upgrade_checkpoint

    sgd = {"_target_": "torch.optim.SGD", "_partial_": True, "lr": 0.01}
    old = {CONFIG_KEY: {"model": {}, "prior_optimizer": sgd}, "state_dict": {}}
    assert upgrade_checkpoint(old)[CONFIG_KEY] == {"model": {}, "group_optimizers": {"prior": sgd}}
    unset = {CONFIG_KEY: {"model": {}, "prior_optimizer": None}, "state_dict": {}}
    assert upgrade_checkpoint(unset)[CONFIG_KEY] == {"model": {}}


def test_a_run_config_naming_the_modules_before_they_moved_resumes_without_recorded_changes(make_config):
    """Before the run layer, callbacks and loggers lived in vae.callbacks, vae.loggers and
    vae.checkpointing; resuming such a run must not list their move as changed settings."""
    from omegaconf import OmegaConf

    from vae.checkpoint import CONFIG_KEY, upgrade_checkpoint
    from vae.run.checks import resume_changes

    now = OmegaConf.to_container(make_config(["logger=csv"]), resolve=True)
    before = copy.deepcopy(now)
    moved = 0
    for node in [*before["callbacks"].values(), *before["logger"].values()]:
        if node["_target_"].startswith("vae.run."):
            node["_target_"] = node["_target_"].replace("vae.run.", "vae.", 1)
            moved += 1
    assert moved >= 3  # last-checkpoint, image grids, progress bar, CSV logger
    assert resume_changes(now, before, "old.ckpt")  # the move alone reads as a change...
    upgraded = upgrade_checkpoint({CONFIG_KEY: before, "state_dict": {}})[CONFIG_KEY]
    assert resume_changes(now, upgraded, "old.ckpt") == {}  # ...until the checkpoint is upgraded
    from hydra.utils import get_object

    for node in [*upgraded["callbacks"].values(), *upgraded["logger"].values()]:
        get_object(node["_target_"])  # each names a class or function that exists
