"""Fault injection: kills at every kind of moment, full disks, corrupted files, concurrent runs,
divergence. Nothing is lost, nothing hangs, every bad input is one line (served requests and
servers: test_serving_faults.py).

Kills are injected by running the command in a subprocess that first patches the function it
would be inside at that moment to SIGKILL its own process (the product code has no test hooks).
"""
import os
import shutil
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from conftest import MODELS, REPO, TESTS, error_lines, run_python, tiny_flags, tiny_model
from kerasgen import evaluate, generate, registry, train
from kerasgen.export.__main__ import main as export_main
from kerasgen.rundir import RunDir
from kerasgen.trainer import BestCheckpoint

pytestmark = pytest.mark.slow

CORPUS = os.path.join(TESTS, "corpus.txt")  # a small text: starting a run costs less than pydoc
GRU = [*tiny_flags("gru"), "--data", CORPUS, "--epochs=3", "--steps_per_epoch=4",
       "--steps_per_execution=1"]
KILL = "os.kill(os.getpid(), signal.SIGKILL)"
# Each patch kills the training process at one kind of moment.
KILL_POINTS = {
    "mid-epoch": (  # inside epoch 3's steps
        "from kerasgen import trainer\n"
        "step = trainer.StopOnNonFinite.on_train_batch_end\n"
        "def on_batch(self, batch, logs=None):\n"
        f"    if self.epoch == 2 and batch == 2: {KILL}\n"
        "    step(self, batch, logs)\n"
        "trainer.StopOnNonFinite.on_train_batch_end = on_batch\n"),
    "checkpoint write": (  # best.keras's new file written, not yet renamed
        "real = os.replace\n"
        "calls = []\n"
        "def replace(src, dst):\n"
        "    calls.append(dst)\n"
        f"    if str(dst).endswith('best.keras') and len(calls) > 3: {KILL}\n"
        "    real(src, dst)\n"
        "os.replace = replace\n"),
    "backup write": (  # epoch 3's weights written, its state.json not
        "from kerasgen import trainer\n"
        "real = trainer.atomic_write\n"
        "def write(path, data):\n"
        f"    if path.endswith('state.json') and '\"epoch\": 3' in data: {KILL}\n"
        "    real(path, data)\n"
        "trainer.atomic_write = write\n"),
    "final save": (  # model.keras's new file written, not yet renamed
        "real = os.replace\n"
        "def replace(src, dst):\n"
        f"    if str(dst).endswith('model.keras'): {KILL}\n"
        "    real(src, dst)\n"
        "os.replace = replace\n"),
    "summary": (  # everything saved but the summary that marks the run finished
        "from kerasgen.rundir import RunDir\n"
        f"RunDir.write_summary = lambda self, summary: {KILL}\n"),
}


def train_process(args, patch="", env=None, timeout=300):
    code = f"import os, signal, sys\n{patch}\nfrom kerasgen import train\nsys.exit(train.main({args!r}))\n"
    return run_python(code, timeout=timeout, env={"CI": "1", **(env or {})})


def weights(run):
    return RunDir(run).load_model("final").get_weights()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("whole") / "run")
    assert train.main([*GRU, "--out", out]) == 0
    return out


@pytest.mark.parametrize("moment", KILL_POINTS)
def test_a_kill_at_any_moment_then_resume_gives_the_uninterrupted_result(moment, uninterrupted,
                                                                        tmp_path):
    out = str(tmp_path / "run")
    killed = train_process([*GRU, "--out", out], KILL_POINTS[moment])
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    run = RunDir(out)
    assert not run.finished
    if os.path.exists(run.checkpoint_path("best")):  # what a kill leaves is always loadable
        run.load_model("best")
    resumed = train_process(["--resume", out])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert run.read_summary()["val_loss"] == RunDir(uninterrupted).read_summary()["val_loss"]
    for ours, theirs in zip(weights(out), weights(uninterrupted)):
        np.testing.assert_array_equal(ours, theirs)  # bit-identical
    assert not [f for f in os.listdir(out) if ".tmp-" in f]  # the dead process's temporaries
    assert not os.path.exists(run.backup_dir)


