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
