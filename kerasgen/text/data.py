"""Text data: the embedded default corpus, the user's files and tfds, as tf.data windows."""
import re

import numpy as np
import tensorflow as tf

from kerasgen.data import load_tfds
from kerasgen.errors import DataError
from kerasgen.text import EMBEDDED_TEXT, check_text_source

_TABLE_OR_GRAMMAR = re.compile(r"^\s*[|+=]|::=")


def _embedded_text():
    """CPython's help topics, without the ASCII tables and grammar rules that would teach noise."""
    from pydoc_data import topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    return "\n".join(line for line in text.splitlines() if not _TABLE_OR_GRAMMAR.search(line))


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
    check_text_source(source)
    if source in (None, EMBEDDED_TEXT):
        text = _embedded_text()
    elif source.startswith("tfds:"):
        text = _tfds_text(source[len("tfds:"):])
    else:
        try:
            with open(source, encoding="utf-8") as f:
                text = f.read()
        except UnicodeDecodeError as e:
            raise DataError(f"{source} is not UTF-8 text: byte 0x{e.object[e.start]:02x} at offset "
                            f"{e.start:,} is not UTF-8 (convert it, e.g. with iconv)") from None
        except OSError as e:
            raise DataError(f"cannot read {source}: {e.strerror or e}") from None
    if not text.strip():
        raise DataError(f"data source {source or EMBEDDED_TEXT!r} is empty")
    return text


VALIDATION_SHARE = 0.1  # nanoGPT's: the last 10% of the text validates


def split_text(text):
    """(training text, validation text): nanoGPT's contiguous cut before the last 10% of the
    characters. The one place a corpus is cut: the BPE tokenizer learns from the first part
    only, the validation loss and the real passages beside the samples come from the second."""
    cut = int(len(text) * (1 - VALIDATION_SHARE))
    return text[:cut], text[cut:]


VALIDATION_LOGITS = 2 ** 25  # a validation batch's logits at most (128 MB of float32)


def validation_batch(windows, batch_size, logits_per_window):
    """Windows per validation batch: the largest divisor of `windows` whose logits stay within
    VALIDATION_LOGITS, so that every batch has one shape (XLA compiles the evaluation once, and
    fewer, larger executions cost less); `batch_size` when no divisor reaches it (a prime
    count), at the price of a second shape for the last batch."""
    most = max(1, min(windows, VALIDATION_LOGITS // logits_per_window))
    divisor = max(d for d in range(1, most + 1) if windows % d == 0)
    return divisor if divisor >= batch_size else min(batch_size, windows)


def text_datasets(train_ids, val_ids, seq_len, batch_size, seed, validation_steps=None,
                  first_step=0, vocab_size=256):
    """(train, validation) datasets of (inputs, next-token targets), each (batch, seq_len), from
    the token ids of the two parts of `split_text`; each part must hold a window.

    Training windows start at random offsets (as in nanoGPT), drawn for each
    step from (seed, step) alone: the stream is infinite, `steps_per_epoch`
    sets an epoch, and a resumed run continues it exactly from `first_step`.
    Validation is every non-overlapping window of the validation split (or
    its first `validation_steps` × `batch_size`), cached, in batches of
    `validation_batch` windows.
    """
    if len(val_ids) < seq_len + 1 or len(train_ids) < seq_len + 1:
        total = len(train_ids) + len(val_ids)
        raise DataError(f"corpus of {total} tokens is too short for seq_len={seq_len}: its "
                        f"validation part ({len(val_ids)} tokens, the last 10%) and its training "
                        f"part each need at least {seq_len + 1}")
    train_ids = tf.constant(train_ids)
    span = tf.range(seq_len + 1, dtype=tf.int64)
    max_start = len(train_ids) - seq_len

    def windows(step):
        starts = tf.random.stateless_uniform([batch_size], tf.stack([tf.cast(seed, tf.int64), step]),
                                             maxval=max_start, dtype=tf.int64)
        chunk = tf.gather(train_ids, starts[:, None] + span)  # (B, T+1)
        return chunk[:, :-1], chunk[:, 1:]

    train = (tf.data.Dataset.counter(first_step).map(windows, num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    count = (len(val_ids) - 1) // seq_len
    if validation_steps:
        count = min(count, validation_steps * batch_size)
    val_windows = val_ids[:count * seq_len + 1]
    x = np.lib.stride_tricks.sliding_window_view(val_windows[:-1], seq_len)[::seq_len]
    y = np.lib.stride_tricks.sliding_window_view(val_windows[1:], seq_len)[::seq_len]
    val = tf.data.Dataset.from_tensor_slices((x, y)).batch(
        validation_batch(count, batch_size, seq_len * vocab_size))
    return train, val.cache().prefetch(tf.data.AUTOTUNE)
