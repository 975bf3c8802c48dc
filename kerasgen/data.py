"""Data sources every family shares: tensorflow-datasets, read from the local data_dir only."""
from kerasgen.errors import DataError


def load_tfds(name):
    """A tensorflow-datasets train split from the local data_dir (never downloads)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(name, split="train", download=False)
    except Exception as e:  # tfds raises many kinds; all mean "not available here"
        raise DataError(f"tfds:{name} is not available in the local tfds data_dir "
                        f"(set TFDS_DATA_DIR; nothing is downloaded): {e}".splitlines()[0]) from None


def without_autotune_thread(dataset):
    """`dataset` without tf.data's autotuning thread (None stays None). That thread sleeps up to a
    minute between its rounds and an iterator's destructor waits for it: the end of `fit`
    stalled for 0-57 s (py-spy: ~RootDataset::Iterator waiting on its thread), a third of a
    default GRU run. These pipelines are small; AUTOTUNE then means one call per core."""
    if dataset is None:
        return None
    import tensorflow as tf

    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options)

