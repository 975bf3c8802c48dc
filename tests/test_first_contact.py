"""What a new user meets first, each finding of a fresh-clone try-out a test: usage errors at once,
no silent abbreviations, hints that say what is true and what to do, pasteable commands, plain
logs in a file, a backup never trusted as written, and a local check of an export."""
import json
import os
import shlex
import shutil
import signal
import sys

import numpy as np
import pytest

from conftest import TESTS, error_lines, export, run_python, tiny_flags, tiny_model
from kerasgen import generate, train
from kerasgen.rundir import RunDir

CORPUS = os.path.join(TESTS, "corpus.txt")
GRU = [*tiny_flags("gru"), "--data", CORPUS]

# Each command with bad input, in a process where TensorFlow cannot be imported: the answer must
# come from the flags, the zoo's sources and the files alone (TensorFlow takes ~6 s to start).
WITHOUT_TENSORFLOW = r"""
import json, sys
sys.modules["tensorflow"] = sys.modules["keras"] = None  # importing either now fails
from kerasgen import evaluate, generate, train
from kerasgen.bench.__main__ import main as bench
from kerasgen.client import main as client
from kerasgen.export.__main__ import main as export
mains = {"train": train.main, "generate": generate.main, "evaluate": evaluate.main,
         "export": export, "client": client, "bench": bench}
print(json.dumps([mains[command](args) for command, args in json.loads(sys.argv[1])]))
"""


@pytest.fixture
def image_run_config(tmp_path):
    """A run directory of an image model, as far as the commands read before loading it."""
    run = RunDir.create("conv", str(tmp_path / "image-run"))
    run.write_config({"model_name": "conv", "family": "image", "train": {}, "recipe": {},
                      "model": {}})
    return run.path


