"""Text sources, the vocabulary, the 90/10 split and the tf.data windows."""
import numpy as np
import pytest
import tensorflow_datasets as tfds

from kerasgen.errors import DataError
from kerasgen.text.data import load_text, split_text, text_datasets, validation_batch
from kerasgen.text.tokenizer import CharVocab


def test_embedded_corpus_needs_no_download():
    text = load_text(None)
    assert len(text) > 100_000 and "assert" in text
    assert load_text("pydoc") == text


def test_file_source(corpus):
    assert load_text(corpus).startswith("the quick brown fox")


@pytest.mark.parametrize("content, message", [(None, "not found"), ("", "empty"),
                                              ("  \n", "empty"), (b"\xff\xfe\xfa", "not UTF-8")])
def test_bad_files(tmp_path, content, message):
    path = tmp_path / "data.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    with pytest.raises(DataError, match=message):
        load_text(str(path))


def test_tfds_source_reads_the_local_data_dir():
    with tfds.testing.mock_data(num_examples=3):
        text = load_text("tfds:tiny_shakespeare")
    assert isinstance(text, str) and len(text) > 0


def test_tfds_missing_dataset_is_a_data_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path))
    with pytest.raises(DataError, match="not available"):
        load_text("tfds:tiny_shakespeare")


def test_vocab_round_trips_and_reserves_id_zero():
    vocab = CharVocab.from_text("hello world")
    ids = vocab.encode("hello")
    assert ids.min() >= 1 and vocab.size == len(set("hello world")) + 1
    assert vocab.decode(ids) == "hello"
    assert vocab.encode("hq")[1] == 0 and vocab.unknown("hqzq") == "qz"
    text = "hello 🙂 world, über " * 50  # a code beyond every vocabulary character: unknown
    expected = [vocab.chars.index(c) + 1 if c in vocab.chars else 0 for c in text]
    np.testing.assert_array_equal(vocab.encode(text, piece=7), expected)


def test_split_is_contiguous_90_10():
    text = "".join(chr(ord("a") + i % 26) for i in range(1000))
    train, val = split_text(text)
    assert len(train) == 900 and train + val == text
    with pytest.raises(DataError, match="too short"):
        text_datasets(np.arange(45), np.arange(5), 8, 2, 0)


def parts(ids):
    """The 90/10 parts of an id sequence, cut where `split_text` cuts its characters."""
    cut = len(split_text("x" * len(ids))[0])
    return ids[:cut], ids[cut:]


def test_windows_are_next_token_pairs_and_validation_covers_the_whole_split():
    ids = np.arange(1, 2001, dtype=np.int32)
    train, val = text_datasets(*parts(ids), seq_len=16, batch_size=4, seed=0)
    x, y = next(iter(train))
    assert x.shape == y.shape == (4, 16)
    np.testing.assert_array_equal(x.numpy() + 1, y.numpy())  # consecutive ids: y is x shifted
    assert x.numpy().max() <= 1800  # training windows stay in the first 90%
    inputs = np.concatenate([b[0].numpy().ravel() for b in val])
    assert inputs.min() == 1801 and len(inputs) == (200 - 1) // 16 * 16  # every whole window
    _, capped = text_datasets(*parts(ids), seq_len=16, batch_size=4, seed=0, validation_steps=2)
    assert sum(len(b[0]) for b in capped) == 2 * 4  # validation_steps batches of batch_size


@pytest.mark.parametrize("windows, batch_size, per_window, expected", [
    (645, 32, 6400, 645),  # the embedded corpus' validation: one batch, one compiled shape
    (645, 32, 2 ** 16, 215),  # logits bounded: the largest divisor within the bound
    (643, 32, 2 ** 16, 32),  # a prime count over the bound: the training batch, the last shorter
    (3, 32, 6400, 3),  # fewer windows than a batch
])
def test_validation_batches_have_one_shape_within_a_bounded_size(windows, batch_size, per_window,
                                                                 expected):
    assert validation_batch(windows, batch_size, per_window) == expected


def test_the_training_stream_resumes_exactly_at_any_step():
    ids = np.arange(1, 5001, dtype=np.int32)
    whole = [b[0].numpy() for b in text_datasets(*parts(ids), 8, 4, seed=3)[0].take(10)]
    later = [b[0].numpy() for b in text_datasets(*parts(ids), 8, 4, seed=3, first_step=6)[0].take(4)]
    np.testing.assert_array_equal(np.stack(later), np.stack(whole[6:]))
