"""python -m kerasgen.generate / evaluate as a user meets them: streaming, reproducibility, bad input."""
import os

import pytest

from conftest import error_lines
from kerasgen import evaluate, generate
from kerasgen.rundir import RunDir


@pytest.fixture
def text_run(tiny_run):
    return tiny_run("gru").path


def test_generate_streams_the_prompt_and_its_continuation_reproducibly(text_run, capsys):
    args = ["--run", text_run, "--prompt", "the ", "--max_new_tokens", "70", "--seed", "4"]
    assert generate.main(args) == 0
    first = capsys.readouterr().out
    assert first.startswith("the ") and len(first.rstrip("\n")) >= 4 + 60
    assert generate.main(args) == 0
    assert capsys.readouterr().out == first


def test_generate_several_samples_with_every_control(text_run, capsys):
    assert generate.main(["--run", text_run, "--num_samples", "3", "--max_new_tokens", "20",
                          "--top_k", "5", "--top_p", "0.9", "--repetition_penalty", "1.2",
                          "--no_repeat_ngram", "3", "--checkpoint", "final"]) == 0
    out = capsys.readouterr().out
    assert all(f"--- sample {i} ---" in out for i in (1, 2, 3))


@pytest.mark.parametrize("flags", [["--num_beams", "3"], ["--penalty_alpha", "0.6", "--top_k", "4"]])
def test_generate_searches_print_the_prompt_and_the_text_the_search_returns(text_run, capsys, flags):
    from kerasgen.text.decoding import generate as continue_prompts
    from kerasgen.text.sampling import Sampling

    assert generate.main(["--run", text_run, "--prompt", "the ", "--max_new_tokens", "30",
                          "--stop", "e ", *flags]) == 0
    fields = dict(zip([f.lstrip("-") for f in flags[::2]], map(float, flags[1::2])))
    sampling = Sampling(30, stop=("e ",), **{k: int(v) if k != "penalty_alpha" else v
                                              for k, v in fields.items()})
    expected = continue_prompts(RunDir(text_run).load_model(), ["the "], sampling, jit_compile=False)
    assert capsys.readouterr().out == f"the {expected[0]}\n"


@pytest.mark.parametrize("flags, message", [
    (["--prompt", "snow ☃ and ☂"], "outside the model's vocabulary: '☃☂'"),
    (["--temperature", "-1"], "temperature must be ≥ 0"),
    (["--temperature", "nan"], "temperature must be ≥ 0"),
    (["--top_p", "0"], "top_p must be in (0, 1]"),
    (["--top_p", "1.5"], "top_p must be in (0, 1]"),
    (["--top_k", "-3"], "top_k must be ≥ 0"),
    (["--min_p", "2"], "min_p must be in [0, 1]"),
    (["--typical_p", "0"], "typical_p must be in (0, 1]"),
    (["--stop", ""], "stop strings must not be empty"),
    ([arg for _ in range(9) for arg in ("--stop", ".")], "stop takes at most 8 strings"),
    (["--max_new_tokens", "0"], "max_new_tokens must be in 1..100,000"),
    (["--max_new_tokens", "1000000000"], "max_new_tokens must be in 1..100,000"),
    (["--seed", "99999999999"], "seed must be in 0..2^31-1"),
    (["--num_samples", "0"], "--num_samples must be ≥ 1"),
    (["--num_beams", "0"], "num_beams must be in 1..64"),
    (["--penalty_alpha", "0.6", "--top_k", "1"], "top_k must be in 2..64 for contrastive search"),
    (["--penalty_alpha", "2", "--top_k", "4"], "penalty_alpha must be in [0, 1]"),
    (["--num_beams", "2", "--penalty_alpha", "0.6", "--top_k", "4"], "two searches: choose one"),
    (["--num_beams", "2", "--top_p", "0.9"], "top_p narrows sampling and does not combine with num_beams"),
    (["--temperature", "hot"], "invalid float value"),
    (["--checkpoint", "middle"], "invalid choice"),
])
def test_generate_bad_input_is_one_line_and_exit_2_and_prints_nothing_else(text_run, capsys, flags,
                                                                          message):
    assert generate.main(["--run", text_run, *flags]) == 2
    captured = capsys.readouterr()
    lines = error_lines(captured.err)
    assert len(lines) == 1 and message in lines[0], lines
    assert captured.out == ""  # not even the prompt


def test_generate_rejects_a_directory_that_is_not_a_run_and_finds_the_latest(text_run, tmp_path,
                                                                             capsys, monkeypatch):
    assert generate.main(["--run", str(tmp_path)]) == 2
    assert "not a run directory" in capsys.readouterr().err
    monkeypatch.chdir(tmp_path)
    assert generate.main(["--run", "latest"]) == 2
    assert "no runs under runs/" in capsys.readouterr().err
    run = os.path.join("runs", "gru", "x")
    os.makedirs(os.path.dirname(run))
    os.symlink(text_run, run)
    assert RunDir.find("latest").path == run


def test_evaluate_reports_text_metrics_over_the_whole_validation_split(text_run, capsys):
    import json

    assert evaluate.main(["--run", text_run, "--num_samples", "3", "--seeds", "2",
                          "--max_new_tokens", "40", "--top_p", "0.9"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == "gru" and result["sampling"]["top_p"] == 0.9
    assert result["perplexity"] == pytest.approx(2.718281828 ** result["val_loss"], rel=1e-5)
    assert result["bits_per_char"] == pytest.approx(result["val_loss"] / 0.69314718, rel=1e-5)
    assert {"repetition_rate", "distinct_1", "distinct_2", "distinct_3", "self_bleu"} <= set(
        result["samples"])
