"""A resumed run is one run: killed at any step and resumed from last.ckpt, it ends exactly as an
uninterrupted one, in its own directory, logging on to the same W&B run."""

import csv
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import torch

from conftest import REPO, child_env
from vae.run.lock import hold_run_directory
from vae.run.wandb_records import read_records

COMMON = [
    "data=synthetic",
    "trainer.max_epochs=3",  # 18 steps an epoch
    "trainer.log_every_n_steps=1",
    "callbacks.progress_bar.refresh_rate=0",
]


def _train(*overrides: str, cwd: Path) -> subprocess.Popen:
    flags = [o for o in overrides if o.startswith("-")]  # -m: before the overrides
    overrides = tuple(o for o in overrides if not o.startswith("-"))
    env = child_env(PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}")
    return subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *flags, *COMMON, *overrides],
        cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _finish(process: subprocess.Popen) -> None:
    _, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr[-3000:]


def _kill_at(step: int, run_dir: Path, *overrides: str, cwd: Path) -> None:
    """Start a run, and SIGKILL it once it has taken `step` steps (mid-epoch)."""
    progress = cwd / f"step-{run_dir.name}.txt"
    pause = [
        "+callbacks.pause._target_=pausing.PauseAtStep",
        f"+callbacks.pause.path={progress}",
        f"+callbacks.pause.step={step}",
    ]
    process = _train(*overrides, *pause, f"hydra.run.dir={run_dir}", cwd=cwd)
    deadline = time.time() + 300
    while not (progress.exists() and progress.read_text() == str(step)):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "the run never reached the step"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()


def _train_losses(run_dir: Path) -> dict[int, str]:
    """step -> train/neg_elbo as written; a step logged twice (before the kill, then again after the
    resume) keeps its last row."""
    with open(run_dir / "csv" / "metrics.csv") as f:
        return {int(r["step"]): r["train/neg_elbo"] for r in csv.DictReader(f) if r["train/neg_elbo"]}


def _final(run_dir: Path) -> dict:
    metrics = json.loads((run_dir / "metrics.json").read_text())
    metrics.pop("changes_on_resume", None)  # the resumed run's record of the test's pause callback
    for timing in ("train_seconds", "evaluation_seconds"):  # what the runs took: not bit for bit
        assert metrics.pop(timing) > 0
    metrics["checkpoint"] = Path(metrics["checkpoint"]).relative_to(run_dir).as_posix()
    return metrics


@pytest.mark.parametrize(
    "validation, last_checkpoint_step",
    [([], 18), (["trainer.val_check_interval=5"], 23)],  # checkpoints at epoch ends, and mid-epoch
    ids=["each-epoch", "every-5-steps"],
)
def test_killed_mid_epoch_and_resumed_ends_exactly_as_uninterrupted(
    tmp_path, validation, last_checkpoint_step
):
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _finish(_train("logger=csv", *validation, f"hydra.run.dir={straight}", cwd=tmp_path))
    _kill_at(27, killed, "logger=csv", *validation, cwd=tmp_path)  # mid-epoch 2 of 3
    assert not (killed / "metrics.json").exists()
    last = killed / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == last_checkpoint_step
    # What other killed attempts leave: a best checkpoint nothing tracks, a temporary file of a save.
    (killed / "checkpoints" / "best-epoch009-step999.ckpt").write_bytes(b"stray")
    (killed / "checkpoints" / ".last.ckpt.x1y2.tmp").write_bytes(b"partial")

    # The README's resume command: the same overrides plus the checkpoint; no run directory given.
    _finish(_train("logger=csv", *validation, f"ckpt_path={last}", cwd=tmp_path))
    assert not (tmp_path / "runs").exists()  # it continued in its own directory
    assert _final(killed) == _final(straight)  # every validation and test number, bit for bit
    assert _train_losses(killed) == _train_losses(straight)  # every step's loss, before and after
    checkpoints = {p.name for p in (straight / "checkpoints").iterdir()}
    assert {p.name for p in (killed / "checkpoints").iterdir()} == checkpoints


