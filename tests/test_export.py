"""python -m kerasgen.export: TF Serving layout, atomic versions, signatures without kerasgen, LiteRT."""
import json
import os
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import REPO, TINY_MODEL, TINY_TRAIN, run_python
from export import tflite
from export.saved_model import WARMUP_FILE, call_every_signature, export_saved_model, serving_for
from kerasgen import export as export_cli
from kerasgen import registry, train
from kerasgen.data import CharVocab
from kerasgen.generation import Sampling, generate
from test_zoo import MODELS, TEXT_MODELS

VOCAB = CharVocab("abcdefgh .\n")


def tiny_model(name):
    cls = registry.get(name)
    keras.utils.set_random_seed(0)
    kwargs = dict(cls.tiny)
    if name in TEXT_MODELS:
        kwargs.update(vocab_size=VOCAB.size, vocabulary=VOCAB.chars)
    model = cls(**kwargs)
    model(model.sample_inputs(1))
    return model


@pytest.fixture(scope="module")
def text_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    (root / "corpus.txt").write_text("the quick brown fox jumps over the lazy dog.\n" * 20)
    out = str(root / "run")
    assert train.main(["--model=transformer", "--data", str(root / "corpus.txt"), "--out", out,
                       *TINY_TRAIN, *TINY_MODEL["transformer"]]) == 0
    return out


def test_cli_writes_versions_models_config_and_warmup_and_never_overwrites(text_run, tmp_path, capsys):
    base = str(tmp_path / "models")
    args = ["--run", text_run, "--base", base, "--formats", "saved_model"]
    assert export_cli.main(args) == 0
    assert export_cli.main(args) == 0
    printed = capsys.readouterr().out
    assert "docker run" in printed and "tensorflow/serving" in printed and "8501" in printed
    assert sorted(os.listdir(os.path.join(base, "transformer"))) == ["1", "2"]
    for part in ("saved_model.pb", "variables", "assets", f"assets.extra/{WARMUP_FILE}"):
        assert os.path.exists(os.path.join(base, "transformer", "2", part)), part
    config = open(os.path.join(base, "models.config")).read()
    assert "name: 'transformer'" in config and "base_path: '/models/transformer'" in config
    assert export_cli.main([*args, "--version", "1"]) == 2
    assert "never overwritten" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [(["--formats", "onnx"], "--formats"),
                                            (["--quantize", "int4"], "--quantize"),
                                            (["--version", "0"], "--version")])
