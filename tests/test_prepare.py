"""Corpora prepared once into token files and read from disk (kerasgen.prepare, train --data DIR)."""
import errno
import json
import os

import numpy as np
import pytest
import tensorflow_datasets as tfds

from conftest import TINY_TRAIN
from kerasgen import prepare as prepare_cli
from kerasgen import train
from kerasgen.errors import DataError
from kerasgen.rundir import RunDir
from kerasgen.text import PreparedCorpus, open_corpus
from kerasgen.text import prepared as P
from kerasgen.text.data import (VALIDATION_SAMPLE, split_text, text_datasets, validation_windows)
from kerasgen.text.tokenizer import BytePairTokenizer, CharVocab

MIXED = ("The quick brown fox, 1234 jumps!\n\n  Over the lazy dog.\t"
         "中文的文本没有空格，也能切分。🙂 emoji 🙃\n") * 300


@pytest.fixture
def small_pieces(monkeypatch):
    """Reading and encoding in pieces far smaller than the text, so every cut is exercised."""
    monkeypatch.setattr(P, "READ_BYTES", 1001)
    monkeypatch.setattr(P, "PIECE_CHARS", 97)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


def _prepare(sources, out, tokenizer="char", vocab_size=None, **kwargs):
    return P.prepare([P.Source(s) for s in sources], str(out), P.Settings(tokenizer, vocab_size),
                     progress=False, **kwargs)


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_prepared_files_hold_the_in_memory_ids_as_nanogpt_reads_them(tmp_path, small_pieces, kind):
    source = _write(tmp_path / "mixed.txt", MIXED)
    manifest, skipped = _prepare([source], tmp_path / "out", kind, 300 if kind == "bpe" else None)
    train_text, validation_text = split_text(MIXED)
    tokenizer = CharVocab.from_text(MIXED) if kind == "char" else BytePairTokenizer.train(train_text, 300)
    for part, text in (("train.bin", train_text), ("val.bin", validation_text)):
        ids = np.fromfile(tmp_path / "out" / part, np.uint16)  # nanoGPT's np.memmap/np.fromfile
        np.testing.assert_array_equal(ids, tokenizer.encode(text))
    assert not skipped and manifest["dtype"] == "uint16" and manifest["tokenizer"] == kind
    row = manifest["sources"][0]
    assert (row["bytes"], row["chars"]) == (len(MIXED.encode()), len(MIXED))
    assert row["train_tokens"] + row["validation_tokens"] == len(tokenizer.encode(train_text)) + len(
        tokenizer.encode(validation_text))
    assert PreparedCorpus(str(tmp_path / "out")).fits(tokenizer)


def test_each_source_validates_its_own_last_tenth_and_folders_globs_and_jsonl_are_read(tmp_path):
    folder = tmp_path / "books"
    (folder / "deep").mkdir(parents=True)
    a = _write(folder / "a.txt", "alpha " * 100)
    b = _write(folder / "deep" / "b.txt", "beta " * 100)
    _write(folder / "notes.md", "not a .txt file")
    records = tmp_path / "docs.jsonl"
    records.write_text("\n".join(json.dumps({"body": t}) for t in ("gamma one", "gamma two")) + "\n")
    sources = P.expand_sources([str(folder), str(tmp_path / "*.jsonl")], field="body")
    assert [s.name for s in sources] == [a, b, str(records)]
    manifest, _ = P.prepare(sources, str(tmp_path / "out"), P.Settings(field="body"), progress=False)
    tokenizer = CharVocab(manifest["vocabulary"])
    texts = ["alpha " * 100, "beta " * 100, "gamma one\ngamma two"]
    parts = [split_text(t) for t in texts]
    for name, index in (("train.bin", 0), ("val.bin", 1)):
        np.testing.assert_array_equal(np.fromfile(tmp_path / "out" / name, np.uint16),
                                      tokenizer.encode("".join(p[index] for p in parts)))


def test_tfds_text_is_streamed_one_example_at_a_time(tmp_path):
    with tfds.testing.mock_data(num_examples=3):
        manifest, _ = P.prepare(P.expand_sources(["tfds:tiny_shakespeare"]), str(tmp_path / "out"),
                                P.Settings(), progress=False)
    assert manifest["files"]["train"]["tokens"] > 0 and manifest["sources"][0]["bytes"] is None


