"""python -m vae.sample: every picture exists, has the right size, and shows varied images."""

import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import vae
from conftest import tool_config
from vae.errors import CheckpointError, ConfigError
from vae.evaluation import latent_health
from vae.run.wandb_records import history
from vae.tools.sample import make_pictures

CELL = 30  # a 28-pixel digit plus make_grid's 2-pixel padding


def sample_config(ckpt, **overrides):
    return tool_config("sample", ckpt, **overrides)


def _pixels(path) -> np.ndarray:
    image = Image.open(path)
    assert image.format == "PNG" and image.mode == "RGB"
    return np.asarray(image)


def _cells(pixels: np.ndarray, cell: int = CELL, pad: int = 2) -> list[np.ndarray]:
    """The digit images of a make_grid picture, row by row."""
    rows, cols = (pixels.shape[0] - pad) // cell, (pixels.shape[1] - pad) // cell
    return [
        pixels[pad + r * cell : (r + 1) * cell, pad + c * cell : (c + 1) * cell, 0]
        for r in range(rows)
        for c in range(cols)
    ]


def test_categorical_pictures(categorical_ckpt, test_images):
    paths = make_pictures(sample_config(categorical_ckpt))
    assert set(paths) == {"reconstructions", "prior_samples", "traversals"}
    assert (
        paths["reconstructions"].parent == categorical_ckpt.parent.parent / "samples" / categorical_ckpt.stem
    )

    recon = _pixels(paths["reconstructions"])
    # 16 digits in 2 blocks of 8 columns: digits, one-hot reconstructions, relaxed ones.
    assert recon.shape == (6 * CELL + 2, 8 * CELL + 2, 3)
    cells = _cells(recon)
    for cell in cells:
        assert cell.std() > 30  # a digit, not a blank square
    # The rows, recomputed independently: the test digits, then decode(z).mean for a one-hot
    # z ~ q(z|x) drawn with the same seed.
    model = vae.load(categorical_ckpt)
    generator = torch.Generator().manual_seed(0)  # the tool's seed=0
    with torch.no_grad():
        expected = model.decode(
            model.encode(test_images[:16]).sample(generator=generator)
        ).mean  # (16, 1, 28, 28)

    def as_uint8(t: torch.Tensor) -> np.ndarray:
        return t.mul(255).round().squeeze(1).to(torch.uint8).numpy()

    for block in range(2):  # each block: 8 digits, 8 one-hot and 8 relaxed reconstructions
        first = 24 * block
        digits, one_hot = (
            np.stack(cells[first : first + 8]),
            np.stack(cells[first + 8 : first + 16]),
        )
        assert np.array_equal(digits, as_uint8(test_images[8 * block : 8 * block + 8]))
        difference = one_hot.astype(int) - as_uint8(expected[8 * block : 8 * block + 8])
        assert np.abs(difference).max() <= 1

    samples = _cells(_pixels(paths["prior_samples"]))
    assert len(samples) == 64 and len({s.tobytes() for s in samples}) > 32

    traversals = _pixels(paths["traversals"])
    assert traversals.shape == (16 * CELL + 2, 10 * CELL + 2, 3)  # 4 digits x 4 variables, K = 10
    rows = np.stack(_cells(traversals)).reshape(4, 4, 10, 28, 28)  # digit, variable, class
    # Recomputed: the 4 variables with the most mutual information on 1000 test images; each
    # digit's most likely code with one of them set to every class in turn.
    informative = latent_health(model, [test_images[:1000]])["latent/mutual_information"]
    variables = torch.tensor(informative).argsort(descending=True)[:4]
    with torch.no_grad():
        codes = F.one_hot(model.encode(test_images[:4]).probs.argmax(-1), 10).float()
        for i, code in enumerate(codes):
            for j, n in enumerate(variables):
                z = code.expand(10, -1, -1).clone()
                z[:, n] = torch.eye(10)
                assert np.abs(rows[i, j].astype(int) - as_uint8(model.decode(z).mean)).max() <= 1
    # The most informative variable changes the picture: its K classes do not all decode alike.
    assert all(len({image.tobytes() for image in rows[i, 0]}) > 1 for i in range(4))


def test_gaussian_2d_pictures_include_the_manifold(train_checkpoint, tmp_path):
    ckpt = train_checkpoint("gauss2", ["model=gaussian", "model.dim=2"])
    paths = make_pictures(sample_config(ckpt, output_dir=str(tmp_path / "pics")))
    assert set(paths) == {"reconstructions", "prior_samples", "traversals", "manifold"}
    assert paths["manifold"].parent == tmp_path / "pics"
    manifold = _pixels(paths["manifold"])
    assert manifold.shape == (20 * 28, 20 * 28, 3)
    cells = _cells(manifold, cell=28, pad=0)
    assert np.std([c.mean() for c in cells]) > 3  # the decoded digit changes across the plane
    traversals = _pixels(paths["traversals"])
    assert traversals.shape == (8 * CELL + 2, 11 * CELL + 2, 3)  # 4 digits x 2 dims, 11 steps


def test_pictures_go_to_the_checkpoints_wandb_run(train_checkpoint):
    ckpt = train_checkpoint("with_wandb", ["logger=wandb"], steps=90)
    run_dir = ckpt.parent.parent
    (trained,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    make_pictures(sample_config(ckpt))
    runs = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    assert len(runs) == 2 and {r.name for r in runs} == {trained.name}  # same run id
    (appended,) = [r for r in runs if r != trained]
    # W&B's service process writes the run file; on a loaded machine the history row can land a
    # moment after finish() returns: wait for it (a condition, not a fixed delay).
    deadline = time.monotonic() + 120
    while not (rows := [r for r in history(appended) if "samples/traversals/path" in r]):
        assert time.monotonic() < deadline, "no history row in the appended W&B run file"
        time.sleep(0.5)
    assert len(rows) == 1 and rows[0]["samples/global_step"] == 90
    for name in ("reconstructions", "prior_samples", "traversals"):
        assert _pixels(appended.parent / "files" / rows[0][f"samples/{name}/path"]).std() > 20


@pytest.mark.parametrize("key", ["num_digits", "traversal_steps"])
def test_non_positive_counts_are_refused(categorical_ckpt, key):
    with pytest.raises(ConfigError, match=f"{key}=0 is not allowed"):
        make_pictures(sample_config(categorical_ckpt, **{key: 0}))


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(CheckpointError, match=f"{tmp_path / 'x.ckpt'}: no such checkpoint file"):
        make_pictures(sample_config(tmp_path / "x.ckpt"))
    assert list(tmp_path.iterdir()) == []