@pytest.mark.parametrize("name", MODELS)
def test_every_model_killed_after_its_first_backup_resumes_to_the_uninterrupted_weights(name, tmp_path):
    """Each model's own training state (a GAN's second optimizer, the diffusion model's weight
    average and noise) must be in the backup. 6 steps an epoch at up to 4 a call: an epoch of
    whole calls of 4 would train 8, and the resumed data stream would start elsewhere."""
    data = CORPUS
    if registry.get(name).family.name == "image":  # a few images, unlabelled: no judge to train
        data = str(tmp_path / "images.npz")
        np.savez(data, x=np.random.default_rng(0).random((40, 8, 8), np.float32))
    flags = [*tiny_flags(name), "--data", data, "--epochs=2", "--steps_per_epoch=6",
             "--steps_per_execution=4"]
    whole, part = str(tmp_path / "whole"), str(tmp_path / "part")
    # A process of its own, as the user's runs are: in this one, earlier tests' training can
    # change the order of a parallel sum, and a weight's last bit.
    assert train_process([*flags, "--out", whole]).returncode == 0
    patch = KILL_POINTS["mid-epoch"].replace("self.epoch == 2 and batch == 2", "self.epoch == 1")
    killed = train_process([*flags, "--out", part], patch)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert train_process(["--resume", part]).returncode == 0
    for ours, theirs in zip(weights(part), weights(whole)):
        np.testing.assert_array_equal(ours, theirs)


def test_steps_per_call_divide_an_epoch():
    from kerasgen.distribute import steps_per_call

    assert [steps_per_call(20, n) for n in (200, 150, 30, 7, 3)] == [20, 15, 15, 7, 3]
    assert steps_per_call(4, 6) == 3 and steps_per_call(10, 97) == 1


def test_the_seed_drives_every_random_draw_of_a_gan(tmp_path):
    np.savez(tmp_path / "images.npz", x=np.random.default_rng(0).random((40, 8, 8), np.float32))
    runs = {}
    for label, seed in (("a", 1), ("b", 1), ("c", 2)):
        out = str(tmp_path / label)
        assert train.main([*tiny_flags("dense"), "--data", str(tmp_path / "images.npz"),
                           "--seed", str(seed), "--out", out]) == 0
        runs[label] = weights(out)
    assert all(np.array_equal(x, y) for x, y in zip(runs["a"], runs["b"]))
    assert not all(np.array_equal(x, y) for x, y in zip(runs["a"], runs["c"]))


def test_resume_refuses_a_finished_run_and_changed_settings(uninterrupted, capsys):
    assert train.main(["--resume", uninterrupted]) == 2
    assert "finished training" in capsys.readouterr().err
    assert train.main(["--resume", uninterrupted, "--units=99"]) == 2
    assert "finished training" in capsys.readouterr().err


def test_best_checkpoint_only_improves_across_a_resume(tmp_path):
    model = tiny_model("gru")
    checkpoint = BestCheckpoint(str(tmp_path / "best.keras"), "val_loss")
    checkpoint.set_model(model)
    checkpoint.restore_state({"best": 1.0})  # what the backup carried over
    checkpoint.on_epoch_end(0, {"val_loss": 2.0})
    assert not os.path.exists(tmp_path / "best.keras")
    checkpoint.on_epoch_end(1, {"val_loss": 0.5})
    assert os.path.exists(tmp_path / "best.keras") and checkpoint.resumable_state() == {"best": 0.5}


def test_two_runs_into_one_out_directory_never_mix(tmp_path, capsys):
    out = tmp_path / "run"
    first = subprocess.Popen([sys.executable, "-m", "kerasgen.train", *GRU, "--epochs=200",
                              "--out", str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "CI": "1"})
    try:
        deadline = time.time() + 120
        while not (out / "config.json").exists():
            assert time.time() < deadline and first.poll() is None
            time.sleep(0.1)
        before = (out / "config.json").read_text()
        started = time.time()
        assert train.main([*GRU, "--out", str(out)]) == 2
        # Not "continue it with --resume", which the lock would then refuse: who trains it, now.
        assert "is being trained now by process" in capsys.readouterr().err
        assert time.time() - started < 30
        assert train.main(["--resume", str(out)]) == 2  # busy: the first one holds the lock
        assert "is being trained by process" in capsys.readouterr().err
        assert (out / "config.json").read_text() == before
    finally:
        first.kill()
        first.wait()


