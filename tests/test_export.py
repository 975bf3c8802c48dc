"""Export: TF Serving layout, atomic versions, signatures without kerasgen, LiteRT, the client."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import (IMAGE_MODELS, MODELS, REPO, TEXT_MODELS, export, export_args, run_python,
                      tiny_model)
from kerasgen.export import tflite
from kerasgen.export.__main__ import main as export_main
from kerasgen.export.saved_model import WARMUP_FILE, export_saved_model
from kerasgen.serving_client import signature_defaults
from kerasgen.text.decoding import generate
from kerasgen.text.sampling import SERVED_CONTROLS, Sampling
from kerasgen.text.serving import tflite_generate
from standin_server import StandIn


@pytest.fixture
def text_run(tiny_run):
    return tiny_run("gru").path


def test_cli_writes_versions_models_config_and_warmup_and_never_overwrites(text_run, tmp_path, capsys):
    base = str(tmp_path / "models")
    args = ["--run", text_run, "--base", base, "--formats", "saved_model"]
    assert export_main(args) == 0
    assert export_main(args) == 0
    printed = capsys.readouterr().out
    assert "docker run" in printed and "tensorflow/serving" in printed and "8501" in printed
    assert sorted(os.listdir(os.path.join(base, "gru"))) == ["1", "2"]
    for part in ("saved_model.pb", "variables", "assets", f"assets.extra/{WARMUP_FILE}"):
        assert os.path.exists(os.path.join(base, "gru", "2", part)), part
    config = open(os.path.join(base, "models.config")).read()
    assert "name: 'gru'" in config and "base_path: '/models/gru'" in config
    assert export_main([*args, "--version", "1"]) == 2
    assert "never overwritten" in capsys.readouterr().err


@pytest.mark.parametrize("flags, message", [(["--formats", "onnx"], "--formats"),
                                            (["--quantize", "int4"], "--quantize"),
                                            (["--version", "0"], "--version"),
                                            (["--max_batch", "0"], "--max_batch"),
                                            (["--name", "../escape"], "not usable as a folder name")])
def test_cli_bad_flags_are_one_line_and_exit_2(text_run, tmp_path, capsys, flags, message):
    assert export_main(["--run", text_run, "--base", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert os.listdir(tmp_path) == []


def test_litert_files_are_never_overwritten(text_run, tmp_path, capsys):
    base = str(tmp_path / "models")
    args = ["--run", text_run, "--base", base, "--formats", "tflite"]
    assert export_main(args) == 0
    path = os.path.join(base, "gru", "tflite", "1", "model.tflite")
    before = os.path.getmtime(path)
    assert export_main([*args, "--version", "1"]) == 2
    assert "never overwritten" in capsys.readouterr().err and os.path.getmtime(path) == before


@pytest.mark.slow
def test_killed_export_leaves_no_numeric_version_and_the_next_export_cleans_up(text_run, tmp_path):
    base = tmp_path / "models"
    command = [sys.executable, "-m", "kerasgen.export", "--run", text_run, "--base", str(base),
               "--formats", "saved_model"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    model_dir = base / "gru"
    deadline = time.time() + 240
    while time.time() < deadline and not (model_dir.exists() and any(
            p.name.startswith("tmp-") for p in model_dir.iterdir())):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert model_dir.exists(), "the exporter never started writing"
    assert not [p for p in model_dir.iterdir() if p.name.isdigit()]
    assert export_main(["--run", text_run, "--base", str(base), "--formats", "saved_model"]) == 0
    assert sorted(p.name for p in model_dir.iterdir()) == ["1"]  # the dead export's tmp is gone


def test_warmup_requests_parse_and_replay(tmp_path):
    from tensorflow_serving.apis import prediction_log_pb2

    path = export(tiny_model("gru"), tmp_path)
    loaded = tf.saved_model.load(path)
    seen = set()
    for record in tf.data.TFRecordDataset(os.path.join(path, "assets.extra", WARMUP_FILE)):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        request = log.predict_log.request
        assert request.model_spec.name == "gru"
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
assert not [m for m in sys.modules if m.split(".")[0] == "kerasgen"], "imported model code"
print(json.dumps(out))
"""