def test_cli_bad_flags_are_one_line_and_exit_2(text_run, tmp_path, capsys, flags, message):
    assert export_cli.main(["--run", text_run, "--base", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert os.listdir(tmp_path) == []


def test_killed_export_leaves_no_numeric_version_and_a_retry_works(text_run, tmp_path):
    base = tmp_path / "models"
    command = [sys.executable, "-m", "kerasgen.export", "--run", text_run, "--base", str(base),
               "--formats", "saved_model"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    model_dir = base / "transformer"
    deadline = time.time() + 240
    while time.time() < deadline and not (model_dir.exists() and any(
            p.name.startswith("tmp-") for p in model_dir.iterdir())):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert model_dir.exists(), "the exporter never started writing"
    assert not [p for p in model_dir.iterdir() if p.name.isdigit()]
    assert export_cli.main(["--run", text_run, "--base", str(base), "--formats", "saved_model"]) == 0
    assert [p.name for p in model_dir.iterdir() if p.name.isdigit()] == ["1"]


def test_warmup_requests_parse_and_replay(text_run, tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    path = export_saved_model(keras.saving.load_model(os.path.join(text_run, "model.keras")),
                              "transformer", str(tmp_path))
    loaded = tf.saved_model.load(path)
    seen = set()
    for record in tf.data.TFRecordDataset(os.path.join(path, "assets.extra", WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "transformer"
        inputs = {k: tf.constant(tf.make_ndarray(v)) for k, v in request.inputs.items()}
        outputs = loaded.signatures[request.model_spec.signature_name](**inputs)
        assert all(np.all(np.isfinite(v)) for v in outputs.values() if v.dtype.is_floating)
        seen.add(request.model_spec.signature_name)
    assert seen == set(loaded.signatures) == {"serving_default", "generate", "logits"}


# Keras is made unimportable: the SavedModel must need nothing but TensorFlow's own ops.
FRESH_PROCESS = r"""
import json, sys
sys.modules["keras"] = None
import numpy as np, tensorflow as tf
m = tf.saved_model.load(sys.argv[1])
out = {}
for name, inputs in json.loads(sys.argv[2]).items():
    fn = m.signatures[name]
    args = {k: tf.constant(np.array(v, dtype=fn.structured_input_signature[1][k].dtype.as_numpy_dtype))
            for k, v in inputs.items()}
    out[name] = {k: (v.numpy().astype(str) if v.dtype == tf.string else v.numpy()).tolist()
                 for k, v in fn(**args).items()}
assert not [m for m in sys.modules if m.split(".")[0] in ("kerasgen", "zoo")], "imported model code"
print(json.dumps(out))
"""


@pytest.mark.parametrize("name", MODELS)
def test_every_signature_runs_without_kerasgen_and_matches_in_process(name, tmp_path):
    model = tiny_model(name)
    path = export_saved_model(model, name, str(tmp_path))
    if name in TEXT_MODELS:
        requests = {"generate": {"prompt": ["ab", "h"], "max_new_tokens": [12], "temperature": [1.0],
                                 "top_k": [0], "top_p": [0.9], "repetition_penalty": [1.2],
                                 "seed": [7]},
                    "serving_default": {"prompt": ["abc"]},
                    "logits": {"token_ids": [[1, 2, 3], [4, 5, 6]]}}
    else:
        requests = {"serving_default": {"seed": [1, 2]},
                    "decode": {"latent": np.ones((2, model.latent_dim)).tolist()}}
    result = run_python(["-c", FRESH_PROCESS, path, json.dumps(requests)])
    assert result.returncode == 0, result.stderr[-3000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    if name in TEXT_MODELS:
        expected = generate(model, ["ab", "h"], 12, Sampling(temperature=1.0, top_p=0.9,
                                                               repetition_penalty=1.2, seed=7))
        assert served["generate"]["text"] == expected
        assert np.array(served["generate"]["token_ids"]).shape == (2, 12)
        assert len(served["serving_default"]["text"][0]) == 200
        np.testing.assert_allclose(served["logits"]["logits"],
                                   model(np.array([[1, 2, 3], [4, 5, 6]]))[:, -1], atol=1e-5)
    else:
        images = np.asarray(model.decode(np.ones((2, model.latent_dim), np.float32)))
        assert np.max(np.abs(np.array(served["decode"]["images"]) - images * 255)) <= 1.0
        assert np.array(served["serving_default"]["images"]).shape == (2, *model.image_shape)


def test_saved_model_cli_show_and_run(text_run, tmp_path):
    path = export_saved_model(keras.saving.load_model(os.path.join(text_run, "model.keras")),
                              "transformer", str(tmp_path))
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    shown = subprocess.run([cli, "show", "--dir", path, "--all"], capture_output=True, text=True)
    assert shown.returncode == 0 and "signature_def['generate']" in shown.stdout
    np.save(tmp_path / "ids.npy", np.ones((1, 4), np.int32))
    ran = subprocess.run([cli, "run", "--dir", path, "--tag_set", "serve", "--signature_def",
                          "logits", "--inputs", f"token_ids={tmp_path / 'ids.npy'}"],
                         capture_output=True, text=True)
    assert ran.returncode == 0 and "logits" in ran.stdout, ran.stderr[-2000:]


def _builtin_only(model_bytes):
    ops = {op["op_name"] for op in tflite.interpreter(model_bytes)._get_ops_details()}
    assert not any(op.startswith(("Flex", "VAR_HANDLE", "READ_VARIABLE")) for op in ops), ops
    return ops


@pytest.mark.parametrize("name", MODELS)
def test_tflite_runs_on_stock_litert_with_builtins_and_matches_keras(name):
    model = tiny_model(name)
    data = tflite.convert(model)
    _builtin_only(data)
    runner = tflite.interpreter(data)
    if name in TEXT_MODELS:
        prompt = VOCAB.encode("abc")
        ours = tflite.tflite_generate(runner, model, prompt, 4)
        keras_ids = generate(model, ["abc"], 4, Sampling(temperature=0))[0]
        assert VOCAB.decode(ours) == keras_ids
        state = [np.asarray(s) for s in tf.nest.flatten(model.initial_state(1))]
        out = tflite.run_signature(runner, token_id=np.array([2], np.int32),
                                   position=np.array(0, np.int32),
                                   **{f"state_{i}": s for i, s in enumerate(state)})
        logits, _ = model.step(tf.constant([2]), model.initial_state(1), 0)
        np.testing.assert_allclose(out["logits"], logits, atol=1e-4)
    else:
        latent = np.random.default_rng(0).normal(size=(1, model.latent_dim)).astype(np.float32)
        out = tflite.run_signature(runner, latent=latent)
        np.testing.assert_allclose(out["images"], model.decode(latent), atol=1e-4)


@pytest.mark.parametrize("name", ["gru", "conv"])
@pytest.mark.parametrize("quantize", ["dynamic", "float16", "int8"])
def test_quantized_tflite_loads_and_runs(name, quantize):
    model = tiny_model(name)
    sample = VOCAB.encode("abc defg habc") if name in TEXT_MODELS else \
        np.random.default_rng(0).normal(size=(16, model.latent_dim)).astype(np.float32)
    calibration = tflite.calibration_inputs(model, sample) if quantize == "int8" else None
    data = tflite.convert(model, quantize, calibration)
    _builtin_only(data)
    runner = tflite.interpreter(data)
    inputs = calibration[0] if calibration else tflite.calibration_inputs(model, sample)[0]
    outputs = tflite.run_signature(runner, **inputs)
    assert all(np.all(np.isfinite(v)) for v in outputs.values())


@pytest.fixture(scope="module")
def served_text(text_run, tmp_path_factory):
    from standin_server import StandIn

    model = keras.saving.load_model(os.path.join(text_run, "model.keras"))
    path = export_saved_model(model, "tiny", str(tmp_path_factory.mktemp("served")))
    with StandIn("tiny", path) as server:
        yield server, model


@pytest.mark.parametrize("protocol, columnar", [("rest", False), ("rest", True), ("grpc", False)])
def test_client_generates_through_the_stand_in_like_in_process(served_text, protocol, columnar):
    from kerasgen.serving import ServingClient

    server, model = served_text
    client = ServingClient("tiny", "127.0.0.1", server.rest_port, server.grpc_port, protocol)
    texts = client.generate(["the ", "a"], columnar=columnar, max_new_tokens=10, top_p=0.9, seed=3)
    assert texts == generate(model, ["the ", "a"], 10, Sampling(temperature=0.8, top_p=0.9, seed=3))
    assert {"serving_default", "generate", "logits"} <= set(client.metadata())


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("inputs, message", [
    ({"token_ids": [[1.5, 2.0]]}, "int32"),        # wrong dtype
    ({}, "missing"),                               # missing input
    ({"token_ids": [1, 2, 3]}, "rank"),            # wrong rank
])
def test_malformed_requests_come_back_as_one_clean_error(served_text, protocol, inputs, message):
    from kerasgen.serving import ServingClient, ServingError

    server, _ = served_text
    client = ServingClient("tiny", "127.0.0.1", server.rest_port, server.grpc_port, protocol)
    with pytest.raises(ServingError) as error:
        client.predict({k: np.array(v) for k, v in inputs.items()} or {}, "logits", columnar=True)
    expected = "HTTP 400" if protocol == "rest" else "INVALID_ARGUMENT"
    assert expected in str(error.value) and message in str(error.value)


def test_client_cli_prints_text_and_reports_errors_in_one_line(served_text, capsys):
    from kerasgen import client

    server, _ = served_text
    common = ["--model", "tiny", "--host", "127.0.0.1", "--rest_port", str(server.rest_port)]
    assert client.main([*common, "generate", "--prompt", "the ", "--max_new_tokens", "5"]) == 0
    assert capsys.readouterr().out.startswith("the ")
    assert client.main(["--model", "nope", "--host", "127.0.0.1", "--rest_port",
                        str(server.rest_port), "metadata"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "HTTP 404" in err[0]


def test_xla_export_generates_the_same_text(tmp_path):
    model = tiny_model("transformer")
    loaded = tf.saved_model.load(export_saved_model(model, "t", str(tmp_path), jit_compile=True))
    out = loaded.signatures["generate"](
        prompt=tf.constant(["ab"]), max_new_tokens=tf.constant([30]),
        temperature=tf.constant([1.0]), top_k=tf.constant([4]), top_p=tf.constant([1.0]),
        repetition_penalty=tf.constant([1.0]), seed=tf.constant([2]))
    expected = generate(model, ["ab"], 30, Sampling(temperature=1.0, top_k=4, seed=2))
    assert [t.decode() for t in out["text"].numpy()] == expected