def test_gan_divergence_stops_with_one_line_and_exit_1_and_nothing_claims_success(tmp_path):
    out = str(tmp_path / "run")
    result = run_python(["-m", "kerasgen.train", *tiny_flags("dense"), "--learning_rate=1e6",
                         "--clipnorm=1e9", "--epochs=2", "--steps_per_epoch=40", "--out", out],
                        env={"CI": "1"})
    assert result.returncode == 1, result.stderr[-2000:]
    last = error_lines(result.stderr)[-1]
    assert "training diverged" in last and "at epoch 1," in last and f"--resume {out}" in last
    # Diverged before any epoch finished: nothing was kept, and the line must not claim it was.
    assert "no epoch had finished" in last and "is kept" not in last, last
    assert not RunDir(out).finished and not os.path.exists(os.path.join(out, RunDir.FINAL))


def test_non_finite_training_data_is_refused_before_training(tmp_path, capsys):
    np.savez(tmp_path / "nan.npz", x=np.full((40, 8, 8), np.nan, np.float32))
    out = tmp_path / "run"
    assert train.main([*tiny_flags("conv"), "--data", str(tmp_path / "nan.npz"), "--out", str(out)]) == 2
    assert "NaN or infinite" in capsys.readouterr().err and not out.exists()


def _in_a_small_tmpfs(folder, script):
    """Runs the shell `script` in a private mount namespace where `folder` is a 2 MB tmpfs with
    150 KB left free; None where this machine cannot make one (no user or mount namespaces)."""
    if not shutil.which("unshare") or subprocess.run(
            ["unshare", "-rm", "sh", "-c", f"mount -t tmpfs -o size=1m tmpfs {folder}"],
            capture_output=True).returncode:
        return None
    fill = 2 * 1024 * 1024 - 150 * 1024
    return subprocess.run(["unshare", "-rm", "sh", "-c",
                           f"mount -t tmpfs -o size=2m tmpfs {folder} && "
                           f"head -c {fill} /dev/zero > {folder}/filler && {script}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CI": "1", "PYTHONPATH": f"{REPO}{os.pathsep}{TESTS}"})


def test_a_full_disk_is_one_line_and_loses_nothing(tmp_path):
    folder, out = tmp_path / "small", tmp_path / "small" / "run"
    folder.mkdir()
    train_cmd = " ".join([sys.executable, "-m", "kerasgen.train", *GRU, "--epochs=8", "--out", str(out)])
    result = _in_a_small_tmpfs(folder, f"{train_cmd} > /dev/null 2> {tmp_path}/full.err; "
                                       f"echo $? > {tmp_path}/full.rc; rm {folder}/filler; "
                                       f"{sys.executable} -m kerasgen.train --resume {out}")
    if result is None:
        pytest.skip("this machine cannot mount a size-limited tmpfs (no user or mount namespaces)")
    full = (tmp_path / "full.err").read_text()
    assert (tmp_path / "full.rc").read_text().strip() == "2", full[-2000:]
    lines = error_lines(full)
    assert len(lines) == 1 and lines[0].startswith(f"kerasgen.train: error: cannot write {out}") \
        and "No space left on device" in lines[0], lines
    assert result.returncode == 0 and "validation loss" in result.stdout, result.stderr[-2000:]


@pytest.fixture(scope="module")
def finished(uninterrupted, tmp_path_factory):
    """A copy of a finished run, to corrupt."""
    def copy(name):
        path = str(tmp_path_factory.mktemp("corrupt") / name)
        shutil.copytree(uninterrupted, path)
        return path
    return copy


