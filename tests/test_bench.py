"""python -m vae.bench runs end to end and prints its table and ratios (figures are not asserted:
speed targets live in the benchmark's output, not in timed tests)."""

import json
import subprocess
import sys

import pytest

from conftest import REPO

pytestmark = pytest.mark.slow


def test_bench_times_each_loop_in_its_own_process_and_prints_ratios(tmp_path, mnist_root):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "vae.bench", "--models", "gaussian", "--batch-sizes", "1000",
            "--epochs", "2", "--rounds", "2", "--train-batches", "6", "--data-root", str(mnist_root),
            "--device", "cpu",
            "--out", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    loops = ["project", "automatic", "dataloader", "bare"]
    assert [(r["loop"], r["model"], r["batch_size"]) for r in rows] == [
        (loop, "gaussian", 1000) for loop in loops
    ]
    # Two rounds, each running every loop once, in turn; each run's first epoch is warm-up.
    starts = sorted((run["started"], row["loop"]) for row in rows for run in row["runs"])
    assert [loop for _, loop in starts] == loops * 2
    for row in rows:
        assert row["epoch_s"] == [run["epoch_s"][1] for run in row["runs"]]
        assert all(t > 0 for t in row["epoch_s"]) and len(row["warmup_s"]) == 2
        assert row["median_s"] == pytest.approx(sum(row["epoch_s"]) / 2)
        # The training part is timed inside the epoch, which also validates.
        assert 0 < row["train_only_median_s"] < row["median_s"]
        assert row["images"] == 6_000 and row["peak_rss_mb"] > 100  # 6 batches of 1000 an epoch
    # Every loop did the same work: the same model trained on the same split, 12 steps, validated
    # on the same 5k images (untrained: ~540 nats); only the noise and the optimizer's rounding differ.
    val = [row["val_neg_elbo"] for row in rows]
    assert max(val) < 400 and max(val) - min(val) < 0.05 * min(val), val
    # Lightning's automatic optimization and the system's own step: the same steps, the same numbers.
    assert rows[1]["val_neg_elbo"] == pytest.approx(rows[0]["val_neg_elbo"], rel=1e-6)
    assert "| gaussian | 1000 | project |" in result.stdout
    assert "gaussian, batch 1000: project/bare = " in result.stdout
    assert "training part: project/bare = " in result.stdout and "dataloader/project = " in result.stdout
    assert "automatic/project = " in result.stdout and "the manual step saves " in result.stdout


def test_bench_times_each_loop_in_float32_and_bf16_mixed(tmp_path, mnist_root):
    out = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "vae.bench", "--models", "categorical", "--batch-sizes", "100",
            "--loops", "project", "bare", "--precisions", "32", "bf16-mixed",
            "--epochs", "2", "--rounds", "1", "--train-batches", "4", "--data-root", str(mnist_root),
            "--device", "cpu", "--out", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["rows"]
    assert [(r["loop"], r["precision"]) for r in rows] == [
        ("project", "32"), ("bare", "32"), ("project", "bf16-mixed"), ("bare", "bf16-mixed"),
    ]  # fmt: skip
    # The precision reached the matrix products while training, in the project's loop (through
    # Lightning's precision plugin) and in the bare one (its own autocast).
    assert [r["matmul_dtype"] for r in rows] == ["float32", "float32", "bfloat16", "bfloat16"]
    # Validation is float32 in every case: 8 steps in bfloat16 or in float32 from the same start
    # leave the untrained model's validation -ELBO (~540 nats) within a few percent.
    val = [r["val_neg_elbo"] for r in rows]
    assert max(val) - min(val) < 0.05 * min(val), val
    assert "| categorical | 100 | project bf16-mixed |" in result.stdout
    assert "project bf16-mixed: training " in result.stdout and "bare bf16-mixed: training " in result.stdout
    assert "x as fast as float32" in result.stdout


def test_bench_refuses_a_precision_the_loops_cannot_mirror(tmp_path, mnist_root):
    result = subprocess.run(
        [sys.executable, "-m", "vae.bench", "--data-root", str(mnist_root), "--precisions", "16-mixed"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: --precisions=16-mixed is not allowed: one of 32, bf16-mixed"
        " (the precisions every loop can run at)"
    )


def test_bench_refuses_a_folder_without_mnist(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "vae.bench", "--data-root", str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.strip() == f"error: --data-root={tmp_path}: no MNIST/raw/ folder there"


def test_bench_times_a_sweep_with_both_launchers(tmp_path, mnist_root):
    out = tmp_path / "sweep.json"
    result = subprocess.run(
        [
            sys.executable, "-m", "vae.bench", "--sweep", "2", "--epochs", "1", "--rounds", "1",
            "--models", "gaussian", "--batch-sizes", "1000", "--data-root", str(mnist_root),
            "--overrides", "trainer.limit_train_batches=10", "--out", str(out),
        ],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    rows = json.loads(out.read_text())["sweep"]
    assert [r["launcher"] for r in rows] == ["parallel", "basic"]
    assert all(r["median_s"] > 0 and len(r["seconds"]) == 1 for r in rows)
    assert rows[1]["jobs_at_once"] == 1 and "basic / parallel = " in result.stdout