def run_fresh(path, requests):
    jsonable = {name: {k: np.asarray(v).tolist() for k, v in inputs.items()}
                for name, inputs in requests.items()}
    result = run_python(["-c", FRESH_PROCESS, path, json.dumps(jsonable)])
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_text(model, served, path):
    expected = generate(model, ["ab", "h"], Sampling(12, temperature=1.0, top_p=0.9, min_p=0.02,
                                                     typical_p=0.95, repetition_penalty=1.2, seed=7,
                                                     stop=("e.", "hh")))
    assert served["generate"]["text"] == expected
    assert np.array(served["generate"]["token_ids"]).shape == (2, 12)
    assert served["serving_default"]["text"] == generate(model, ["abc"], Sampling())
    np.testing.assert_allclose(served["logits"]["logits"],
                               model(np.array([[1, 2, 3], [4, 5, 6]]))[:, -1], atol=1e-5)
    defaults = signature_defaults(path)["generate"]  # what TF Serving fills in: only prompt needed
    assert defaults.pop("stop").shape == (1, 0)  # no stop strings
    assert {k: v.item() for k, v in defaults.items()} == pytest.approx(
        {key: getattr(Sampling(), key) for key in SERVED_CONTROLS if key != "stop"})


def check_image(model, served, path):
    labels = model.default_labels(2) if model.conditional else None
    images = np.asarray(model.sample(np.ones((2, model.latent_dim), np.float32), labels, 0))
    assert np.max(np.abs(np.array(served["decode"]["images"]) - images * 255)) <= 1.0
    assert np.array(served["serving_default"]["images"]).shape == (2, *model.image_shape)
    defaults = signature_defaults(path)["serving_default"]  # TF Serving fills them: only seed needed
    expected = {name: default for name, (_, default, _, _) in model.sampling_controls.items()}
    assert {k: v.item() for k, v in defaults.items()} == pytest.approx(
        {**expected, **({"label": -1} if model.conditional else {})})
    if model.conditional:  # label -1 (the default): any class, drawn as seed mod classes
        assert served["serving_default"]["label"] == [s % model.num_classes for s in (1, 2)]


# Per family: requests beyond the warmup ones, and what their answers must equal in process.
REQUESTS = {
    "text": {"generate": {"prompt": ["ab", "h"], "max_new_tokens": [12], "temperature": [1.0],
                          "top_k": [0], "top_p": [0.9], "min_p": [0.02], "typical_p": [0.95],
                          "repetition_penalty": [1.2], "seed": [7], "stop": [["e.", "hh"]],
                          "penalty_alpha": [0.0], "num_beams": [1], "length_penalty": [1.0]},
             "serving_default": {"prompt": ["abc"]},
             "logits": {"token_ids": [[1, 2, 3], [4, 5, 6]]}},
}
CHECKS = {"text": check_text, "image": check_image}


@pytest.mark.parametrize("name", MODELS)
def test_every_signature_runs_without_kerasgen_or_keras_and_matches_in_process(name, tmp_path):
    model = tiny_model(name)
    serving = model.family.serving(model, export_args())
    path = export(model, tmp_path)
    requests = {**serving.warmup_inputs(), **REQUESTS.get(model.family.name, {})}
    if model.family.name == "image":  # every optional input as the warmup sends it, other rows
        requests["serving_default"] = {**requests["serving_default"], "seed": [1, 2]}
        requests["decode"] = {**requests["decode"], "latent": np.ones((2, model.latent_dim))}
    served = run_fresh(path, requests)
    assert set(served) == set(serving.endpoints())
    for outputs in served.values():
        for value in outputs.values():
            value = np.asarray(value)
            assert value.size and (value.dtype.kind not in "fc" or np.isfinite(value).all())
    CHECKS.get(model.family.name, lambda *args: None)(model, served, path)


def test_saved_model_cli_show_and_run(tmp_path):
    path = export(tiny_model("gru"), tmp_path)
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


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_text_litert_step_decoder_runs_on_stock_litert_and_matches_keras(name):
    model = tiny_model(name)
    data = tflite.convert(model)
    _builtin_only(data)
    runner = tflite.interpreter(data)
    ours = tflite_generate(runner, model, "abc", 4)
    assert ours == generate(model, ["abc"], Sampling(4, temperature=0))[0]
    state = [np.asarray(s) for s in tf.nest.flatten(model.initial_state(1))]
    out = tflite.run_signature(runner, token_id=np.array([2], np.int32), position=np.array(0, np.int32),
                               **{f"state_{i}": s for i, s in enumerate(state)})
    logits, _ = model.step(tf.constant([2]), model.initial_state(1), 0)
    np.testing.assert_allclose(out["logits"], logits, atol=1e-4)


