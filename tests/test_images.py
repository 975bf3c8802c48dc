"""Image data sources, their bad inputs, the quality metrics, and the image CLI end to end."""
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import run_python
from kerasgen import train
from kerasgen.data import DataError
from kerasgen.images import image_datasets, image_grid, load_images
from kerasgen.quality import frechet_distance
from test_train_cli import TF_LOG

TINY_IMAGE_TRAIN = ["--epochs=1", "--steps_per_epoch=2", "--batch_size=4", "--jit_compile=false",
                    "--image_size=8", "--latent_dim=4"]


def write_pngs(folder, sizes):
    folder.mkdir()
    for i, size in enumerate(sizes):
        Image.fromarray(np.full((size, size), 40 * i, np.uint8)).save(folder / f"{i}.png")
    return str(folder)


def write_broken_png(folder):
    folder.mkdir()
    (folder / "a.png").write_bytes(b"not a png")
    return str(folder)


def check_images(images, size=12, channels=1):
    assert images.shape[1:] == (size, size, channels) and images.dtype == np.float32
    assert images.min() >= 0.0 and images.max() <= 1.0 and images.max() > 0.0


def test_embedded_digits_are_resized_with_labels():
    images, labels = load_images(None, 12)
    check_images(images)
    assert len(images) == len(labels) == 1797 and set(labels) == set(range(10))


def test_mock_tfds_mnist_batches_have_the_right_shape_and_range():
    with tfds.testing.mock_data(num_examples=20):
        images, labels = load_images("tfds:mnist", 12)
    check_images(images)
    train_ds, val_ds = image_datasets(images, 4, seed=0)
    batch = next(iter(train_ds)).numpy()
    assert batch.shape == (4, 12, 12, 1) and 0.0 <= batch.min() and batch.max() <= 1.0
    assert sum(len(b) for b in val_ds) == 2  # 10% of 20


@pytest.mark.parametrize("key, dtype, scale", [("x_train", np.uint8, 255), ("x", np.float32, 1.0)])
def test_npz_images(tmp_path, key, dtype, scale):
    path = tmp_path / "images.npz"
    np.savez(path, **{key: (np.random.default_rng(0).random((10, 28, 28)) * scale).astype(dtype)})
    images, labels = load_images(str(path), 12)
    check_images(images)
    assert labels is None


def test_rgb_folder_becomes_gray_or_stays_rgb(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((20, 20, 3), (250, 10 * i, 0), np.uint8)).save(folder / f"{i}.jpg")
    check_images(load_images(str(folder), 12)[0])
    check_images(load_images(str(folder), 12, channels=3)[0], channels=3)


@pytest.mark.parametrize("make, message", [
    (lambda d: np.savez(d / "bad.npz", labels=np.zeros(3)) or str(d / "bad.npz"), "has no image array"),
    (lambda d: (d / "empty").mkdir() or str(d / "empty"), "holds no PNG or JPEG"),
    (lambda d: write_pngs(d / "mixed", [8, 9]), "mixes image sizes"),
    (lambda d: write_broken_png(d / "broken"), "cannot read image"),
])
def test_bad_image_data_is_a_data_error(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        load_images(make(tmp_path), 8)


def test_bad_image_data_from_the_cli_is_one_line_exit_2_and_writes_nothing(tmp_path):
    folder = write_pngs(tmp_path / "mixed", [8, 9])
    out = tmp_path / "run"
    result = run_python(["-m", "kerasgen.train", "--model", "dense", "--data", folder, "--out", str(out)])
    lines = [line for line in result.stderr.splitlines() if line.strip() and not TF_LOG.match(line)]
    assert result.returncode == 2 and len(lines) == 1 and "mixes image sizes" in lines[0], result.stderr
    assert not out.exists()


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_noise():
    features = np.random.default_rng(0).normal(size=(500, 16))
    noise = np.random.default_rng(1).normal(size=features.shape)
    distances = [frechet_distance(features, features + level * noise) for level in (0.0, 0.3, 1.0)]
    assert abs(distances[0]) < 1e-6
    assert distances[0] < distances[1] < distances[2]


def test_image_grid_tiles_images_with_gaps():
    grid = image_grid(np.ones((10, 4, 4, 1)), columns=8)
    assert grid.shape == (2 * 5 + 1, 8 * 5 + 1, 1) and grid.dtype == np.uint8


@pytest.mark.parametrize("name, extra", [("conv", ["--filters=4"]), ("vae", ["--filters=4"])])
def test_train_cli_writes_samples_png_metrics_and_image_summaries(name, extra, tmp_path, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "run")
    assert train.main(["--model", name, "--out", out, *TINY_IMAGE_TRAIN, *extra]) == 0
    printed = capsys.readouterr().out
    assert f"samples: {out}/samples.png" in printed and "Fréchet distance" in printed
    picture = np.asarray(Image.open(os.path.join(out, "samples.png")))
    assert picture.ndim == 2 and picture.shape[0] > 8 * 8  # an 8×8 grid, enlarged
    summary = json.load(open(os.path.join(out, "summary.json")))
    assert {"fid", "class_entropy", "confidence"} <= set(summary)
    images = EventAccumulator(os.path.join(out, "logs", "images")).Reload().Tags()
    assert "samples" in images["tensors"] + images["images"]
    for path in ("model.keras", "classifier.keras", "checkpoints/best.keras", "config.json"):
        assert os.path.exists(os.path.join(out, path)), path
