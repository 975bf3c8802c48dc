"""Training across workers (MultiWorkerMirroredStrategy, two processes on localhost on ports free
at run time) and in mixed precision."""
import json
import os
import subprocess
import sys
import time

import keras
import numpy as np
import pytest

from conftest import MODELS, REPO, TESTS, error_lines, export, tiny_flags, tiny_model
from kerasgen import distribute, registry, train
from kerasgen.errors import ConfigError
from kerasgen.recipes import get_recipe
from kerasgen.rundir import RunDir

PEER_LOSS_BOUND_S = 60  # a worker whose peer died exits within this (it takes ~2 s here)
RUN_TIMEOUT_S = 240
# Global batch 4: two examples on each of two workers.
MULTI = ["--epochs=2", "--steps_per_epoch=3", "--batch_size=4", "--steps_per_execution=1"]


def no_dropout(name):
    """Flags that switch off every dropout of a model: each replica draws its own masks, so a
    dropout run on two workers is not the one-worker run."""
    from kerasgen.config import hyperparameters

    return ["--dropout=0", *(f"--{key}=0" for key in hyperparameters(registry.get(name))
                             if key.endswith("dropout"))]


def _env(tmp_path, **extra):
    os.makedirs(tmp_path / "tmp", exist_ok=True)
    path = os.pathsep.join(p for p in (REPO, TESTS, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "TMPDIR": str(tmp_path / "tmp"), "CI": "1", **extra}


def _start(tmp_path, args, tag, workers=2):
    """`workers` processes of `python -m kerasgen.train ARGS` (each dumping its final weights to
    tmp_path/<tag><index>.npz), with TF_CONFIG for a cluster of them; one is a plain process."""
    configs = distribute.local_cluster(workers) if workers > 1 else [None]
    script = os.path.join(TESTS, "train_and_dump_weights.py")
    processes = []
    for i, tf_config in enumerate(configs):
        env = _env(tmp_path, KERASGEN_WEIGHTS=str(tmp_path / f"{tag}{i}.npz"))
        env.pop("TF_CONFIG", None)
        if tf_config:
            env["TF_CONFIG"] = tf_config
        processes.append(subprocess.Popen([sys.executable, script, *args], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return processes


def _finish(processes, timeout=RUN_TIMEOUT_S):
    """[(returncode, stdout, stderr)] of each process, all killed if one overruns."""
    results = []
    try:
        for p in processes:
            out, err = p.communicate(timeout=timeout)
            results.append((p.returncode, out, err))
    finally:
        for p in processes:
            p.kill()
    return results


def train_one_and_two_workers_alike(tmp_path, args):
    """Trains `args` on one worker (into tmp_path/one) and on two (tmp_path/multi): both workers
    end with the same weights, and those equal one worker's up to float order."""
    single = _start(tmp_path, [*args, "--out", str(tmp_path / "one")], "one", workers=1)
    multi = _start(tmp_path, [*args, "--out", str(tmp_path / "multi"), "--strategy=multi_worker"],
                   "worker")
    for code, out, err in _finish(single + multi):
        assert code == 0, err[-3000:]
    one, first, second = (np.load(tmp_path / f"{tag}.npz") for tag in ("one0", "worker0", "worker1"))
    assert len(one.files) == len(first.files) > 0
    for key in one.files:
        np.testing.assert_array_equal(first[key], second[key])
        np.testing.assert_allclose(first[key], one[key], rtol=1e-4, atol=1e-4)


def _layout(run):
    """Each folder of a run directory with its number of files: a second writer would double
    the TensorBoard event files, or add files of its own."""
    return sorted((os.path.relpath(folder, run), len(files)) for folder, _, files in os.walk(run))


def test_the_patched_keras_internals_are_the_ones_checked():
    """Fails when an upgraded Keras changed what kerasgen.distribute patches: re-check the
    patch against the new sources (and the upstream issues), then update PATCHED_SOURCES."""
    assert distribute.unpatchable_reason() is None


def test_a_changed_or_unknown_keras_is_refused_not_patched(monkeypatch):
    def changed(*args):
        return args

    internals = {**distribute.keras_internals(), "_maybe_symbolic_build": changed,
                 "reduce_per_replica": changed}
    monkeypatch.setattr(distribute, "keras_internals", lambda: internals)
    assert "changed _maybe_symbolic_build, reduce_per_replica, which" in distribute.unpatchable_reason()
    with pytest.raises(ConfigError, match="keras-team/keras#20585"):
        distribute.patch_keras()
    monkeypatch.setattr(keras, "__version__", "3.99.0")
    assert "tested on Keras 3.15 only (this is 3.99.0)" in distribute.unpatchable_reason()


@pytest.mark.parametrize("tf_config, message", [
    (None, "--strategy multi_worker needs TF_CONFIG"),
    ("{not json", "TF_CONFIG is not a valid cluster spec"),
    ('{"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 3}}', "not in the cluster"),
])
def test_multi_worker_without_a_valid_tf_config_is_one_line_and_exit_2(tf_config, message,
                                                                       monkeypatch, tmp_path, capsys):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    if tf_config:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    out = tmp_path / "run"
    assert train.main([*tiny_flags("gru"), "--strategy=multi_worker", "--out", str(out)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_the_chief_is_the_chief_task_else_worker_0(monkeypatch):
    two = {"worker": ["a:1", "b:2"]}
    for cluster, task, chief in [(two, {"type": "worker", "index": 0}, True),
                                 (two, {"type": "worker", "index": 1}, False),
                                 ({**two, "chief": ["c:3"]}, {"type": "worker", "index": 0}, False),
                                 ({**two, "chief": ["c:3"]}, {"type": "chief", "index": 0}, True)]:
        monkeypatch.setenv("TF_CONFIG", json.dumps({"cluster": cluster, "task": task}))
        assert distribute.task("multi_worker").chief is chief
        assert distribute.task("default") == distribute.Task()  # TF_CONFIG only counts for it


@pytest.mark.slow
@pytest.mark.parametrize("name", MODELS)
def test_two_workers_train_what_one_worker_trains_and_only_the_chief_writes(name, tmp_path):
    """Same seed, same global batch: both workers end with the same weights, equal to one
    worker's up to float order (the batch's gradients and the GAN's synchronized batch-norm
    statistics are summed in another order; Adam's normalized step can turn that into half a
    step, 1e-4 at the GAN's learning rate, on a near-zero gradient); the run directory
    has what a one-worker run has, and the other worker leaves nothing in its TMPDIR."""
    train_one_and_two_workers_alike(tmp_path, [*tiny_flags(name), *MULTI, *no_dropout(name)])
    assert _layout(tmp_path / "multi") == _layout(tmp_path / "one")
    config = RunDir(str(tmp_path / "multi")).train_config()
    assert (config.strategy, config.batch_size) == ("multi_worker", 4)
    assert not [p for p in os.listdir(tmp_path / "tmp") if p.startswith("kerasgen-")]


@pytest.mark.slow
def test_workers_started_with_different_settings_refuse_in_one_line_and_write_nothing(tmp_path):
    """Their gradients would sum without complaint: a silent mix of two runs."""
    out = tmp_path / "run"
    processes = []
    for batch_size, tf_config in zip((4, 8), distribute.local_cluster(2)):
        env = {**_env(tmp_path), "TF_CONFIG": tf_config}
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "kerasgen.train", *tiny_flags("gru"), f"--batch_size={batch_size}",
             "--strategy=multi_worker", "--out", str(out)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    for code, _, err in _finish(processes):
        assert code == 2, err[-3000:]
        lines = error_lines(err)
        assert len(lines) == 1 and "the workers were started with different settings" in lines[0], lines
    assert not out.exists()


@pytest.mark.slow
def test_a_dead_worker_stops_the_other_and_resume_loses_no_finished_epoch(tmp_path):
    run = tmp_path / "run"
    args = [*tiny_flags("gru"), "--epochs=3", "--steps_per_epoch=150", "--batch_size=4",
            "--out", str(run), "--strategy=multi_worker"]
    chief, other = _start(tmp_path, args, "first")
    state = run / "backup" / "state.json"
    deadline = time.time() + RUN_TIMEOUT_S
    while not state.exists():  # epoch 1 finished and backed up: kill in epoch 2
        assert time.time() < deadline and chief.poll() is None, chief.communicate()[1][-3000:]
        time.sleep(0.1)
    other.kill()
    killed = time.time()
    [(code, _, err)] = _finish([chief], timeout=PEER_LOSS_BOUND_S)
    assert time.time() - killed < PEER_LOSS_BOUND_S
    assert code == 1
    last = error_lines(err)[-1]
    assert last.startswith("kerasgen.train: error: worker 0 of 2 lost contact with another worker"), \
        err[-3000:]
    assert f"--resume {run}" in last and "Traceback" not in err

    results = _finish(_start(tmp_path, ["--resume", str(run)], "resumed"))
    for code, out, err in results:
        assert code == 0, err[-3000:]
        epochs = [line.split()[1] for line in out.splitlines() if line.startswith("Epoch ")]
        assert epochs[0] != "1/3" and epochs[-1] == "3/3", epochs
    assert RunDir(str(run)).finished
    assert not [p for p in os.listdir(tmp_path / "tmp") if p.startswith("kerasgen-")]  # cleaned


@pytest.fixture
def mixed_float16():
    with distribute.dtype_policy("mixed_float16"):
        yield


@pytest.mark.parametrize("name", MODELS)
def test_every_model_trains_in_mixed_float16_with_float32_weights_and_outputs(name, mixed_float16):
    model = tiny_model(name)
    model.compile_from_recipe(get_recipe("default"), total_steps=4, jit_compile=False)
    logs = model.fit(*model.sample_fit_data(4), epochs=1, verbose=0).history
    assert logs and all(np.isfinite(v[-1]) for v in logs.values()), logs
    assert {w.dtype for w in model.weights if "seed_generator" not in w.path} <= {"float32", "int64"}
    assert keras.backend.standardize_dtype(model(model.sample_inputs(2)).dtype) == "float32"
    assert model.compute_dtype == "float16"


def test_precision_is_recorded_reused_on_resume_and_the_export_is_float32(tmp_path, capsys):
    import tensorflow as tf

    out = tmp_path / "run"
    assert train.main([*tiny_flags("gru"), "--precision=mixed_float16", "--out", str(out)]) == 0
    run = RunDir(str(out))
    assert run.train_config().precision == "mixed_float16"
    assert keras.config.dtype_policy().name == "float32"  # the CLI put the policy back
    model = run.load_model("best")
    assert model.compute_dtype == "float32"
    signatures = tf.saved_model.load(export(model, tmp_path / "models")).signatures
    assert signatures["serving_default"](prompt=tf.constant(["ab"]))
    logits = signatures["logits"](token_ids=tf.constant([[1, 2]]))
    assert {v.dtype for v in logits.values()} == {tf.float32}
    interrupted = tmp_path / "interrupted"  # the same settings, not finished
    interrupted.mkdir()
    (interrupted / "config.json").write_text((out / "config.json").read_text())
    assert train._resume_plan(*train.parse_args(["--resume", str(interrupted)])).train.precision == \
        "mixed_float16"
    assert train.main(["--resume", str(interrupted), "--precision=float32"]) == 2
    assert "a resumed run keeps its settings" in capsys.readouterr().err
