"""python -m kerasgen.train as a user meets it: help, listing, bad input, what it prints, TensorBoard,
interruption, strategies."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import IMAGE_MODELS, REPO, TESTS, TINY_TRAIN, error_lines, run_python, tiny_flags
from kerasgen import registry, train
from kerasgen.rundir import RunDir

GRU = tiny_flags("gru")


@pytest.mark.parametrize("command", [["-m", "kerasgen.train", "--help"], ["-m", "kerasgen.train", "--list"],
                                     ["-m", "kerasgen.generate", "--help"],
                                     ["-m", "kerasgen.evaluate", "--help"],
                                     ["-m", "kerasgen.export", "--help"],
                                     ["-m", "kerasgen.client", "--help"],
                                     ["-m", "kerasgen.bench", "--help"],
                                     ["-m", "kerasgen.bench", "race", "--help"]])
def test_help_and_list_answer_without_importing_tensorflow(command):
    """TensorFlow's import alone takes seconds: --help and --list must not pay for it."""
    code = (f"import runpy, sys\nsys.argv = ['x', *{command[2:]!r}]\n"
            f"try:\n    runpy.run_module({command[1]!r}, run_name='__main__')\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'imported TF'\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "usage:" in result.stdout or "model:" in result.stdout


def test_list_names_every_zoo_model_with_its_sizes_and_training_defaults(capsys):
    assert train.main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in registry.names():
        if registry.get(name).__module__.startswith("kerasgen.zoo."):
            assert f"\n{name} " in "\n" + out
    assert "units=256" in out and "filters=64" in out and "epochs=30" in out and "recipe=gan" in out


@pytest.mark.parametrize("args, message", [
    (["--model", "no_such_model"], "unknown model 'no_such_model'; known models: " +
     ", ".join(registry.names())),
    (["--nope=1"], "unknown option --nope"),
    (["--batch_size=twelve"], "expected a value of type int"),
    (["--batch_size=-1"], "batch_size=-1 must be ≥ 1"),
    (["--seed", "99999999999"], "must be < 2^31"),
    (["--epochs", "0"], "epochs=0 must be ≥ 1"),
    (["--data", "/no/such/file.txt"], "data file not found"),
    (["--data", "EMPTY"], "is empty"),
    (["--data", "SHORT", "--seq_len=64"], "too short for seq_len=64"),
    (["--recipe", "fast"], "unknown recipe 'fast'"),
    (["--schedule=linear"], "expected cosine or wsd"),
    (["--decay_fraction=1.5"], "expected a value in [0, 1]"),
    (["--learning_rate=-1"], "--learning_rate=-1.0: expected a value above 0"),
    (["--beta_2=1"], "--beta_2=1.0: expected a value in [0, 1)"),
    (["--warmup_fraction=0.7", "--decay_fraction=0.5"], "do not fit in the run"),
    (["--resume", "/no/such/run"], "does not exist"),
    (["--init_from", "/no/such/run"], "does not exist"),
    (["--resume", "R", "--init_from", "R"], "choose one"),
    (["stray"], "unexpected argument"),
    (["--model=transformer", "--num_heads=3"], "not divisible"),
    (["--precision=half"], "invalid choice: 'half'"),
    (["--strategy=multi_worker"], "--strategy multi_worker needs TF_CONFIG"),
    (["--tokenizer=word"], "invalid choice: 'word'"),
    (["--vocab_size=500"], "--vocab_size=500 needs --tokenizer=bpe"),
    (["--tokenizer=bpe", "--vocab_size=100"], "must be in 257..65536"),
    (["--model=dense", "--tokenizer=bpe"], "--tokenizer and --vocab_size are for text models"),
])
def test_bad_input_is_one_line_and_exit_2_with_nothing_written(args, message, tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "short.txt").write_text("x" * 100)
    args = [{"EMPTY": str(tmp_path / "empty.txt"), "SHORT": str(tmp_path / "short.txt"),
             "R": str(tmp_path)}.get(a, a) for a in args]
    out = tmp_path / "run"
    assert train.main([*TINY_TRAIN, *args, "--out", str(out)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()  # nothing half-written


@pytest.mark.parametrize("args, message", [
    (["--steps=50"], "expected 1 ≤ eval_every ≤ steps"),
    (["--steps=850", "--eval_every=100"], "steps a multiple of eval_every"),  # not 800 silently
    (["--rounds=0"], "--rounds=0: expected ≥ 1"),
    (["--out=/no/such/dir/race.png"], "expected a .png file in a writable folder"),
    (["--out=NANO/race.txt"], "expected a .png file in a writable folder"),
    (["--data=/no/such/file.txt"], "data file not found"),
    (["--nanogpt=/no/such/dir"], "not a checkout of karpathy/nanoGPT (no train.py)"),
    (["--nanogpt=NANO", f"--torch_python={sys.executable}"], "cannot run it and import torch"),
])
def test_bench_race_bad_input_is_one_line_and_exit_2_before_training(args, message, tmp_path, capsys):
    from kerasgen.bench.__main__ import main as bench_main

    for name in ("train.py", "model.py", "configurator.py"):  # a nanoGPT look-alike
        (tmp_path / name).write_text("")
    args = [a.replace("NANO", str(tmp_path)) for a in args]
    assert bench_main(["race", *args]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines


def test_bench_decode_refuses_a_missing_or_image_run_in_one_line(tiny_run, tmp_path, capsys):
    from kerasgen.bench.__main__ import main as bench_main

    image_run = tiny_run(IMAGE_MODELS[0]).path
    for run, message in ((str(tmp_path / "none"), "does not exist"), (image_run, "not a text run")):
        assert bench_main(["decode", "--run", run]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("args, message", [
    (["--epochs=1"], "expected --epochs ≥ 2"), (["--workers=1"], "--workers ≥ 2"),
    (["--model=gru", "--units=0"], "the training command failed"),
])
def test_bench_scale_bad_input_is_one_line_and_exit_2(args, message, capsys):
    from kerasgen.bench.__main__ import main as bench_main

    assert bench_main(["scale", "--steps=1", *args]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines


@pytest.mark.parametrize("args, message", [
    (["--minutes=0"], "expected --minutes > 0"), (["--models", "conv:filters"], "NAME:key=value"),
    (["--models", "gan"], "unknown model 'gan'"), (["--models", "conv:colour=1"], "unknown option --colour"),
])
def test_bench_images_bad_input_is_one_line_and_exit_2_before_training(args, message, tmp_path, capsys):
    from kerasgen.bench.__main__ import main as bench_main

    assert bench_main(["images", "--out", str(tmp_path / "runs"), *args]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (["--minutes=0"], "expected --minutes > 0"), (["--models", "gan"], "unknown model 'gan'"),
    (["--models", "conv"], "not a text model"), (["--vocab_size=100"], "must be in 257..65536"),
])
def test_bench_tokenizers_bad_input_is_one_line_and_exit_2_before_training(args, message, tmp_path,
                                                                           capsys):
    from kerasgen.bench.__main__ import main as bench_main

    assert bench_main(["tokenizers", "--out", str(tmp_path / "runs"), *args]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "runs").exists()


def test_race_reads_the_time_to_a_loss_off_the_curve_and_draws_even_one_point(tmp_path):
    from PIL import Image

    from kerasgen.bench import race

    curve = [(0.0, 0, 3.0), (10.0, 100, 2.0), (20.0, 200, 1.0)]
    assert race.time_to_reach(curve, 1.5) == pytest.approx(15.0)
    assert race.time_to_reach(curve, 0.5) == float("inf")
    race.plot({"one point": [(0.0, 0, 3.0), (8.0, 100, 2.9)], "curve": curve}, tmp_path / "a.png")
    race.plot({"one point": [(0.0, 0, 3.0), (8.0, 100, 2.9)]}, tmp_path / "b.png")
    assert Image.open(tmp_path / "b.png").size == Image.open(tmp_path / "a.png").size == (720, 440)


def test_race_curves_on_a_full_disk_are_one_line_and_leave_no_half_written_png(tmp_path, monkeypatch):
    import errno

    from kerasgen.bench import race
    from kerasgen.errors import KerasgenError

    def full_disk(fd):  # the PNG's bytes are half on disk when the disk fills
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(KerasgenError, match="cannot write .*race.png: No space left on device"):
        race.plot({"curve": [(0.0, 0, 3.0), (8.0, 100, 2.9)]}, str(tmp_path / "race.png"))
    assert list(tmp_path.iterdir()) == []


def test_a_real_process_prints_only_the_one_line_not_tensorflows_start_up(tmp_path):
    result = run_python(["-m", "kerasgen.train", "--data", "/no/such/file.txt",
                         "--out", str(tmp_path / "run")])
    assert result.returncode == 2
    assert error_lines(result.stderr) == ["kerasgen.train: error: data file not found: /no/such/file.txt"]


def test_out_refuses_an_existing_run(tmp_path, corpus, capsys):
    out = str(tmp_path / "run")
    assert train.main([*GRU, "--data", corpus, "--out", out]) == 0
    before = open(os.path.join(out, "config.json")).read()
    capsys.readouterr()
    assert train.main([*GRU, "--data", corpus, "--out", out]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert open(os.path.join(out, "config.json")).read() == before


def test_prints_the_run_directory_first_and_next_commands_last_and_latest_finds_it(
        tmp_path, corpus, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert train.main([*GRU, "--data", corpus]) == 0
    out = capsys.readouterr().out.splitlines()
    run = out[0].removeprefix("run directory: ")
    assert run.startswith(os.path.join("runs", "gru", "")) and os.path.isdir(run)
    commands = out[out.index("next:") + 1:]
    assert any(f"kerasgen.generate --run {run}" in c for c in commands)
    assert any(f"kerasgen.export --run {run}" in c for c in commands)
    assert RunDir.find("latest").path == run


def test_tensorboard_logs_hold_losses_learning_rate_bpc_samples_and_stability(tmp_path, corpus):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "run")
    assert train.main([*GRU, "--data", corpus, "--out", out, "--epochs=2"]) == 0
    tags = {}
    for part in ("train", "validation", "samples"):
        acc = EventAccumulator(os.path.join(out, "logs", part)).Reload()
        tags[part] = set(acc.Tags()["tensors"]) | set(acc.Tags()["scalars"])
    assert {"epoch_loss", "epoch_learning_rate", "epoch_bits_per_char",
            "epoch_bits_per_byte"} <= tags["train"]
    assert {"epoch_loss", "epoch_bits_per_char", "epoch_bits_per_byte"} <= tags["validation"]
    from kerasgen.text.callbacks import PLOTTED

    assert {"sample", *(f"stability/{name}" for name in PLOTTED),
            *(f"stability_real_text/{name}" for name in PLOTTED)} <= tags["samples"]


def test_tensorboard_draws_the_training_loss_and_learning_rate_every_n_steps(tmp_path, corpus):
    """--log_every 2 over 2 epochs of 4 steps (2 a call): a point every 2 global steps, each the
    mean loss of its own 2 steps (their mean is the epoch's loss), and the schedule's rate."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = str(tmp_path / "run")
    assert train.main([*GRU, "--data", corpus, "--out", out, "--epochs=2", "--steps_per_epoch=4",
                       "--steps_per_execution=2", "--log_every=2"]) == 0
    steps = EventAccumulator(os.path.join(out, "logs", "train_steps")).Reload()
    value = lambda event: float(tf.make_ndarray(event.tensor_proto))  # noqa: E731
    losses = steps.Tensors("steps/loss")
    assert [e.step for e in losses] == [2, 4, 6, 8]
    epochs = EventAccumulator(os.path.join(out, "logs", "train")).Reload().Tensors("epoch_loss")
    for epoch, pair in enumerate((losses[:2], losses[2:])):
        assert np.mean([value(e) for e in pair]) == pytest.approx(value(epochs[epoch]), rel=1e-5)
    assert value(losses[0]) != value(losses[1])  # each point its own steps, not a running mean
    rates = [value(e) for e in steps.Tensors("steps/learning_rate")]
    assert len(rates) == 4 and len(set(rates)) > 1  # the warmup and decay, step by step


@pytest.mark.slow
def test_ctrl_c_says_how_to_resume_in_one_line(tmp_path, corpus):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "kerasgen.train", *GRU, "--data", corpus,
                             "--out", str(out), "--epochs=1000", "--steps_per_epoch=20",
                             "--patience=1000"],  # no early stop before the signal
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "CI": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"},
                            # pytest-xdist's workers ignore SIGINT, and children inherit that:
                            # give the child the terminal's default back.
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 120
    while not (out / "backup" / "state.json").exists():
        assert time.time() < deadline and proc.poll() is None, "no epoch finished in time"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert error_lines(stderr)[-1] == (f"kerasgen.train: interrupted; continue from the last "
                                       f"finished epoch with: python -m kerasgen.train --resume {out}")
    assert "Traceback" not in stderr
    # The finished epochs' TensorBoard scalars are on disk, though fit() never ended.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    with open(out / "backup" / "state.json") as f:
        finished = json.load(f)["epoch"]
    events = EventAccumulator(str(out / "logs" / "train")).Reload()
    assert len(events.Tensors("epoch_loss")) >= finished >= 1


@pytest.mark.slow
def test_mirrored_over_two_cpus_matches_one_device(corpus, tmp_path):
    code = (
        "import sys, json, tensorflow as tf\n"
        "cpu = tf.config.list_physical_devices('CPU')[0]\n"
        "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
        "from kerasgen import train\n"
        "losses = {}\n"
        "for strategy in ('default', 'mirrored'):\n"
        f"    out = {str(tmp_path)!r} + '/' + strategy\n"
        f"    args = [*{GRU!r}, '--data', {corpus!r}, '--out', out, '--strategy', strategy,"
        " '--batch_size=4', '--steps_per_epoch=3', '--steps_per_execution=1']\n"
        "    assert train.main(args) == 0\n"
        "    losses[strategy] = json.load(open(out + '/summary.json'))['val_loss']\n"
        "    if strategy == 'mirrored':\n"
        "        assert tf.distribute.MirroredStrategy().num_replicas_in_sync == 2\n"
        "print(json.dumps(losses))\n")
    result = run_python(code)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = json.loads(result.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(losses["mirrored"], losses["default"], rtol=1e-4)