def test_a_resumed_run_logs_on_to_its_wandb_run(tmp_path):
    run = tmp_path / "run"
    _kill_at(20, run, "logger=wandb", cwd=tmp_path)
    _finish(_train("logger=wandb", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path))
    files = sorted(run.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(files) == 2 and len({f.name for f in files}) == 1  # two sessions, one W&B run id
    resumed = [r.run for r in read_records(files[-1]) if r.WhichOneof("record_type") == "run"]
    assert resumed and resumed[0].run_id == files[0].stem.removeprefix("run-")


def test_a_checkpoint_outside_its_run_resumes_into_a_new_run_that_tracks_its_own_best(tmp_path):
    first = tmp_path / "first"
    _finish(_train("logger=none", "trainer.max_epochs=1", f"hydra.run.dir={first}", cwd=tmp_path))
    loose = tmp_path / "loose.ckpt"
    loose.write_bytes((first / "checkpoints" / "last.ckpt").read_bytes())
    second = tmp_path / "second"
    _finish(
        _train(
            "logger=none",
            "trainer.max_epochs=2",
            f"ckpt_path={loose}",
            f"hydra.run.dir={second}",
            cwd=tmp_path,
        )
    )
    metrics = json.loads((second / "metrics.json").read_text())
    assert Path(metrics["checkpoint"]).parent == second / "checkpoints"  # not the first run's best
    assert metrics["last_step"] == 36


def test_a_refused_directory_is_left_exactly_as_it_was(tmp_path):
    run = tmp_path / "run"
    _finish(_train("logger=none", "trainer.max_epochs=1", f"hydra.run.dir={run}", cwd=tmp_path))
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    process = _train("logger=none", "seed=5", f"hydra.run.dir={run}", cwd=tmp_path)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1 and "already holds checkpoints and metrics.json" in stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before  # .hydra/ included


def test_a_stopped_sweep_run_again_skips_finished_jobs_resumes_stopped_ones_and_reruns_failed_ones(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "seed=0,1,2", "logger=csv", "hydra/launcher=basic", f"hydra.sweep.dir={sweep}"]
    progress = tmp_path / "step.txt"
    pause = ["+callbacks.pause._target_=pausing.PauseAtStep", f"+callbacks.pause.path={progress}"]
    process = _train(*command, *pause, "+callbacks.pause.step=27", "+callbacks.pause.seed=1", cwd=tmp_path)
    deadline = time.time() + 300
    while not (progress.exists() and progress.read_text() == "27"):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "job 1 never reached the step"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)  # the sweep, mid-way through job 1 (epoch 2 of 3)
    process.wait()
    finished = (sweep / "0" / "metrics.json").read_bytes()
    assert not (sweep / "1" / "metrics.json").exists() and not (sweep / "2").exists()
    assert torch.load(sweep / "1" / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 18
    (sweep / "1" / "failed.json").write_text('{"error": "OSError", "message": "disk full"}\n')

    # The same command again (the pause now out of reach): job 0 is not run again, job 1 goes on
    # from its last.ckpt to the same numbers as an uninterrupted run, job 2 runs.
    _finish(_train(*command, *pause, "+callbacks.pause.step=1000", "+callbacks.pause.seed=1", cwd=tmp_path))
    assert (sweep / "0" / "metrics.json").read_bytes() == finished
    assert (sweep / "1" / "failed-1.json").exists() and not (sweep / "1" / "failed.json").exists()
    assert (sweep / "2" / "metrics.json").exists()
    straight = tmp_path / "straight"
    _finish(_train("seed=1", "logger=csv", f"hydra.run.dir={straight}", cwd=tmp_path))
    assert _final(sweep / "1") == _final(straight)
    assert _train_losses(sweep / "1") == _train_losses(straight)


def test_two_copies_of_a_sweep_command_share_its_jobs_through_their_locks(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "seed=0,1", "logger=csv", "hydra/launcher=basic", f"hydra.sweep.dir={sweep}"]
    (sweep / "0").mkdir(parents=True)
    (sweep / "0" / "failed.json").write_text('{"error": "OSError", "message": "disk full"}\n')
    with hold_run_directory(sweep / "0"):  # another copy of the command runs job 0 now
        process = _train(*command, cwd=tmp_path)
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-3000:]
        # Job 0 is passed over and left exactly as the other process has it; job 1 runs.
        assert sorted(p.name for p in (sweep / "0").iterdir()) == [".lock", "failed.json"]
        assert (sweep / "1" / "metrics.json").exists()
        assert "job 0: not run (running elsewhere): paths.output_dir=" in stdout
        assert "1 job(s) run in another process (0)" in stderr
    finished = (sweep / "1" / "metrics.json").read_bytes()
    # That process gone without finishing job 0: the command again runs it, and job 1 not again.
    _finish(_train(*command, cwd=tmp_path))
    assert (sweep / "0" / "metrics.json").exists()
    assert (sweep / "1" / "metrics.json").read_bytes() == finished