def test_the_same_batches_from_the_token_files_as_from_memory_and_resume_continues_them(tmp_path):
    source = _write(tmp_path / "mixed.txt", MIXED)
    _prepare([source], tmp_path / "out")
    corpus = PreparedCorpus(str(tmp_path / "out"))
    ids = [corpus.tokenizer.encode(t) for t in split_text(MIXED)]
    files = (corpus.files["train"], corpus.files["validation"])
    for first_step in (0, 7):  # 7: a run resumed there
        memory, disk = (text_datasets(*parts, 16, 4, seed=5, first_step=first_step, validation_steps=3)
                        for parts in (ids, files))
        for a, b in zip(memory[0].take(5), disk[0].take(5)):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])
        for a, b in zip(memory[1], disk[1]):
            np.testing.assert_array_equal(a[0], b[0])
    resumed = [b[0].numpy() for b in text_datasets(*files, 16, 4, seed=5, first_step=3)[0].take(2)]
    whole = [b[0].numpy() for b in text_datasets(*files, 16, 4, seed=5)[0].take(5)]
    np.testing.assert_array_equal(resumed, whole[3:5])


def test_validation_is_every_window_up_to_a_bound_then_a_fixed_seeded_sample():
    np.testing.assert_array_equal(validation_windows(100, 8, seed=0), np.arange(100))
    sample = validation_windows(62_000, 8, seed=0)
    assert len(sample) == VALIDATION_SAMPLE == len(set(sample)) and (np.diff(sample) > 0).all()
    np.testing.assert_array_equal(sample, validation_windows(62_000, 8, seed=0))
    assert sample.max() > 50_000  # spread over the split, not its first windows
    assert len(validation_windows(62_000, 8, seed=0, validation_steps=3)) == 24


def test_a_second_prepare_of_the_same_sources_does_nothing_and_other_sources_are_refused(tmp_path):
    source = _write(tmp_path / "a.txt", MIXED)
    _prepare([source], tmp_path / "out")
    stamp = os.stat(tmp_path / "out" / "train.bin").st_mtime_ns
    assert _prepare([source], tmp_path / "out")[1] is True
    os.utime(source)  # touched, same content: hashed again, still nothing to do
    assert _prepare([source], tmp_path / "out")[1] is True
    assert os.stat(tmp_path / "out" / "train.bin").st_mtime_ns == stamp
    _write(tmp_path / "a.txt", MIXED + "more")
    with pytest.raises(DataError, match="holds another prepared corpus"):
        _prepare([source], tmp_path / "out")


def test_a_failed_or_killed_prepare_leaves_nothing_train_accepts(tmp_path, monkeypatch, capsys):
    source = _write(tmp_path / "a.txt", MIXED)
    calls = []

    def full_disk(self, pieces):
        calls.append(1)
        if len(calls) > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        return np.zeros(sum(map(len, pieces)), np.uint32)

    monkeypatch.setattr(P._Encoder, "encode", full_disk)
    monkeypatch.setattr(P, "PIECE_CHARS", 50)
    monkeypatch.setattr(P, "PIECES_PER_ROUND", 1)
    assert prepare_cli.main(["--data", source, "--out", str(tmp_path / "out"), "--quiet"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"kerasgen.prepare: error: cannot write {tmp_path / 'out'}: No space left on device; "
        f"nothing was kept"]
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]
    abandoned = tmp_path / ".out.partial-999999999-x"  # a killed prepare's (no such process)
    abandoned.mkdir()
    (abandoned / "train.bin").write_bytes(b"\0\0")
    with pytest.raises(DataError, match="not a prepared corpus"):
        PreparedCorpus(str(abandoned))
    monkeypatch.undo()
    _prepare([source], tmp_path / "out")
    assert sorted(os.listdir(tmp_path)) == ["a.txt", "out"]


@pytest.mark.parametrize("damage, message", [
    ("no manifest", "not a prepared corpus"), ("manifest", "manifest.json is corrupted"),
    ("odd size", "not a whole number of uint16 tokens"), ("short", "disagrees|says"),
    ("no file", "val.bin is missing"), ("tokenizer", "tokenizer of .* is missing or corrupted")])