def test_every_usage_error_of_every_command_is_answered_without_tensorflow(tmp_path, image_run_config):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    calls = [("train", ["--model", "gpt"]), ("train", ["--epocs", "3"]), ("train", ["--epoch", "3"]),
             ("train", ["--batch_size", "-1"]), ("train", ["--data", "/no/such/file.txt"]),
             ("train", ["--model=dense", "--data", "/no/such/images.npz"]),
             ("train", ["--out", str(tmp_path / "busy")]), ("train", ["--resume", "/no/run"]),
             ("train", ["--strategy=multi_worker"]),
             ("generate", ["--run", "/no/run"]), ("generate", ["--run", image_run_config, "--temp", "1"]),
             ("generate", ["--run", image_run_config, "--max_new_tokens", "5", "--out", "x.png"]),
             ("evaluate", ["--run", "/no/run"]), ("export", ["--run", "/no/run"]),
             ("export", ["--run", image_run_config, "--formats", "onnx"]),
             ("client", ["--timeout", "-1", "metadata"]), ("client", ["--saved_model", "/no", "metadata"]),
             ("bench", ["race", "--rounds", "0"]), ("bench", ["images", "--models", "gan"]),
             ("bench", ["tokenizers", "--models", "conv"]), ("bench", ["scale", "--workers", "1"])]
    result = run_python(["-c", WITHOUT_TENSORFLOW, json.dumps(calls)], env={"TF_CONFIG": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [2] * len(calls)
    lines = error_lines(result.stderr)
    assert len(lines) == len(calls) and not [line for line in lines if "Traceback" in line
                                             or "ImportError" in line or "NoneType" in line], lines


@pytest.mark.parametrize("command, args, message", [
    (train.main, ["--epoch", "3"], "unknown option --epoch; did you mean --epochs?"),
    (train.main, ["--lr", "0.1"], "did you mean --learning_rate?"),
    (train.main, ["--batch", "12"], "did you mean --batch_size?"),
    (generate.main, ["--run", "R", "--temp", "1"], "unrecognized arguments: --temp 1; did you mean "
                                                   "--temperature?"),
])
def test_options_are_never_abbreviated_and_a_misspelling_gets_the_closest_names(
        command, args, message, tmp_path, capsys):
    """argparse's prefix matching took --epoch for --epochs without a word (and refused --batch)."""
    assert command([a.replace("R", str(tmp_path)) for a in args]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines


def test_flags_of_another_family_are_refused_not_ignored(image_run_config, capsys):
    assert generate.main(["--run", image_run_config, "--max_new_tokens", "5", "--out", "x.png"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert lines == ["kerasgen.generate: error: --max_new_tokens is for text models, not for image "
                     "models such as this run's conv"]


def test_run_latest_says_which_run_it_took(tiny_run, tmp_path, monkeypatch, capsys):
    run = tiny_run("gru")
    monkeypatch.chdir(tmp_path)
    os.makedirs(os.path.join("runs", "gru"))
    os.symlink(run.path, os.path.join("runs", "gru", "only"))
    assert generate.main(["--run", "latest", "--max_new_tokens", "3"]) == 0
    assert "--run latest is runs/gru/only (a gru run)" in capsys.readouterr().err


def test_every_printed_command_pastes_for_a_run_path_with_spaces(tmp_path, capsys):
    out = str(tmp_path / "my runs" / "first try")
    assert train.main([*GRU, "--out", out]) == 0
    printed = capsys.readouterr().out.splitlines()
    commands = printed[printed.index("next:") + 1:]
    assert len(commands) == 4
    for line in commands:
        words = shlex.split(line)
        path = words[words.index("--run") + 1] if "--run" in words else words[words.index("--logdir") + 1]
        assert path in (out, os.path.join(out, "logs")), line


def test_piped_training_logs_are_plain_lines(tmp_path, capsys, monkeypatch):
    """Keras' progress bar, drawn into a file, left colour codes and carriage-return redraws."""
    monkeypatch.delenv("CI", raising=False)
    assert train.main([*GRU, "--epochs=2", "--out", str(tmp_path / "run")]) == 0
    printed = capsys.readouterr().out
    assert "Epoch 2/2" in printed and "\r" not in printed and "\x1b[" not in printed


def test_a_binary_data_file_says_where_it_is_not_utf8(tmp_path, capsys):
    path = tmp_path / "data.bin"
    path.write_bytes(b"plain text, then \xff\xfe")
    assert train.main([*tiny_flags("gru"), "--data", str(path), "--out", str(tmp_path / "run")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "byte 0xff at offset 17" in lines[0] and "codec" not in lines[0], lines


@pytest.fixture
def interrupted_at_the_final_save(tmp_path):
    """A run killed while writing model.keras, after its last epoch."""
    from test_faults import KILL_POINTS, train_process

    out = str(tmp_path / "run")
    killed = train_process([*GRU, "--epochs=2", "--out", out], KILL_POINTS["final save"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    return out


def test_a_run_killed_in_its_final_save_says_to_resume_it(interrupted_at_the_final_save, capsys):
    out = interrupted_at_the_final_save
    assert generate.main(["--run", out, "--checkpoint", "final"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "final save was interrupted" in lines[0] \
        and f"python -m kerasgen.train --resume {out}" in lines[0], lines


def test_a_truncated_checkpoint_is_called_truncated_not_missing(tiny_run, tmp_path, capsys):
    copy = str(tmp_path / "copy")
    shutil.copytree(tiny_run("gru").path, copy)
    with open(RunDir(copy).checkpoint_path("best"), "r+b") as f:
        f.truncate(2000)
    assert generate.main(["--run", copy]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "truncated" in lines[0] and "File not found" not in lines[0], lines



@pytest.fixture
def resumable(tmp_path):
    """An unfinished run whose backup holds 2 epochs (of 3)."""
    from test_faults import KILL_POINTS, train_process

    out = str(tmp_path / "run")
    killed = train_process([*GRU, "--epochs=3", "--steps_per_epoch=4", "--steps_per_execution=1",
                            "--out", out], KILL_POINTS["mid-epoch"])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    return RunDir(out)


@pytest.mark.parametrize("damage, message", [
    (lambda s: s.update(epoch="two"), "epoch='two' is not a number of epochs"),
    (lambda s: s.update(weights="../../elsewhere.h5"), "is not a backup weights file"),
    (lambda s: s.update(random=7), "are not lists"),
    (lambda s: s.update(callbacks=[{"best": "low"}]), "could not convert string to float"),
    (lambda s: s.pop("random"), "not the trainer's backup state"),
])
def test_a_backup_state_of_the_wrong_shape_is_one_line_not_a_traceback(resumable, damage, message,
                                                                        capsys):
    with open(resumable.backup_state_path) as f:
        state = json.load(f)
    damage(state)
    with open(resumable.backup_state_path, "w") as f:
        json.dump(state, f)
    assert train.main(["--resume", resumable.path]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "state.json is corrupted" in lines[0] and message in lines[0], lines
    assert not resumable.finished


def test_resuming_with_fewer_epochs_than_finished_is_refused(resumable, capsys):
    """It used to 'finish' at once, writing an untrained model.keras and summary.json."""
    assert train.main(["--resume", resumable.path, "--epochs=1"]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "--epochs=1 is fewer than the 2 epochs" in lines[0], lines
    assert not resumable.finished and not os.path.exists(resumable.checkpoint_path("final"))


def test_the_local_client_answers_as_the_served_model_does(tmp_path, capsys):
    """No Docker, no tensorflow_model_server: the client answers from the SavedModel itself."""
    from kerasgen import client
    from kerasgen.text.decoding import generate as in_process
    from kerasgen.text.sampling import Sampling

    model = tiny_model("gru")
    path = export(model, tmp_path)
    assert client.main(["--saved_model", path, "generate", "--prompt", "ab", "--max_new_tokens", "9",
                        "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "ab" + in_process(model, ["ab"], Sampling(9, seed=3))[0] + "\n"
    assert "a check of the export, not TF Serving" in captured.err
    assert client.main(["--saved_model", path, "generate", "--prompt", "ab", "--top_p", "2"]) == 2
    assert client.main(["--saved_model", path, "metadata"]) == 0
    assert {"generate", "serving_default", "logits"} == set(json.loads(capsys.readouterr().out))


def test_export_onto_a_full_disk_is_one_line_and_leaves_no_version(tiny_run, tmp_path):
    from test_faults import _in_a_small_tmpfs

    folder = tmp_path / "small"
    folder.mkdir()
    base = folder / "models"
    command = f"{sys.executable} -m kerasgen.export --run {tiny_run('gru').path} --base {base} --formats saved_model"
    result = _in_a_small_tmpfs(folder, f"{command}; echo rc=$?; ls -A {base}/gru || true")
    if result is None:
        pytest.skip("this machine cannot mount a size-limited tmpfs (no user or mount namespaces)")
    assert "rc=2" in result.stdout, result.stderr[-3000:]
    lines = error_lines(result.stderr)
    assert len(lines) == 1 and "cannot write" in lines[0] and "No space left on device" in lines[0], lines
    assert not [name for name in result.stdout.split() if name.isdigit() or name.startswith("tmp-")]