def _litert_and_tf(model, quantize="none"):
    """(the image model's LiteRT outputs, its TensorFlow function's) on its calibration inputs."""
    function = model.family.tflite_function(model)
    inputs = model.family.calibration_inputs(model, None, 4)
    data = tflite.convert(model, quantize, inputs if quantize == "int8" else None)
    _builtin_only(data)
    runner = tflite.interpreter(data)
    lite = [tflite.run_signature(runner, **row) for row in inputs]
    reference = [{k: v.numpy() for k, v in function(**{k: tf.constant(v) for k, v in row.items()}).items()}
                 for row in inputs]
    return lite, reference


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_image_litert_function_runs_on_stock_litert_and_matches_keras(name):
    model = tiny_model(name)
    lite, reference = _litert_and_tf(model)
    for ours, theirs in zip(lite, reference):
        assert ours.keys() == theirs.keys()
        for key in ours:
            np.testing.assert_allclose(ours[key], theirs[key], atol=1e-4)


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("quantize", ["dynamic", "float16"])
def test_quantized_image_litert_stays_close_to_float(name, quantize):
    """Within 5% of the float outputs' range (the tiny models' random weights are no easier)."""
    lite, reference = _litert_and_tf(tiny_model(name), quantize)
    for ours, theirs in zip(lite, reference):
        for key in ours:
            scale = np.ptp(theirs[key]) or 1.0
            assert np.max(np.abs(ours[key] - theirs[key])) <= 0.05 * scale, key


@pytest.mark.parametrize("name", [TEXT_MODELS[0], IMAGE_MODELS[0]])
@pytest.mark.parametrize("quantize", ["dynamic", "float16", "int8"])
def test_quantized_litert_loads_and_runs(name, quantize):
    from kerasgen.text.serving import calibration_inputs as states

    model = tiny_model(name)
    calibration = (states(model, "abc defg habc") if name in TEXT_MODELS
                   else model.family.calibration_inputs(model, None, 16))
    data = tflite.convert(model, quantize,
                          calibration if quantize == "int8" else None)
    _builtin_only(data)
    outputs = tflite.run_signature(tflite.interpreter(data), **calibration[0])
    assert all(np.all(np.isfinite(v)) for v in outputs.values())


def test_xla_export_generates_the_same_text(tmp_path):
    model = tiny_model("transformer")
    loaded = tf.saved_model.load(export(model, tmp_path, xla=True))
    out = loaded.signatures["generate"](
        prompt=tf.constant(["ab"]), max_new_tokens=tf.constant([30]),
        temperature=tf.constant([1.0]), top_k=tf.constant([4]), top_p=tf.constant([1.0]),
        min_p=tf.constant([0.0]), typical_p=tf.constant([1.0]),
        repetition_penalty=tf.constant([1.0]), seed=tf.constant([2]), stop=tf.constant([[]], tf.string),
        penalty_alpha=tf.constant([0.0]), num_beams=tf.constant([1]), length_penalty=tf.constant([1.0]))
    expected = generate(model, ["ab"], Sampling(30, temperature=1.0, top_k=4, seed=2))
    assert [t.decode() for t in out["text"].numpy()] == expected