def test_a_sweep_directory_is_refused_to_another_sweep_and_continued_by_the_same_one_trained_longer(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "logger=csv", "hydra/launcher=basic", f"hydra.sweep.dir={sweep}"]
    _finish(_train(*command, "seed=0,1", cwd=tmp_path))
    before = {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()}
    for other in (["seed=5,6"], ["seed=0,1", "model.estimator=st_gumbel"]):
        process = _train(*command, *other, cwd=tmp_path)
        _, stderr = process.communicate(timeout=600)
        assert process.returncode == 1
        line = f"error: hydra.sweep.dir={str(sweep)!r} holds the runs of another sweep: its job 0 ran `"
        assert stderr.startswith(line) and stderr.count("\n") == 1, stderr[-3000:]
        assert "logger=csv seed=0`, where this command's job 0 is `" in stderr
        assert {p: p.read_bytes() for p in sweep.rglob("*") if p.is_file()} == before
    # Longer, with another seed after the two: jobs 0 and 1 are the same runs, continued from their
    # checkpoints to the fourth epoch; job 2 runs.
    _finish(_train(*command, "seed=0,1,2", "trainer.max_epochs=4", cwd=tmp_path))
    for job in ("0", "1", "2"):
        metrics = json.loads((sweep / job / "metrics.json").read_text())
        assert (metrics["last_step"], metrics["epochs"]) == (4 * 18, 4)
    (resumed,) = json.loads((sweep / "0" / "metrics.json").read_text())["changes_on_resume"]
    assert resumed == {"step": 3 * 18, "changes": {"trainer.max_epochs": [3, 4]}}


def test_a_moved_run_directory_resumes_in_its_new_place_and_keeps_one_last_ckpt(tmp_path):
    first, second = tmp_path / "first", tmp_path / "elsewhere" / "second"
    _finish(_train("logger=csv", "trainer.max_epochs=1", f"hydra.run.dir={first}", cwd=tmp_path))
    second.parent.mkdir()
    first.rename(second)
    for epochs, step in ((2, 36), (3, 54)):  # two resumes in a row from the moved run's last.ckpt
        last = second / "checkpoints" / "last.ckpt"
        _finish(_train("logger=csv", f"trainer.max_epochs={epochs}", f"ckpt_path={last}", cwd=tmp_path))
        assert torch.load(last, weights_only=True)["global_step"] == step
        assert json.loads((second / "metrics.json").read_text())["last_step"] == step
    assert not first.exists()  # nothing written where the run used to be
    assert not list((second / "checkpoints").glob("last-v*.ckpt"))