def test_a_damaged_prepared_corpus_is_one_line_and_exit_2(tmp_path, damage, message, capsys):
    out = tmp_path / "out"
    _prepare([_write(tmp_path / "a.txt", MIXED)], out, "bpe", 300)
    {"no manifest": lambda: (out / "manifest.json").unlink(),
     "manifest": lambda: (out / "manifest.json").write_text("{"),
     "odd size": lambda: (out / "val.bin").write_bytes((out / "val.bin").read_bytes()[:-1]),
     "short": lambda: (out / "val.bin").write_bytes((out / "val.bin").read_bytes()[:-2]),
     "no file": lambda: (out / "val.bin").unlink(),
     "tokenizer": lambda: (out / "tokenizer.json").write_text("{}")}[damage]()
    assert train.main(["--data", str(out), "--out", str(tmp_path / "run"), *TINY_TRAIN]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("kerasgen.train: error: ")
    assert __import__("re").search(message, err[0]), err[0]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("content, message", [
    ("", "empty"), (" \n\t", "empty"), (b"abc\n\xffdef", "byte 0xff at offset 4 is not UTF-8"),
    (None, "not found")])
def test_bad_sources_are_one_line_and_nothing_is_written(tmp_path, content, message, capsys):
    path = tmp_path / "a.txt"
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        path.write_text(content)
    assert prepare_cli.main(["--data", str(path), "--out", str(tmp_path / "out"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("line, message", [("{", "line 2: not JSON"),
                                           ('{"title": "x"}', "line 2: no text field 'text'")])
def test_bad_jsonl_names_the_line(tmp_path, line, message):
    path = tmp_path / "docs.jsonl"
    path.write_text('{"text": "fine"}\n' + line + "\n")
    with pytest.raises(DataError, match=message):
        _prepare([str(path)], tmp_path / "out")


def test_a_glob_or_folder_with_nothing_to_read_is_refused(tmp_path):
    with pytest.raises(DataError, match="matches no file"):
        P.expand_sources([str(tmp_path / "*.txt")])
    with pytest.raises(DataError, match="holds no .txt files"):
        P.expand_sources([str(tmp_path)])


@pytest.mark.slow
def test_a_run_trains_from_a_prepared_corpus_as_from_its_text_file_and_is_used_as_any_run(
        tmp_path, capsys):
    """Same seed, same batches: the same weights; then generate, evaluate and export read the
    run, and fine-tuning needs a corpus in the run's vocabulary."""
    from kerasgen import evaluate, generate
    from kerasgen.export.__main__ import main as export_main

    source = _write(tmp_path / "mixed.txt", MIXED)
    assert prepare_cli.main(["--data", source, "--out", str(tmp_path / "prepared"), "--quiet"]) == 0
    flags = ["--model=gru", "--units=8", "--embed_dim=4", *TINY_TRAIN]
    for data, out in ((source, "from_file"), (str(tmp_path / "prepared"), "from_prepared")):
        assert train.main([*flags, "--data", data, "--out", str(tmp_path / out)]) == 0
    runs = [RunDir(str(tmp_path / out)) for out in ("from_file", "from_prepared")]
    a, b = (run.load_model("final") for run in runs)
    assert a.get_config()["vocabulary"] == b.get_config()["vocabulary"]
    for x, y in zip(a.get_weights(), b.get_weights()):
        np.testing.assert_array_equal(x, y)
    assert runs[1].train_config().data == str(tmp_path / "prepared")
    run = str(tmp_path / "from_prepared")
    assert generate.main(["--run", run, "--max_new_tokens=5"]) == 0
    capsys.readouterr()
    assert evaluate.main(["--run", run, "--num_samples=1", "--seeds=1", "--max_new_tokens=5"]) == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["val_loss"] > 0 and scores["bits_per_byte"] > 0
    assert scores["data"] == str(tmp_path / "prepared")
    assert evaluate.main(["--run", run, "--num_samples=1", "--seeds=1", "--max_new_tokens=5",
                          "--data", source]) == 0  # the same text, in memory: the same loss
    assert json.loads(capsys.readouterr().out)["val_loss"] == pytest.approx(scores["val_loss"])
    # int8 LiteRT is calibrated on the run's own data: read back from the token files
    assert export_main(["--run", run, "--base", str(tmp_path / "models"), "--formats=tflite",
                        "--quantize=int8"]) == 0
    other = _write(tmp_path / "other.txt", "zzz yyy xxx " * 200)
    assert prepare_cli.main(["--data", other, "--out", str(tmp_path / "other"), "--quiet"]) == 0
    assert train.main([*TINY_TRAIN, "--init_from", run, "--data", str(tmp_path / "other"),
                       "--out", str(tmp_path / "tuned")]) == 2
    assert "prepared with another vocabulary" in capsys.readouterr().err
    assert prepare_cli.main(["--data", source, "--out", str(tmp_path / "same"), "--quiet",
                             "--tokenizer_from", run]) == 0
    assert train.main([*TINY_TRAIN, "--init_from", run, "--data", str(tmp_path / "same"),
                       "--out", str(tmp_path / "tuned")]) == 0


def test_a_text_file_above_the_threshold_is_prepared_once_into_the_cache(tmp_path, monkeypatch,
                                                                          capsys):
    import kerasgen.text as text

    monkeypatch.setattr(text, "PREPARE_THRESHOLD", 1000)
    monkeypatch.setenv("KERASGEN_CACHE", str(tmp_path / "cache"))
    config = train.TrainConfig(data=_write(tmp_path / "big.txt", MIXED))
    corpus = open_corpus(config)
    assert isinstance(corpus, PreparedCorpus) and corpus.name.startswith(str(tmp_path / "cache"))
    assert "prepared once" in capsys.readouterr().err
    stamp = os.stat(os.path.join(corpus.name, "train.bin")).st_mtime_ns
    again = open_corpus(config, corpus.tokenizer)  # evaluate: the run's tokenizer, the same cache
    assert again.name == corpus.name
    assert os.stat(os.path.join(corpus.name, "train.bin")).st_mtime_ns == stamp
    small = train.TrainConfig(data=_write(tmp_path / "small.txt", "tiny text " * 10))
    assert not isinstance(open_corpus(small), PreparedCorpus)


def test_each_worker_reads_its_own_rows_of_every_global_batch(tmp_path):
    _prepare([_write(tmp_path / "a.txt", MIXED)], tmp_path / "out")
    corpus = PreparedCorpus(str(tmp_path / "out"))
    files = (corpus.files["train"], corpus.files["validation"])
    arrays = [corpus.tokenizer.encode(t) for t in split_text(MIXED)]
    for source in (files, arrays):  # read from disk, or gathered in memory
        whole = [b[0].numpy() for b in text_datasets(*source, 16, 4, seed=1)[0].take(3)]
        parts = [[b[0].numpy() for b in
                  text_datasets(*source, 16, 4, seed=1, worker=(i, 2))[0].take(3)] for i in range(2)]
        for step, batch in enumerate(whole):
            np.testing.assert_array_equal(np.concatenate([parts[0][step], parts[1][step]]), batch)
        with pytest.raises(DataError, match="divide evenly"):
            text_datasets(*source, 16, 5, seed=1, worker=(0, 2))


@pytest.mark.slow
def test_two_workers_train_from_a_prepared_corpus_what_one_worker_trains(tmp_path):
    """Each worker reads its own rows of every global batch (the per-worker path): a wrong
    part (both workers reading the same rows, say) would train other weights."""
    from test_distribute import MULTI, train_one_and_two_workers_alike

    _prepare([_write(tmp_path / "a.txt", MIXED)], tmp_path / "prepared")
    train_one_and_two_workers_alike(tmp_path, [
        "--model=gru", "--units=8", "--embed_dim=4", "--seq_len=8", "--sample_chars=8",
        "--validation_steps=1", "--jit_compile=false", "--data", str(tmp_path / "prepared"), *MULTI])


@pytest.mark.slow
def test_a_run_killed_on_a_prepared_corpus_resumes_to_the_uninterrupted_weights(tmp_path):
    from test_faults import KILL_POINTS, train_process, weights

    _prepare([_write(tmp_path / "a.txt", MIXED)], tmp_path / "prepared")
    flags = ["--model=gru", "--units=8", "--embed_dim=4", *TINY_TRAIN, "--data",
             str(tmp_path / "prepared"), "--epochs=2", "--steps_per_epoch=6", "--steps_per_execution=4"]
    whole, part = str(tmp_path / "whole"), str(tmp_path / "part")
    assert train_process([*flags, "--out", whole]).returncode == 0
    patch = KILL_POINTS["mid-epoch"].replace("self.epoch == 2 and batch == 2", "self.epoch == 1")
    assert train_process([*flags, "--out", part], patch).returncode < 0
    assert train_process(["--resume", part]).returncode == 0
    for ours, theirs in zip(weights(part), weights(whole)):
        np.testing.assert_array_equal(ours, theirs)


def test_tfds_text_trains_from_the_cache_with_the_ids_of_the_joined_split(tmp_path, monkeypatch):
    from kerasgen.text.data import load_text

    monkeypatch.setenv("KERASGEN_CACHE", str(tmp_path / "cache"))
    config = train.TrainConfig(data="tfds:tiny_shakespeare")
    with tfds.testing.mock_data(num_examples=3):
        corpus = open_corpus(config)
        text = load_text("tfds:tiny_shakespeare")  # the whole split joined, in memory
    assert isinstance(corpus, PreparedCorpus) and corpus.name.startswith(str(tmp_path / "cache"))
    tokenizer = CharVocab.from_text(text)
    assert corpus.fits(tokenizer)
    for part, expected in zip(("train", "validation"), split_text(text)):
        np.testing.assert_array_equal(corpus.files[part].head(10 ** 9), tokenizer.encode(expected))


def test_tokenizer_from_a_run_takes_no_tokenizer_flag(tmp_path, capsys):
    source = _write(tmp_path / "a.txt", MIXED)
    assert prepare_cli.main(["--data", source, "--out", str(tmp_path / "out"), "--tokenizer=bpe",
                             "--tokenizer_from", str(tmp_path)]) == 2
    assert "--tokenizer_from takes the run's tokenizer" in capsys.readouterr().err
