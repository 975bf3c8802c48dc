"""Image data for the image zoo: the embedded digits, tfds, .npz files and folders, scaled one way."""
import os
import zipfile

import numpy as np
import tensorflow as tf

from kerasgen.data import load_tfds
from kerasgen.errors import DataError
from kerasgen.image import IMAGE_SUFFIXES, image_source_kind


def prepare_images(images, image_size, channels):
    """Any image array → float32 (N, image_size, image_size, channels) in [0, 1].

    Integer pixels are read as 0..255, floats above 1 as 0..their maximum;
    (N, H, W) gains a channel axis, RGB becomes gray for one channel (and gray
    is repeated for three), and the size is changed with area-preserving
    bilinear resizing.
    """
    images = np.asarray(images)
    if images.dtype.kind not in "iuf":
        raise DataError(f"expected numeric pixels, got an array of {images.dtype}")
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4 or images.shape[-1] not in (1, 3, 4) or images.shape[0] == 0:
        raise DataError(f"expected images shaped (N, H, W) or (N, H, W, 1|3|4), got {images.shape}")
    if np.issubdtype(images.dtype, np.integer):
        images = images.astype(np.float32) / 255.0
    else:
        images = images.astype(np.float32)
        if not np.isfinite(images).all():
            raise DataError(f"{np.size(images) - np.isfinite(images).sum()} pixel values are NaN or "
                            f"infinite; clean the data first")
        peak = float(images.max())
        if peak > 1.0:
            images /= peak
    images = images[..., :3]  # drop alpha
    if channels == 1 and images.shape[-1] == 3:
        images = images @ np.array([[0.299], [0.587], [0.114]], np.float32)
    elif channels == 3 and images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    if images.shape[1:3] != (image_size, image_size):
        images = tf.image.resize(images, (image_size, image_size), antialias=True).numpy()
    return np.clip(images, 0.0, 1.0)


def _digits():
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images / 16.0, digits.target


def _tfds_images(name):
    import tensorflow_datasets as tfds

    ds = load_tfds(name)
    if "image" not in ds.element_spec:
        raise DataError(f"tfds:{name} has no 'image' feature")
    examples = list(tfds.as_numpy(ds))
    labels = np.array([ex["label"] for ex in examples]) if "label" in ds.element_spec else None
    return np.stack([ex["image"] for ex in examples]), labels


def _npz(path):
    try:
        with np.load(path) as arrays:  # allow_pickle=False: object arrays are refused, not run
            key = next((k for k in ("x_train", "x") if k in arrays.files), None)
            if key is None:
                raise DataError(f"{path} has no image array: expected 'x_train' or 'x', found "
                                f"{', '.join(arrays.files) or 'nothing'}")
            label_key = {"x_train": "y_train", "x": "y"}[key]
            return arrays[key], arrays[label_key] if label_key in arrays.files else None
    except (OSError, ValueError, EOFError, TypeError, zipfile.BadZipFile) as e:
        raise DataError(f"{path} is not a readable .npz file of numbers: {e}") from None


def image_files(path):
    """The PNG and JPEG files of a folder, sorted: the order both the in-memory and the
    streamed path split."""
    files = sorted(os.path.join(path, f) for f in os.listdir(path) if f.lower().endswith(IMAGE_SUFFIXES))
    if not files:
        raise DataError(f"{path} holds no PNG or JPEG images")
    return files


STREAM_BYTES = 1 << 30  # a folder whose float32 pixels at the model's size exceed this streams


def streams(source, image_size, channels):
    """Whether the folder `source` is read from disk batch by batch instead of into one array."""
    return (image_source_kind(source) == "folder"
            and len(image_files(source)) * image_size * image_size * channels * 4 > STREAM_BYTES)


def decode_file(path, image_size, channels):
    """One image file → float32 (image_size, image_size, channels) in [0, 1], in TensorFlow ops,
    as `prepare_images` converts an array (gray from RGB by the same weights, the same
    area-preserving bilinear resize)."""
    image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
    image = tf.cast(image, tf.float32) / 255.0  # gray repeated, alpha dropped
    if channels == 1:  # the weights sum to 1: a gray image stays itself
        image = tf.tensordot(image, tf.constant([0.299, 0.587, 0.114]), 1)[..., None]
    image = tf.image.resize(image, (image_size, image_size), antialias=True)
    return tf.clip_by_value(tf.ensure_shape(image, (image_size, image_size, channels)), 0.0, 1.0)


STREAMED_VALIDATION = 5000  # held-out images decoded into memory at most (a seeded sample above)