def test_a_resumed_runs_train_seconds_add_to_the_time_its_checkpoint_recorded(tmp_path):
    # metrics.json's train_seconds is what all the run's steps and validations took, over every
    # resume (Lightning's Timer callback, its state in the checkpoints): a table's compute.
    run = tmp_path / "run"
    started = time.perf_counter()
    _finish(_train("logger=csv", "trainer.max_epochs=1", f"hydra.run.dir={run}", cwd=tmp_path))
    first = json.loads((run / "metrics.json").read_text())["train_seconds"]
    assert 0 < first < time.perf_counter() - started
    last = run / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(last, weights_only=True)
    # last.ckpt is written as fitting ends: its time is the run's. (Evaluating the best checkpoint
    # restores that checkpoint's Timer too; read after it, the time had the best's added again.)
    at_the_end = checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"]
    assert at_the_end - 0.1 <= first < 1.5 * at_the_end
    checkpoint["callbacks"]["Timer"]["time_elapsed"]["train"] = 10_000.0  # as if the first epoch took that
    torch.save(checkpoint, last)
    started = time.perf_counter()
    _finish(_train("logger=csv", "trainer.max_epochs=2", f"ckpt_path={last}", cwd=tmp_path))
    metrics = json.loads((run / "metrics.json").read_text())
    assert 10_000 < metrics["train_seconds"] < 10_000 + time.perf_counter() - started
    assert "train_seconds_untimed_steps" not in metrics
    # A checkpoint written before runs kept their time: the steps it holds are said to be untimed.
    checkpoint = torch.load(last, weights_only=True)
    del checkpoint["callbacks"]["Timer"]
    torch.save(checkpoint, last)
    _finish(_train("logger=csv", "trainer.max_epochs=3", f"ckpt_path={last}", cwd=tmp_path))
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["train_seconds_untimed_steps"] == 36 and 0 < metrics["train_seconds"] < 10_000


def test_a_run_bounded_by_steps_resumed_at_an_epochs_end_trains_on_the_same_batches(tmp_path):
    # The papers' runs are bounded by steps (max_epochs=-1). Resumed from a checkpoint written at
    # an epoch's end, Lightning first goes through the ended epoch again (a validation, and one
    # more count of epochs and of logged steps, so the rows after it are labelled one step later):
    # the epochs after it must still draw the batches of an uninterrupted run (they were the next
    # epoch's: a different data order from the resume on).
    straight, stopped = tmp_path / "straight", tmp_path / "stopped"
    by_steps = ["logger=csv", "trainer.max_epochs=-1"]
    _finish(_train(*by_steps, "trainer.max_steps=45", f"hydra.run.dir={straight}", cwd=tmp_path))
    _finish(_train(*by_steps, "trainer.max_steps=36", f"hydra.run.dir={stopped}", cwd=tmp_path))  # 2 epochs
    last = stopped / "checkpoints" / "last.ckpt"
    _finish(_train(*by_steps, "trainer.max_steps=45", f"ckpt_path={last}", cwd=tmp_path))

    def losses(run_dir: Path) -> list[str]:  # in the order written, whatever their step labels
        with open(run_dir / "csv" / "metrics.csv") as f:
            return [r["train/neg_elbo"] for r in csv.DictReader(f) if r["train/neg_elbo"]]

    assert len(losses(straight)) == 45
    assert losses(stopped) == losses(straight)  # bit for bit, the 9 steps after the resume included


def test_a_finished_runs_last_checkpoint_holds_its_final_step(tmp_path):
    # 3 epochs of 18 steps with validation each epoch, stopped at step 50 by max_steps: the last
    # validation is at step 36, and last.ckpt is the state at 50 all the same.
    run = tmp_path / "run"
    _finish(_train("logger=csv", "trainer.max_steps=50", f"hydra.run.dir={run}", cwd=tmp_path))
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 50
    assert json.loads((run / "metrics.json").read_text())["last_step"] == 50


def test_a_second_process_on_a_run_directory_in_use_is_refused_and_writes_nothing(tmp_path):
    run = tmp_path / "run"
    progress = tmp_path / "step.txt"
    pause = ["+callbacks.pause._target_=pausing.PauseAtStep", f"+callbacks.pause.path={progress}"]
    first = _train("logger=csv", *pause, "+callbacks.pause.step=3", f"hydra.run.dir={run}", cwd=tmp_path)
    deadline = time.time() + 300
    while not (progress.exists() and progress.read_text() == "3"):  # before any checkpoint
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.time() < deadline, "the first run never reached the step"
        time.sleep(0.2)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file() and p.name != "metrics.csv"}
    second = _train("logger=csv", "seed=2", f"hydra.run.dir={run}", cwd=tmp_path)
    _, stderr = second.communicate(timeout=300)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert second.returncode == 1
    assert (
        stderr.strip()
        .splitlines()[-1]
        .startswith(f"error: paths.output_dir='{run}' is in use by a run in process")
    )
    assert {p: p.read_bytes() for p in before} == before  # the first run's files, untouched
    assert not (run / "metrics.json").exists()


