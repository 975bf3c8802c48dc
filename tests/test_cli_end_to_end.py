"""Every registered model through every command at its tiny size: train, generate, evaluate, export,
fine-tune. A new model is picked up here with no test code."""
import json
import os

import numpy as np
import pytest

from conftest import MODELS, tiny_flags
from kerasgen import evaluate, generate, registry, train
from kerasgen.base import GenerativeModel
from kerasgen.config import model_defaults
from kerasgen.export.__main__ import main as export_main
from kerasgen.rundir import RunDir

pytestmark = pytest.mark.slow


@pytest.fixture(params=MODELS)
def trained(request, tiny_run):
    """(model name, run directory) of a tiny training run."""
    return request.param, tiny_run(request.param)


def test_train_writes_a_complete_run_directory_and_says_what_to_do_next(trained, capsys):
    name, run = trained
    config = run.read_config()
    assert config["model_name"] == name and config["family"] == registry.get(name).family.name
    assert config["train"]["batch_size"] == 2 and config["recipe"] and config["model"]
    for path in (RunDir.FINAL, RunDir.BEST, RunDir.SUMMARY, *(os.path.join(RunDir.LOGS, part) for part in
                 ("train", *registry.get(name).family.log_parts))):
        assert os.path.exists(run.join(path)), path
    assert not os.path.exists(run.backup_dir)  # removed once the final model is safe
    summary = run.read_summary()
    assert all(np.isfinite(v) for v in summary.values() if isinstance(v, float))


def test_generate_writes_its_family_s_output_from_either_checkpoint(trained, tmp_path, capsys):
    """Text models print the samples (and write no picture); image models write the picture."""
    from PIL import Image

    name, run = trained
    text = registry.get(name).family.name == "text"
    for checkpoint in ("best", "final"):
        png = str(tmp_path / f"{checkpoint}.png")
        args = ["--run", run.path, "--checkpoint", checkpoint, "--num_samples", "4", "--seed", "3"]
        assert generate.main(args + (["--max_new_tokens", "12"] if text else ["--out", png])) == 0
        printed = capsys.readouterr().out
        if text:
            assert "--- sample 4 ---" in printed and not os.path.exists(png)
        else:
            assert printed.startswith(f"wrote 4 samples to {png}") and Image.open(png).size[0] > 0


def test_evaluate_prints_json_scores_with_the_counts_it_used(trained, capsys):
    name, run = trained
    text = registry.get(name).family.name == "text"
    assert evaluate.main(["--run", run.path, "--seeds", "2", "--num_samples", "3",
                          *(["--max_new_tokens", "20"] if text else [])]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["model"] == name and result["seeds"] == 2 and result["num_samples"] == 3
    for stats in result.get("samples", {}).values():
        assert set(stats) == {"mean", "std"} and stats["std"] >= 0


def test_export_writes_a_served_version_and_litert_files(trained, tmp_path, capsys):
    name, run = trained
    base = str(tmp_path / "models")
    assert export_main(["--run", run.path, "--base", base, "--quantize", "none,float16"]) == 0
    printed = capsys.readouterr().out
    assert "docker run" in printed and "limits" in printed
    for path in (f"{name}/1/saved_model.pb", f"{name}/tflite/1/model.tflite",
                 f"{name}/tflite/1/float16.tflite", "models.config"):
        assert os.path.exists(os.path.join(base, path)), path


def test_fine_tuning_starts_from_the_run_and_freezes_where_the_model_can(trained, tmp_path):
    name, run = trained
    cls = registry.get(name)
    freezes = cls.freeze_lower is not GenerativeModel.freeze_lower
    out = str(tmp_path / "tuned")
    flags = [*tiny_flags(name), "--init_from", run.path, "--out", out]
    assert train.main(flags + (["--freeze_layers=1"] if freezes else [])) == 0
    tuned = RunDir(out)
    hyper = lambda r: {k: r.read_config()["model"][k] for k in model_defaults(cls)}  # noqa: E731
    assert hyper(tuned) == hyper(run)
    assert tuned.read_config()["recipe"]["learning_rate"] == 1e-4  # the finetune recipe
    before, after = run.load_model("best"), tuned.load_model("final")
    changed = [not np.array_equal(a, b) for a, b in zip(before.get_weights(), after.get_weights())]
    assert any(changed)  # it trained
    if freezes:
        frozen = {id(v) for layer in after.lower_layers()[0] for v in layer.weights}
        for variable, old in zip(after.weights, before.weights):
            if id(variable) in frozen:
                np.testing.assert_array_equal(variable, old)


def test_an_unfinished_run_cannot_be_fine_tuned_or_generated_from(tmp_path, capsys):
    run = RunDir.create("x", str(tmp_path / "empty"))
    run.write_config({"model_name": MODELS[0], "family": "?", "train": {}, "recipe": {}, "model": {}})
    assert generate.main(["--run", run.path]) == 2
    assert "does not exist" in capsys.readouterr().err
