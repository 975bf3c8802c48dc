"""Image data sources and their bad inputs, every image model's sampling, and the quality metrics."""
import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image

from conftest import IMAGE_MODELS, tiny_model
from kerasgen.errors import DataError
from kerasgen.image.data import image_datasets, image_grid, load_images, prepare_images, split_images
from kerasgen.image.metrics import frechet_distance


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
    train_ds, val_ds = image_datasets(images, split_images(len(images), 0), 4, seed=0)
    batch = next(iter(train_ds)).numpy()
    assert batch.shape == (4, 12, 12, 1) and 0.0 <= batch.min() and batch.max() <= 1.0
    assert sum(len(b) for b in val_ds) == 2  # 10% of 20


def test_the_training_stream_resumes_exactly_at_any_step():
    images = np.random.default_rng(0).random((50, 4, 4, 1)).astype(np.float32)
    split = split_images(len(images), 3)
    whole = [b.numpy() for b in image_datasets(images, split, 8, seed=3)[0].take(12)]
    later = [b.numpy() for b in image_datasets(images, split, 8, seed=3, first_step=7)[0].take(5)]
    np.testing.assert_array_equal(np.stack(later), np.stack(whole[7:]))


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


def _write(path, data):
    path.write_bytes(data)
    return str(path)


def _npz(d, **arrays):
    np.savez(d / "data.npz", **arrays)
    return str(d / "data.npz")


@pytest.mark.parametrize("make, message", [
    (lambda d: _npz(d, labels=np.zeros(3)), "has no image array"),
    (lambda d: (d / "empty").mkdir() or str(d / "empty"), "holds no PNG or JPEG"),
    (lambda d: write_pngs(d / "mixed", [8, 9]), "mixes image sizes"),
    (lambda d: write_broken_png(d / "broken"), "cannot read image"),
    (lambda d: _npz(d, x=np.full((4, 8, 8), np.nan, np.float32)), "NaN or infinite"),
    (lambda d: _npz(d, x=np.zeros((4, 8, 8)), y=np.array([0, 1, 2, 1e9])), "class indices"),
    (lambda d: _npz(d, x=np.zeros((4, 8, 8)), y=np.array([0, 1, -3, 1])), "class indices"),
    (lambda d: _npz(d, x=np.zeros((4, 8, 8)), y=np.array([0, 1, 2])), "one per image"),
    (lambda d: _write(d / "junk.npz", b"PK\x03\x04junk"), "not a readable .npz"),
])
def test_bad_image_data_is_a_data_error(tmp_path, make, message):
    with pytest.raises(DataError, match=message):
        load_images(make(tmp_path), 8)


def test_object_arrays_are_refused_not_unpickled(tmp_path):
    np.savez(tmp_path / "obj.npz", x=np.array([np.zeros((8, 8))] * 2, dtype=object))
    with pytest.raises(DataError, match="not a readable .npz"):
        load_images(str(tmp_path / "obj.npz"), 8)
    with pytest.raises(DataError, match="numeric pixels"):
        prepare_images(np.array([["a"]] * 2, dtype=object), 8, 1)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_images_are_in_range_and_sampling_is_deterministic_for_a_seed(name):
    model = tiny_model(name)
    outputs = np.asarray(model(model.sample_inputs(2)))
    assert outputs.shape == (2, *model.image_shape) and outputs.min() >= 0 and outputs.max() <= 1
    first, again, other = model.generate(4, 7), model.generate(4, 7), model.generate(4, 8)
    assert first.shape == (4, *model.image_shape)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_frechet_distance_is_zero_for_a_set_with_itself_and_grows_with_noise():
    features = np.random.default_rng(0).normal(size=(500, 16))
    noise = np.random.default_rng(1).normal(size=features.shape)
    distances = [frechet_distance(features, features + level * noise) for level in (0.0, 0.3, 1.0)]
    assert abs(distances[0]) < 1e-6
    assert distances[0] < distances[1] < distances[2]


def test_image_grid_tiles_images_with_gaps():
    grid = image_grid(np.ones((10, 4, 4, 1)), columns=8)
    assert grid.shape == (2 * 5 + 1, 8 * 5 + 1, 1) and grid.dtype == np.uint8


def test_the_quality_classifier_trains_on_a_few_labelled_images_without_stalling():
    """Fewer images than a batch of 64 once meant 0 steps an epoch, which Keras reads as
    'until the data ends': the endless stream, for ever."""
    from kerasgen.image.data import split_images
    from kerasgen.image.metrics import train_classifier

    images = np.random.default_rng(0).random((20, 8, 8, 1)).astype(np.float32)
    model, accuracy = train_classifier(images, np.arange(20) % 2, split_images(20, 0), epochs=2)
    assert 0.0 <= accuracy <= 1.0 and model.output_shape == (None, 2)


@pytest.mark.parametrize("channels", [1, 3])
def test_a_large_folder_streams_the_batches_of_the_in_memory_path(tmp_path, monkeypatch, channels):
    """Decoded and resized in TensorFlow per batch, the same images in the same shuffled order
    (from the seed, continued exactly from any step) as the folder read into one array."""
    from kerasgen.image import data

    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):  # RGB, made gray (channels=1) or kept
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), np.uint8)).save(folder / f"{i:02d}.png")
    assert not data.streams(str(folder), 12, channels)
    monkeypatch.setattr(data, "STREAM_BYTES", 0)
    assert data.streams(str(folder), 12, channels)
    images, _ = data.load_images(str(folder), 12, channels)
    split = data.split_images(len(images), seed=4)
    train, val = data.image_datasets(images, split, 8, seed=4, first_step=2)
    files = data.image_files(str(folder))
    s_train, s_val, first = data.streamed_image_datasets(files, split, 8, 4, 12, channels, first_step=2)
    for a, b in zip(train.take(6), s_train.take(6)):  # past the end of a pass: a new order
        np.testing.assert_allclose(a.numpy(), b.numpy(), atol=2e-3)
    np.testing.assert_allclose(np.concatenate(list(val)), np.concatenate(list(s_val)), atol=2e-3)
    np.testing.assert_allclose(first, images[split[0][:32]], atol=2e-3)


def test_a_model_trains_from_a_streamed_folder(tmp_path, monkeypatch, capsys):
    from conftest import tiny_flags
    from kerasgen import train
    from kerasgen.image import data

    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(24):
        Image.fromarray(rng.integers(0, 256, (10, 10), np.uint8)).save(folder / f"{i}.png")
    monkeypatch.setattr(data, "STREAM_BYTES", 0)
    assert train.main([*tiny_flags("vae"), "--data", str(folder), "--out", str(tmp_path / "run")]) == 0
    assert "24 images, read from disk batch by batch" in capsys.readouterr().out