def test_a_full_disk_is_one_line_naming_the_file_and_the_checkpoints_stay_loadable(tmp_path):
    run = tmp_path / "run"
    process = _train(
        "logger=none", "+callbacks.full._target_=pausing.FullDiskAtStep", "+callbacks.full.step=25",
        f"hydra.run.dir={run}", cwd=tmp_path,
    )  # fmt: skip
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1
    assert stderr.strip().splitlines()[-1].startswith("error: could not write ")
    assert "No space left on device" in stderr.strip().splitlines()[-1] and "Traceback" not in stderr
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 18


def test_a_kill_during_a_checkpoint_write_with_tmpdir_elsewhere_leaves_last_ckpt_loadable(tmp_path):
    # $TMPDIR on another filesystem than the run (a tmpfs /tmp is common): Lightning's own save
    # then copied a temporary file onto last.ckpt in place, and a kill mid-copy left it truncated.
    shm = Path("/dev/shm")
    elsewhere = shm if shm.is_dir() and shm.stat().st_dev != tmp_path.stat().st_dev else tmp_path
    tmpdir = Path(tempfile.mkdtemp(dir=elsewhere))
    run, marker = tmp_path / "run", tmp_path / "saving.txt"
    hang = ["+callbacks.hang._target_=pausing.KillableSaveAtStep", f"+callbacks.hang.marker={marker}"]
    process = subprocess.Popen(
        [sys.executable, str(REPO / "train.py"), *COMMON, "logger=csv", *hang, "+callbacks.hang.step=36",
         f"hydra.run.dir={run}"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=child_env(PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}", TMPDIR=str(tmpdir)),
    )  # fmt: skip
    deadline = time.time() + 300
    while not marker.exists():  # the first save at step 36 (epoch 2's validation) is under way
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "the save never started"
        time.sleep(0.2)
    process.send_signal(signal.SIGKILL)
    process.wait()
    unfinished = [p.name for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    assert unfinished, "killed while a temporary checkpoint file was open beside its target"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 18
    assert not any(tmpdir.iterdir())  # the save never went through $TMPDIR
    _finish(_train("logger=csv", f"ckpt_path={run / 'checkpoints' / 'last.ckpt'}", cwd=tmp_path))
    assert json.loads((run / "metrics.json").read_text())["last_step"] == 54
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    tmpdir.rmdir()


def _children(pid: int) -> list[int]:
    """The processes whose parent is pid (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:  # it ended while we looked
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _running(pid: int) -> bool:
    """pid is a process that has not ended (a zombie nobody reaps has ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_workers_of_a_killed_sweep_stop_their_jobs_and_leave_them_resumable(tmp_path):
    sweep = tmp_path / "sweep"
    command = ["-m", "seed=0,1", "logger=csv", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"]
    pause = [
        "+callbacks.pause._target_=pausing.PauseAtStep",
        "+callbacks.pause.path=${paths.output_dir}/step.txt",  # one file per job
        "+callbacks.pause.step=20",  # after epoch 1's validation: each job has a last.ckpt at 18
    ]
    process = _train(*command, *pause, cwd=tmp_path)
    progress = [sweep / job / "step.txt" for job in ("0", "1")]
    deadline = time.time() + 300
    while not all(p.exists() and p.read_text() == "20" for p in progress):
        assert process.poll() is None, process.communicate()[1][-3000:]
        assert time.time() < deadline, "the jobs never reached the step"
        time.sleep(0.2)
    workers = _children(process.pid)
    assert workers, "the sweep runs its jobs in worker processes"
    process.send_signal(signal.SIGKILL)  # the sweep itself: its workers are not told
    process.wait()
    deadline = time.time() + 240  # each worker looks for its parent every second
    while any(_running(pid) for pid in workers):
        assert time.time() < deadline, f"workers {[p for p in workers if _running(p)]} still run their jobs"
        time.sleep(0.5)
    assert not any((sweep / job / "metrics.json").exists() for job in ("0", "1"))
    for job in ("0", "1"):
        assert torch.load(sweep / job / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 18
    # That the same command again resumes them: test_a_stopped_sweep_run_again_... above.
