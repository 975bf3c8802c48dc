"""python -m kerasgen.train end to end at tiny sizes, its bad inputs, resume and strategies."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, TINY_MODEL, TINY_TRAIN, run_python
from kerasgen import train

# TensorFlow's C++ start-up lines, printed before absl logging is set up, whatever the log level.
TF_LOG = re.compile(r"^(WARNING: All log messages before absl|[IWE]\d{4} )")


@pytest.mark.parametrize("name", sorted(TINY_MODEL))
def test_train_writes_a_complete_run_directory(name, corpus, tmp_path, capsys):
    out = str(tmp_path / "run")
    assert train.main([f"--model={name}", "--data", corpus, "--out", out,
                       *TINY_TRAIN, *TINY_MODEL[name]]) == 0
    printed = capsys.readouterr().out
    assert "bits per character" in printed and f"tensorboard --logdir {out}/logs" in printed
    config = json.load(open(os.path.join(out, "config.json")))
    assert config["model_name"] == name and config["train"]["batch_size"] == 2
    assert config["model"]["vocabulary"] == "".join(sorted(set(open(corpus).read())))
    for path in ("model.keras", "checkpoints/best.keras", "logs/train", "logs/validation",
                 "logs/samples"):
        assert os.path.exists(os.path.join(out, path)), path


def test_tensorboard_logs_hold_losses_learning_rate_bpc_and_samples(corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "run")
    assert train.main(["--data", corpus, "--out", out, *TINY_TRAIN, *TINY_MODEL["gru"]]) == 0
    tags = {}
    for part in ("train", "validation", "samples"):
        acc = EventAccumulator(os.path.join(out, "logs", part)).Reload()
        tags[part] = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    assert {"epoch_loss", "epoch_learning_rate", "epoch_bits_per_char"} <= tags["train"]
    assert {"epoch_loss", "epoch_bits_per_char"} <= tags["validation"]
    assert {"sample", "stability/repetition_rate", "stability/distinct_2",
            "stability/self_bleu"} <= tags["samples"]


def test_list_names_every_model(capsys):
    assert train.main(["--list"]) == 0
    out = capsys.readouterr().out
    from kerasgen import registry

    for name in registry.names():
        assert f"\n{name} " in "\n" + out
    assert "units=256" in out and "filters=64" in out


@pytest.mark.parametrize("args, message", [
    (["--model", "lstm"], "unknown model 'lstm'; known models: conv, dense, gru, transformer, vae"),
    (["--nope=1"], "unknown option --nope"),
    (["--batch_size=twelve"], "expected a value of type int"),
    (["--data", "/no/such/file.txt"], "data file not found"),
    (["--data", "EMPTY"], "is empty"),
    (["--data", "SHORT"], "too short for seq_len=64"),
    (["--recipe", "fast"], "unknown recipe 'fast'"),
    (["--resume", "/no/such/run"], "no config.json"),
    (["stray"], "unexpected argument"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("x" * 100)
    args = [str(tmp_path / "empty.txt") if a == "EMPTY" else str(tmp_path / "short.txt")
            if a == "SHORT" else a for a in args]
    out = tmp_path / "run"
    result = run_python(["-m", "kerasgen.train", *args, "--out", str(out)])
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip() and not TF_LOG.match(line)]
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert not out.exists()  # nothing half-written


@pytest.mark.slow
def test_resume_after_sigkill_continues_from_the_last_finished_epoch(corpus, tmp_path):
    out = str(tmp_path / "run")
    args = ["-m", "kerasgen.train", "--data", corpus, "--out", out, *TINY_TRAIN,
            *TINY_MODEL["gru"], "--epochs=400", "--steps_per_epoch=20"]
    proc = subprocess.Popen([sys.executable, *args], cwd=REPO, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, env={**os.environ, "CI": "1"})
    backup = os.path.join(out, "backup")
    deadline = time.time() + 240
    while not os.path.isdir(backup) or not os.listdir(backup):
        assert time.time() < deadline and proc.poll() is None, "no epoch finished in time"
        time.sleep(0.5)
    time.sleep(2)  # let a few more epochs finish
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.load(open(os.path.join(backup, "training_metadata.json")))
    finished = state["epoch"]  # epochs finished before the kill
    result = run_python(["-m", "kerasgen.train", "--resume", out,
                         f"--epochs={finished + 2}"], env={"CI": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    epochs_run = [line for line in result.stdout.splitlines() if line.startswith("Epoch ")]
    assert epochs_run[0] == f"Epoch {finished + 1}/{finished + 2}", result.stdout
    assert len(epochs_run) == 2
    assert os.path.exists(os.path.join(out, "model.keras"))


@pytest.mark.slow
def test_mirrored_over_two_cpus_matches_one_device(corpus, tmp_path):
    code = (
        "import sys, json, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from kerasgen import train\n"
        "import keras\n"
        "losses = {}\n"
        "for strategy in ('default', 'mirrored'):\n"
        f"    out = {str(tmp_path)!r} + '/' + strategy\n"
        f"    args = ['--data', {corpus!r}, '--out', out, '--strategy', strategy, *{TINY_TRAIN!r},"
        f" *{TINY_MODEL['gru']!r}, '--batch_size=4', '--steps_per_epoch=3', '--steps_per_execution=1']\n"
        "    assert train.main(args) == 0\n"
        "    losses[strategy] = json.load(open(out + '/summary.json'))['val_loss']\n"
        "    if strategy == 'mirrored':\n"
        "        assert tf.distribute.MirroredStrategy().num_replicas_in_sync == 2\n"
        "print(json.dumps(losses))\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(losses["mirrored"], losses["default"], rtol=1e-4)
