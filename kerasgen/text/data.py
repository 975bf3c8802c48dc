"""Text data: the embedded default corpus, the user's files and tfds, as tf.data windows."""
import re
import sys

import numpy as np
import tensorflow as tf

from kerasgen.data import load_tfds
from kerasgen.errors import DataError
from kerasgen.text import EMBEDDED_TEXT, check_text_source
from kerasgen.text.prepared import VALIDATION_SHARE, TokenFile

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


VALIDATION_SAMPLE = 2500  # windows: a standard error of ~0.01 nats at a per-window spread of 0.5


def validation_windows(windows, batch_size, seed, validation_steps=None):
    """The starts (in windows) of the validation windows: all `windows` up to a bound, above it a
    fixed sample drawn from `seed`, sorted, of `validation_steps` × `batch_size` windows, or
    VALIDATION_SAMPLE (whole-split validation of a 40 MB file would take minutes every epoch)."""
    bound = validation_steps * batch_size if validation_steps else VALIDATION_SAMPLE
    if windows <= bound:
        return np.arange(windows)
    return np.sort(np.random.default_rng(seed).choice(windows, bound, replace=False))


def windows_at(tokens, starts, length):
    """(len(starts), length) int32 ids of `tokens` (an array, or a TokenFile read from disk)."""
    if isinstance(tokens, TokenFile):
        return tokens.windows(starts, length)
    return np.asarray(tokens, np.int32)[np.asarray(starts)[:, None] + np.arange(length)]


def text_datasets(train_ids, val_ids, seq_len, batch_size, seed, validation_steps=None,
                  first_step=0, vocab_size=256, worker=(0, 1)):
    """(train, validation) datasets of (inputs, next-token targets), each (batch, seq_len), from
    the token ids of the two parts of `split_text` (arrays, or TokenFiles of a prepared corpus,
    which are read window by window); each part must hold a window.

    Training windows start at random offsets (as in nanoGPT), drawn for each
    step from (seed, step) alone: the stream is infinite, `steps_per_epoch`
    sets an epoch, and a resumed run continues it exactly from `first_step`;
    an array and a token file of the same ids give the same batches. `worker`
    (index, count) reads only that worker's rows of each (global) batch: its
    part of what one worker would read.
    Validation is the non-overlapping windows of the validation split that
    `validation_windows` picks, cached, in batches of `validation_batch` windows.
    """
    if len(val_ids) < seq_len + 1 or len(train_ids) < seq_len + 1:
        total = len(train_ids) + len(val_ids)
        raise DataError(f"corpus of {total} tokens is too short for seq_len={seq_len}: its "
                        f"validation part ({len(val_ids)} tokens, the last 10%) and its training "
                        f"part each need at least {seq_len + 1}")
    span = tf.range(seq_len + 1, dtype=tf.int64)
    max_start = len(train_ids) - seq_len
    index, workers = worker
    if batch_size % workers:
        raise DataError(f"--batch_size={batch_size} (the global batch) must divide evenly "
                        f"among the {workers} workers")
    rows = batch_size // workers
    if isinstance(train_ids, TokenFile):
        def gather(starts):
            chunk = tf.numpy_function(lambda s: train_ids.windows(s, seq_len + 1), [starts],
                                      tf.int32, stateful=False)
            return tf.ensure_shape(chunk, [rows, seq_len + 1])
    else:
        table = tf.constant(train_ids)

        def gather(starts):
            return tf.gather(table, starts[:, None] + span)

    def windows(step):
        starts = tf.random.stateless_uniform([batch_size], tf.stack([tf.cast(seed, tf.int64), step]),
                                             maxval=max_start, dtype=tf.int64)
        chunk = gather(starts[index * rows:(index + 1) * rows])  # this worker's rows, (B/N, T+1)
        return chunk[:, :-1], chunk[:, 1:]

    train = (tf.data.Dataset.counter(first_step).map(windows, num_parallel_calls=tf.data.AUTOTUNE)
             .prefetch(tf.data.AUTOTUNE))
    count = (len(val_ids) - 1) // seq_len
    picked = validation_windows(count, batch_size, seed, validation_steps)
    if len(picked) < count and not validation_steps:
        print(f"kerasgen: validation: a fixed sample of {len(picked):,} of the {count:,} windows of "
              f"the validation split (standard error about 0.01 nats); --validation_steps=N "
              f"takes N batches", file=sys.stderr)
    chunk = windows_at(val_ids, picked * seq_len, seq_len + 1)
    val = tf.data.Dataset.from_tensor_slices((chunk[:, :-1], chunk[:, 1:])).batch(
        validation_batch(len(picked), batch_size, seq_len * vocab_size))
    return train, val.cache().prefetch(tf.data.AUTOTUNE)