def _lambda_model_file(path):
    inputs = keras.Input((2,))
    model = keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs))
    model.save(path)


@pytest.mark.parametrize("damage, file, message", [
    (lambda r: open(r.checkpoint_path("best"), "wb").write(b"garbage"), RunDir.BEST, "cannot be loaded"),
    (lambda r: open(r.checkpoint_path("best"), "r+b").truncate(1878), RunDir.BEST, "cannot be loaded"),
    (lambda r: open(r.checkpoint_path("best"), "wb").close(), RunDir.BEST, "cannot be loaded"),
    (lambda r: _lambda_model_file(r.checkpoint_path("best")), RunDir.BEST, "cannot be loaded"),
    (lambda r: os.remove(r.checkpoint_path("best")), RunDir.BEST, "does not exist"),
    (lambda r: open(r.config_path, "w").write("{garbage"), RunDir.CONFIG, "not JSON"),
    (lambda r: open(r.config_path, "w").write("[1, 2]"), RunDir.CONFIG, "not a JSON object"),
    (lambda r: r.write_config({k: v for k, v in r.read_config().items() if k != "train"}),
     RunDir.CONFIG, "missing train"),
])
@pytest.mark.parametrize("command", ["generate", "evaluate", "export"])
def test_a_corrupted_run_file_is_one_line_naming_it(finished, damage, file, message, command, tmp_path,
                                                    capsys):
    run = RunDir(finished(f"{command}-{file.replace('/', '-')}-{message[:8]}"))
    damage(run)
    main = {"generate": generate.main, "evaluate": evaluate.main, "export": export_main}[command]
    assert main(["--run", run.path, "--base", str(tmp_path / "m")][:4 if command == "export" else 2]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and run.join(file) in lines[0] and message in lines[0], lines


@pytest.mark.parametrize("flag, damage, message", [
    ("--init_from", lambda c: c["model"].pop("vocabulary"), "no vocabulary"),
    ("--init_from", lambda c: c["model"].update(tokenizer='{"model": 1}'), "its tokenizer"),
    ("--init_from", lambda c: c["train"].update(seq_len="long"), "seq_len='long'"),
    ("--resume", lambda c: c["train"].update(wings=2), "unknown settings: wings"),
    ("--resume", lambda c: c["recipe"].update(learning_rate="fast"), "learning_rate='fast'"),
])
def test_a_corrupted_config_is_one_line_for_init_from_and_resume(finished, flag, damage, message,
                                                                 capsys):
    run = RunDir(finished(f"config-{message[:6]}"))
    config = run.read_config()
    damage(config)
    run.write_config(config)
    os.remove(run.summary_path)  # so --resume would continue it
    new = ["--out", run.path + "-new"] if flag == "--init_from" else []
    assert train.main([flag, run.path, *new]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and run.config_path in lines[0] and message in lines[0], lines


def test_a_corrupted_backup_is_one_line_with_what_to_do(finished, capsys):
    run = RunDir(finished("backup"))
    os.remove(run.summary_path)
    os.makedirs(run.backup_dir)
    open(os.path.join(run.backup_dir, "state.json"), "w").write("{nope")
    assert train.main(["--resume", run.path]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and "state.json is corrupted" in lines[0] and "delete" in lines[0]


def test_an_export_model_name_from_a_run_cannot_escape_the_base(finished, tmp_path, capsys):
    run = RunDir(finished("escape"))
    config = run.read_config()
    config["model_name"] = "../outside"
    run.write_config(config)
    assert export_main(["--run", run.path, "--base", str(tmp_path / "base")]) == 2
    assert "not usable as a folder name" in capsys.readouterr().err
    assert not (tmp_path / "outside").exists()


def test_a_failed_export_removes_its_temporary_directory(uninterrupted, tmp_path, monkeypatch):
    from kerasgen.export import saved_model

    def fail(path, requests):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(saved_model, "call_every_signature", fail)
    assert export_main(["--run", uninterrupted, "--base", str(tmp_path), "--formats", "saved_model"]) == 2
    assert os.listdir(tmp_path / "gru") == []