def served_kernels(path, new_tokens, **controls):
    """The kernel types the served `generate` runs for a request, from a full trace."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as session:
        loaded = tf.compat.v1.saved_model.load(session, ["serve"], path)
        signature = loaded.signature_def["generate"]
        inputs = {**dict(prompt=[b"a"], max_new_tokens=[new_tokens], temperature=[1.0], top_k=[0],
                         top_p=[1.0], min_p=[0.0], typical_p=[1.0], repetition_penalty=[1.0],
                         seed=[0], stop=np.zeros((1, 0), object), penalty_alpha=[0.0],
                         num_beams=[1], length_penalty=[1.0]), **controls}
        trace = tf.compat.v1.RunMetadata()
        session.run(signature.outputs["text"].name,
                    {signature.inputs[k].name: v for k, v in inputs.items()},
                    options=tf.compat.v1.RunOptions(trace_level=3),  # FULL_TRACE
                    run_metadata=trace)
    # Each label reads "node = Type(inputs)".
    return [node.timeline_label.split(" = ")[-1].split("(")[0]
            for device in trace.step_stats.dev_stats for node in device.node_stats]


def kernels_per_token(path, start=8, stop=16, **controls):
    """Kernels the served `generate` runs per new token between two lengths, differenced."""
    return (len(served_kernels(path, stop, **controls)) - len(served_kernels(path, start, **controls))) \
        / (stop - start)


@pytest.fixture(scope="module")
def served_transformer(tmp_path_factory):
    # 25 tokens at most: no window refill.
    return export(tiny_model("transformer", seq_len=32), tmp_path_factory.mktemp("served"))


def test_the_served_loop_costs_the_same_each_token_and_less_with_the_controls_off(served_transformer):
    """TF Serving runs the plain graph kernel by kernel, at ~1.5 µs of overhead each, so the
    count is most of its time per token: it must not grow with the text, and a request that
    switches the controls off takes the loop without them."""
    plain = kernels_per_token(served_transformer)
    assert plain == kernels_per_token(served_transformer, 16, 24)
    assert plain < kernels_per_token(served_transformer, repetition_penalty=[1.2])


def test_served_searches_write_the_text_of_the_searches_in_process(served_transformer):
    from kerasgen.serving_client import signature_defaults

    model = tiny_model("transformer", seq_len=32)  # the served one: the same seed
    generate_signature = tf.saved_model.load(served_transformer).signatures["generate"]
    for fields in (dict(penalty_alpha=0.6, top_k=4, stop=("d",)),
                   dict(num_beams=3, length_penalty=0.5, stop=("dd", "."))):
        request = {**signature_defaults(served_transformer)["generate"], "prompt": ["ab", "h"],
                   "max_new_tokens": [20], **{k: [v] for k, v in fields.items()}}
        out = generate_signature(**{k: tf.constant(v) for k, v in request.items()})
        expected = generate(model, ["ab", "h"], Sampling(20, **fields))
        assert [t.decode() for t in out["text"].numpy()] == expected


def test_the_served_step_runs_plain_matmuls_and_no_batched_one(served_transformer):
    """Grappler fuses a Dense layer's matmul and bias into one oneDNN kernel that takes twice
    as long as a plain matmul at one row (TF Serving: 0.76 against 0.64 ms a token), and
    oneDNN's batched matmul takes three times as long as broadcasts for one query."""
    kinds = {kind for kind in served_kernels(served_transformer, 8) if "MatMul" in kind}
    assert kinds and not [kind for kind in kinds if "Fused" in kind or "Batch" in kind], kinds


@pytest.fixture(scope="module")
def served_text(tmp_path_factory):
    model = tiny_model("gru")
    path = export_saved_model(model, model.family.serving(model, export_args()), "tiny",
                              str(tmp_path_factory.mktemp("served")))
    with StandIn("tiny", path) as server:
        yield server, model


@pytest.mark.parametrize("protocol, columnar", [("rest", False), ("rest", True), ("grpc", False)])
def test_client_generates_through_the_stand_in_like_in_process(served_text, protocol, columnar):
    from kerasgen.serving_client import ServingClient

    server, model = served_text
    client = ServingClient("tiny", "127.0.0.1", server.rest_port, server.grpc_port, protocol)
    texts = client.generate(["the ", "a"], columnar=columnar, max_new_tokens=10, top_p=0.9, seed=3)
    assert texts == generate(model, ["the ", "a"], Sampling(10, top_p=0.9, seed=3))
    cut = client.generate(["the ", "a"], columnar=columnar, max_new_tokens=10, seed=3, stop=["e", "."])
    assert cut == generate(model, ["the ", "a"], Sampling(10, seed=3, stop=("e", ".")))
    beams = client.generate(["the ", "a"], columnar=columnar, max_new_tokens=10, num_beams=2, stop=["e"])
    assert beams == generate(model, ["the ", "a"], Sampling(10, num_beams=2, stop=("e",)))
    assert {"serving_default", "generate", "logits"} <= set(client.metadata())


@pytest.mark.parametrize("body", [{"instances": [{"prompt": "ab"}]}, {"inputs": {"prompt": ["ab"]}}])
def test_a_prompt_only_rest_request_gets_the_defaults(served_text, body):
    from kerasgen.serving_client import ServingClient

    server, model = served_text
    client = ServingClient("tiny", "127.0.0.1", server.rest_port)
    reply = client._rest(":predict", {"signature_name": "generate", **body})
    texts = [p["text"] for p in reply["predictions"]] if "predictions" in reply \
        else reply["outputs"]["text"]
    assert texts == generate(model, ["ab"], Sampling())


@pytest.mark.parametrize("protocol", ["rest", "grpc"])
@pytest.mark.parametrize("inputs, message", [
    ({"token_ids": [[1.5, 2.0]]}, "int32"),        # wrong dtype
    ({}, "missing"),                               # missing input
    ({"token_ids": [1, 2, 3]}, "rank"),            # wrong rank
])
def test_malformed_requests_come_back_as_one_clean_error(served_text, protocol, inputs, message):
    from kerasgen.serving_client import ServingClient, ServingError

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
