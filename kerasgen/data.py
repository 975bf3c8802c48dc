"""tf.data pipelines for text: the embedded default corpus, the user's files, and tfds."""
import dataclasses
import os
import re

import numpy as np
import tensorflow as tf

EMBEDDED_TEXT = "pydoc"  # CPython's own help text: on every Python, needs no download
UNKNOWN_ID = 0  # id 0 is reserved for characters outside the vocabulary


class DataError(ValueError):
    """Unusable data: reported as one line, exit code 2."""


_TABLE_OR_GRAMMAR = re.compile(r"^\s*[|+=]|::=")


def _embedded_text():
    """CPython's help topics, without the ASCII tables and grammar rules that would teach noise."""
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return "\n".join(line for line in text.splitlines() if not _TABLE_OR_GRAMMAR.search(line))


def load_tfds(name):
    """A tensorflow-datasets train split from the local data_dir only (never downloads)."""
    import tensorflow_datasets as tfds

    try:
        return tfds.load(name, split="train", download=False)
    except Exception as e:  # tfds raises many kinds; all mean "not available here"
        raise DataError(f"tfds:{name} is not available in the local tfds data_dir "
                        f"(set TFDS_DATA_DIR; nothing is downloaded): {e}".splitlines()[0]) from None


def _tfds_text(name):
    """All text of a tensorflow-datasets dataset's train split."""
    import tensorflow_datasets as tfds

    ds = load_tfds(name)
    keys = [k for k, spec in ds.element_spec.items() if spec.dtype == tf.string]
    if not keys:
        raise DataError(f"tfds:{name} has no text feature")
    return "\n".join(ex[keys[0]].decode("utf-8", "replace") for ex in tfds.as_numpy(ds))


def load_text(source):
    """The corpus named by `source`: None/'pydoc' (embedded), 'tfds:NAME', or a UTF-8 file path."""
    if source in (None, EMBEDDED_TEXT):
        text = _embedded_text()
    elif source.startswith("tfds:"):
        text = _tfds_text(source[len("tfds:"):])
    else:
        if not os.path.isfile(source):
            raise DataError(f"data file not found: {source}")
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise DataError(f"{source} is not UTF-8 text: {e}") from None
    if not text.strip():
        raise DataError(f"data source {source or EMBEDDED_TEXT!r} is empty")
    return text


@dataclasses.dataclass(frozen=True)
class CharVocab:
    """Characters ↔ ids; id 0 stands for any character outside `chars`."""

    chars: str

    @classmethod
    def from_text(cls, text):
        return cls("".join(sorted(set(text))))

    @property
    def size(self):
        return len(self.chars) + 1

    def encode(self, text):
        index = {c: i + 1 for i, c in enumerate(self.chars)}
        return np.array([index.get(c, UNKNOWN_ID) for c in text], dtype=np.int32)

    def decode(self, ids):
        return "".join(self.chars[i - 1] if 0 < i <= len(self.chars) else "" for i in ids)

    def unknown(self, text):
        """The characters of `text` outside the vocabulary, in order of first use."""
        return "".join(dict.fromkeys(c for c in text if c not in self.chars))


def split_ids(ids, seq_len):
    """nanoGPT's contiguous 90/10 train/validation split; each part must hold a window."""
    cut = int(len(ids) * 0.9)
    train, val = ids[:cut], ids[cut:]
    if len(val) < seq_len + 1:
        raise DataError(f"corpus of {len(ids)} characters is too short for seq_len={seq_len}: "
                        f"its 10% validation part needs at least {seq_len + 1} characters "
                        f"(so at least {10 * (seq_len + 1)} in all)")
    return train, val


def text_datasets(ids, seq_len, batch_size, validation_steps, seed):
    """(train, validation) datasets of (inputs, next-token targets), each (batch, seq_len).

    Training windows start at random offsets (as in nanoGPT), so the training
    dataset is infinite and `steps_per_epoch` sets an epoch; validation is the
    first `validation_steps` batches of non-overlapping windows, cached.
    """
    train_ids, val_ids = split_ids(ids, seq_len)
    train_ids = tf.constant(train_ids)
    span = tf.range(seq_len + 1, dtype=tf.int64)
    max_start = len(train_ids) - seq_len

    def windows(random_batch):
        starts = tf.math.floormod(random_batch, max_start)
        chunk = tf.gather(train_ids, starts[:, None] + span)  # (B, T+1)
        return chunk[:, :-1], chunk[:, 1:]

    train = (tf.data.Dataset.random(seed=seed).batch(batch_size, drop_remainder=True)
             .map(windows, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE))
    count = (len(val_ids) - 1) // seq_len
    val_windows = val_ids[:count * seq_len + 1]
    x = np.lib.stride_tricks.sliding_window_view(val_windows[:-1], seq_len)[::seq_len]
    y = np.lib.stride_tricks.sliding_window_view(val_windows[1:], seq_len)[::seq_len]
    val = (tf.data.Dataset.from_tensor_slices((x, y)).batch(batch_size).take(validation_steps)
           .cache().prefetch(tf.data.AUTOTUNE))
    return train, val
