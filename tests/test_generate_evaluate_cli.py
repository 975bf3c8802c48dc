"""python -m kerasgen.generate / evaluate on runs made by kerasgen.train, and fine-tuning."""
import json
import os

import keras
import numpy as np
import pytest

from conftest import TINY_MODEL, TINY_TRAIN
from kerasgen import evaluate, generate, train
from test_images import TINY_IMAGE_TRAIN

TEXT = "the quick brown fox jumps over the lazy dog.\n" * 20


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("text")
    (root / "corpus.txt").write_text(TEXT, encoding="utf-8")
    out = str(root / "run")
    assert train.main(["--model=gru", "--data", str(root / "corpus.txt"), "--out", out,
                       *TINY_TRAIN, *TINY_MODEL["gru"]]) == 0
    return out


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("image") / "run")
    assert train.main(["--model=dense", "--units=8", "--out", out, *TINY_IMAGE_TRAIN]) == 0
    return out


def test_generate_prints_the_prompt_and_its_continuation_reproducibly(text_run, capsys):
    args = ["--run", text_run, "--prompt", "the ", "--max_new_tokens", "30", "--seed", "4"]
    assert generate.main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("the ") and len(first.rstrip("\n")) >= 4 + 25
    assert generate.main(args) == 0
    assert capsys.readouterr().out == first


def test_generate_several_samples_with_every_control(text_run, capsys):
    assert generate.main(["--run", text_run, "--num_samples", "3", "--max_new_tokens", "20",
                          "--top_k", "5", "--top_p", "0.9", "--repetition_penalty", "1.2",
                          "--no_repeat_ngram", "3", "--checkpoint", "best"]) == 0
    out = capsys.readouterr().out
    assert all(f"--- sample {i} ---" in out for i in (1, 2, 3))


@pytest.mark.parametrize("flags, message", [
    (["--prompt", "quiz QUIZ"], "outside the model's vocabulary: 'QUIZ'"),
    (["--temperature", "-1"], "temperature must be ≥ 0"),
    (["--top_p", "0"], "top_p must be in (0, 1]"),
    (["--top_p", "1.5"], "top_p must be in (0, 1]"),
    (["--top_k", "-3"], "top_k must be ≥ 0"),
    (["--max_new_tokens", "0"], "max_new_tokens must be ≥ 1"),
    (["--temperature", "hot"], "invalid float value"),
])
def test_generate_bad_input_is_one_line_and_exit_2(text_run, capsys, flags, message):
    assert generate.main(["--run", text_run, *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_generate_rejects_a_directory_that_is_not_a_run(tmp_path, capsys):
    assert generate.main(["--run", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err


def test_evaluate_prints_text_metrics_as_json(text_run, capsys):
    assert evaluate.main(["--run", text_run, "--num_samples", "3", "--seeds", "2",
                          "--max_new_tokens", "40", "--top_p", "0.9"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "gru" and result["sampling"]["top_p"] == 0.9
    assert result["perplexity"] == pytest.approx(np.exp(result["val_loss"]))
    assert result["bits_per_char"] == pytest.approx(result["val_loss"] / np.log(2))
    assert set(result["samples"]) == {"repetition_rate", "distinct_1", "distinct_2", "distinct_3",
                                      "self_bleu"}
    for stats in result["samples"].values():
        assert set(stats) == {"mean", "std"} and stats["std"] >= 0


def test_generate_and_evaluate_image_runs(image_run, tmp_path, capsys):
    png = str(tmp_path / "grid.png")
    assert generate.main(["--run", image_run, "--out", png, "--num_samples", "16"]) == 0
    assert os.path.getsize(png) > 0 and "wrote 16 samples" in capsys.readouterr().out
    assert evaluate.main(["--run", image_run, "--seeds", "2", "--num_samples", "50"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result["samples"]) == {"fid", "class_entropy", "max_class_entropy", "confidence"}
    assert generate.main(["--run", image_run]) == 2  # no --out


def test_fine_tune_starts_from_the_pretrained_run_and_freezes_lower_layers(text_run, tmp_path):
    (tmp_path / "new.txt").write_text("the lazy dog jumps over the quick fox.\n" * 20)
    out = str(tmp_path / "tuned")
    assert train.main(["--init_from", text_run, "--data", str(tmp_path / "new.txt"), "--out", out,
                       "--freeze_layers=1", *TINY_TRAIN]) == 0
    config = json.load(open(os.path.join(out, "config.json")))
    pretrained = json.load(open(os.path.join(text_run, "config.json")))
    assert config["model"]["vocabulary"] == pretrained["model"]["vocabulary"]
    assert config["model"]["units"] == pretrained["model"]["units"]
    assert config["recipe"]["learning_rate"] == 1e-4  # the finetune recipe
    before = keras.saving.load_model(os.path.join(text_run, "model.keras"))
    after = keras.saving.load_model(os.path.join(out, "model.keras"))
    np.testing.assert_array_equal(after.embedding.embeddings, before.embedding.embeddings)
    assert not np.array_equal(after.head.kernel, before.head.kernel)  # the top still trains


def test_fine_tune_rejects_characters_outside_the_pretrained_vocabulary(text_run, tmp_path, capsys):
    (tmp_path / "new.txt").write_text("ZEBRA crossing! " * 100)
    out = tmp_path / "tuned"
    assert train.main(["--init_from", text_run, "--data", str(tmp_path / "new.txt"),
                       "--out", str(out), *TINY_TRAIN]) == 2
    assert "outside the pretrained vocabulary" in capsys.readouterr().err
    assert not out.exists()