def streamed_image_datasets(files, split, batch_size, seed, image_size, channels, first_step=0):
    """`image_datasets` for a folder read from disk: each batch's files decoded in parallel,
    the file order shuffled each pass from the seed (`shuffled_batches`), so a resumed run
    continues it exactly; validation: up to STREAMED_VALIDATION held-out images, in memory.
    Returns (train, validation, the first 32 training images)."""
    train_rows, val_rows = split
    if not len(val_rows) or len(train_rows) < batch_size:
        raise DataError(f"{len(files)} images are too few for a 90/10 train/validation split "
                        f"with batches of {batch_size}")
    files = np.asarray(files)
    train_files = tf.constant(files[train_rows])

    def decode(paths):
        return tf.map_fn(lambda p: decode_file(p, image_size, channels), paths,
                         fn_output_signature=tf.float32)

    train = (shuffled_batches(len(train_rows), batch_size, seed, first_step)
             .map(lambda i: decode(tf.gather(train_files, i)), num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    if len(val_rows) > STREAMED_VALIDATION:
        val_rows = np.sort(np.random.default_rng(seed).choice(val_rows, STREAMED_VALIDATION, False))
    held_out = decode(tf.constant(files[val_rows])).numpy()
    val = tf.data.Dataset.from_tensor_slices(held_out).batch(batch_size).cache()
    return train, val, decode(train_files[:32]).numpy()


def _folder(path):
    from PIL import Image, UnidentifiedImageError

    images = []
    for name in image_files(path):
        try:
            with Image.open(name) as image:
                images.append(np.asarray(image.convert("RGB" if image.mode not in ("L", "RGB") else image.mode)))
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"cannot read image {name}: {e}") from None
    sizes = sorted({im.shape for im in images})
    if len(sizes) > 1:
        raise DataError(f"{path} mixes image sizes {sizes[:3]}; resize them to one size first")
    return np.stack(images), None


def load_images(source, image_size, channels=1):
    """(images float32 (N, S, S, C) in [0, 1], integer labels or None) from `source`.

    `source`: None/'digits' (embedded), 'tfds:NAME' (local data_dir only),
    an .npz file with 'x_train' or 'x' (and optionally 'y_train'/'y'), or a
    folder of PNG/JPEG files of one size.
    """
    kind = image_source_kind(source)
    if kind == "digits":
        images, labels = _digits()
    elif kind == "tfds":
        images, labels = _tfds_images(source[len("tfds:"):])
    elif kind == "folder":
        images, labels = _folder(source)
    else:
        images, labels = _npz(source)
    images = prepare_images(images, image_size, channels)
    return images, None if labels is None else _check_labels(labels, len(images), source)


MAX_CLASSES = 1000


def _check_labels(labels, count, source):
    """Integer class indices 0..MAX_CLASSES-1, one per image."""
    labels = np.asarray(labels).reshape(-1)
    if labels.dtype.kind not in "iuf" or len(labels) != count:
        raise DataError(f"{source}: expected {count} numeric labels (one per image), got "
                        f"{len(labels)} of {labels.dtype}")
    if labels.dtype.kind == "f" and not (np.isfinite(labels).all() and (labels == np.round(labels)).all()):
        raise DataError(f"{source}: labels must be whole numbers (class indices)")
    if labels.min() < 0 or labels.max() >= MAX_CLASSES:
        raise DataError(f"{source}: labels must be class indices 0..{MAX_CLASSES - 1}, found "
                        f"{labels.min():g}..{labels.max():g}")
    return labels.astype(np.int32)


def shuffled_batches(count, batch_size, seed, first_step=0):
    """An endless dataset of index batches: each pass over range(count) in its own order,
    drawn from (seed, pass) alone (not from TensorFlow's global seed), so the stream is the
    same in every process and a resumed run continues it exactly from batch `first_step`."""
    def index(i):
        epoch, position = i // count, i % count
        return tf.random.experimental.index_shuffle(position, tf.stack([tf.cast(seed, tf.int64), epoch]),
                                                    count - 1)

    return (tf.data.Dataset.counter(first_step * batch_size).map(index)
            .batch(batch_size, drop_remainder=True))


def split_images(count, seed):
    """(training indices, validation indices) of `count` images: a shuffled 90/10 split drawn
    from the seed, the one cut of an image set (the generator and the quality classifier
    learn from the first part; the second validates both)."""
    order = np.random.default_rng(seed).permutation(count)
    cut = max(1, int(count * 0.9))
    return order[:cut], order[cut:]


def image_datasets(images, split, batch_size, seed, first_step=0, labels=None):
    """(train, validation) datasets of image batches (of (images, labels) batches when labels are
    given) over the two parts of `split` (see `split_images`): train repeated (reshuffled each
    pass) and started at batch `first_step`."""
    train_rows, val_rows = split
    if not len(val_rows) or len(train_rows) < batch_size:
        raise DataError(f"{len(images)} images are too few for a 90/10 train/validation split "
                        f"with batches of {batch_size}")
    columns = (images,) if labels is None else (images, labels)
    train_columns = tuple(tf.constant(column[train_rows]) for column in columns)
    train = (shuffled_batches(len(train_rows), batch_size, seed, first_step)
             .map(lambda i: tuple(tf.gather(c, i) for c in train_columns) if labels is not None
                  else tf.gather(train_columns[0], i), num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    held_out = tuple(column[val_rows] for column in columns)
    val = tf.data.Dataset.from_tensor_slices(held_out if labels is not None else held_out[0])
    val = val.batch(batch_size).cache()
    return train, val


def image_grid(images, columns=8):
    """(N, H, W, C) floats in [0, 1] → one uint8 (rows·H, columns·W, C) picture with 1-pixel gaps."""
    images = np.asarray(images)
    n, h, w, c = images.shape
    rows = -(-n // columns)
    grid = np.ones((rows * (h + 1) + 1, columns * (w + 1) + 1, c), np.float32)
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[1 + r * (h + 1):1 + r * (h + 1) + h, 1 + col * (w + 1):1 + col * (w + 1) + w] = image
    return (np.clip(grid, 0, 1) * 255).round().astype(np.uint8)


def save_png(path, picture, scale=4):
    """Writes a uint8 (H, W, 1|3) picture atomically, enlarged `scale` times so small digits show."""
    import io

    from PIL import Image

    from kerasgen.rundir import atomic_write

    picture = np.repeat(np.repeat(picture, scale, axis=0), scale, axis=1)
    buffer = io.BytesIO()
    Image.fromarray(picture[..., 0] if picture.shape[-1] == 1 else picture).save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())
