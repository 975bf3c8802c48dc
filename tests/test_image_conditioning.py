"""Class-conditional image models (labels from the data, to the model, through the CLI and the served
signature), the image sizes every image model supports, and the diffusion model's DDIM sampler."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from conftest import IMAGE_MODELS, error_lines, export, run_python, tiny_flags, tiny_model
from kerasgen import evaluate, generate, registry, train
from kerasgen.config import model_defaults
from kerasgen.errors import UsageError
from kerasgen.recipes import get_recipe
from kerasgen.rundir import RunDir

CONDITIONAL = [n for n in IMAGE_MODELS if "num_classes" in model_defaults(registry.get(n))]


@pytest.mark.parametrize("name", CONDITIONAL)
def test_labels_reach_the_model(name):
    model = tiny_model(name, num_classes=3)
    zeros, ones = (np.asarray(model.generate(4, 5, labels=[c] * 4)) for c in (0, 1))
    assert not np.allclose(zeros, ones)
    np.testing.assert_array_equal(zeros, model.generate(4, 5, labels=[0] * 4))
    np.testing.assert_array_equal(model.generate(4, 5), model.generate(4, 5, labels=[0, 1, 2, 0]))


@pytest.mark.parametrize("name", CONDITIONAL)
@pytest.mark.parametrize("labels, message", [([0, 1], "expected 3 integer labels"),
                                             ([0, 1, 3], "labels must be classes 0..2"),
                                             ([0, -1, 1], "labels must be classes 0..2")])
def test_wrong_labels_are_a_usage_error(name, labels, message):
    with pytest.raises(UsageError, match=message):
        tiny_model(name, num_classes=3).generate(3, 0, labels=labels)


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_unconditional_models_refuse_labels(name):
    model = tiny_model(name, **({"num_classes": 0} if name in CONDITIONAL else {}))
    assert not model.conditional
    with pytest.raises(UsageError, match="unconditional"):
        model.generate(2, 0, labels=[0, 1])


@pytest.mark.parametrize("name", IMAGE_MODELS)
@pytest.mark.parametrize("size, channels", [(28, 1), (32, 3)])
def test_every_image_model_trains_and_samples_at_mnist_and_cifar_sizes(name, size, channels):
    model = tiny_model(name, image_size=size, channels=channels)
    model.compile_from_recipe(get_recipe(type(model).train_defaults["recipe"]), total_steps=4,
                              jit_compile=False)
    logs = model.fit(*model.sample_fit_data(2), epochs=1, verbose=0).history
    assert all(np.isfinite(v[-1]) for v in logs.values())
    images = np.asarray(model.generate(2, 0))
    assert images.shape == (2, size, size, channels) and 0 <= images.min() <= images.max() <= 1


# -- the diffusion model's sampler ----------------------------------------------------------------

@pytest.fixture(scope="module")
def diffusion():
    return tiny_model("diffusion")


def test_ddim_with_eta_0_is_deterministic_and_eta_adds_seeded_noise(diffusion):
    first = np.asarray(diffusion.generate(3, 4, steps=5))
    np.testing.assert_array_equal(first, diffusion.generate(3, 4, steps=5))
    assert not np.allclose(first, diffusion.generate(3, 5, steps=5))  # the seed draws the start
    noisy = np.asarray(diffusion.generate(3, 4, steps=5, eta=1.0))
    np.testing.assert_array_equal(noisy, diffusion.generate(3, 4, steps=5, eta=1.0))
    assert not np.allclose(noisy, first)


@pytest.mark.parametrize("steps", [1, 2, 50])
def test_any_number_of_steps_samples_images_in_range(diffusion, steps):
    images = np.asarray(diffusion.generate(2, 0, steps=steps, eta=0.5, guidance=3.0))
    assert images.shape == (2, *diffusion.image_shape) and np.isfinite(images).all()
    assert 0 <= images.min() <= images.max() <= 1


@pytest.mark.parametrize("controls, message", [({"steps": 0}, "steps must be in"),
                                               ({"steps": 1001}, "steps must be in"),
                                               ({"eta": 1.5}, "eta must be in"),
                                               ({"temperature": 1.0}, "no sampling control")])
def test_sampling_controls_out_of_bounds_are_a_usage_error(diffusion, controls, message):
    with pytest.raises(UsageError, match=message):
        diffusion.generate(1, 0, **controls)


def test_the_litert_denoiser_looped_in_python_samples_what_the_model_samples(diffusion):
    from kerasgen.export import tflite
    from kerasgen.zoo.diffusion import litert_sample

    runner = tflite.interpreter(tflite.convert(diffusion))
    latent = np.random.default_rng(0).normal(size=diffusion.latent_dim).astype(np.float32)
    ours = litert_sample(runner, diffusion, latent, label=1, steps=4, guidance=2.0)
    theirs = np.asarray(diffusion.decode(latent[None], np.array([1]), steps=4, guidance=2.0))[0]
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


# -- through the CLI: classes from the data --------------------------------------------------------

@pytest.fixture(scope="module")
def conditional_run(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("conditional") / "run")
    assert train.main([*tiny_flags("conv"), "--out", out]) == 0
    return out


def test_a_model_trained_on_labelled_data_is_conditional_on_its_classes(conditional_run):
    run = RunDir(conditional_run)
    assert run.read_config()["model"]["num_classes"] == 10  # the digits' classes
    summary = run.read_summary()
    assert 0.0 <= summary["label_accuracy"] <= 1.0
    assert run.load_model("best").conditional


def test_generate_draws_the_requested_labels(conditional_run, tmp_path, capsys):
    path = tmp_path / "sevens.png"
    assert generate.main(["--run", conditional_run, "--labels", "7,7,3", "--out", str(path)]) == 0
    assert "wrote 3 samples" in capsys.readouterr().out
    assert Image.open(path).size[0] > 0


@pytest.mark.parametrize("flags, message", [
    (["--labels", "7,7,3", "--num_samples", "2"], "--labels gives 3 classes for --num_samples=2"),
    (["--labels", "7,10"], "labels must be classes 0..9"),
    (["--labels", "seven"], "expected class numbers separated by commas"),
    (["--steps", "5"], "no sampling control 'steps'"),
])
def test_generate_bad_labels_are_one_line_and_exit_2(conditional_run, tmp_path, capsys, flags, message):
    assert generate.main(["--run", conditional_run, *flags, "--out", str(tmp_path / "x.png")]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines
    assert not (tmp_path / "x.png").exists()


def test_evaluate_reports_how_often_the_requested_class_is_drawn(conditional_run, capsys):
    assert evaluate.main(["--run", conditional_run, "--num_samples", "20", "--seeds", "1"]) == 0
    assert "label_accuracy" in json.loads(capsys.readouterr().out)["samples"]


def test_num_classes_0_trains_unconditionally_on_labelled_data(tmp_path):
    out = str(tmp_path / "run")
    assert train.main([*tiny_flags("conv"), "--num_classes=0", "--out", out]) == 0
    assert RunDir(out).read_config()["model"]["num_classes"] == 0
    assert "label_accuracy" not in RunDir(out).read_summary()


def _unlabelled_folder(folder):
    folder.mkdir()
    for i in range(40):
        Image.fromarray(np.full((8, 8), 5 * i, np.uint8)).save(folder / f"{i}.png")
    return str(folder)


@pytest.mark.parametrize("flags, message", [
    (["--num_classes=5"], "labels go up to 9, beyond the model's num_classes=5"),
    (["--num_classes=3", "--data", "FOLDER"], "has no labels"),
])
def test_classes_that_do_not_fit_the_data_are_one_line_and_exit_2(tmp_path, capsys, flags, message):
    flags = [_unlabelled_folder(tmp_path / "plain") if f == "FOLDER" else f for f in flags]
    out = tmp_path / "run"
    assert train.main([*tiny_flags("conv"), *flags, "--out", str(out)]) == 2
    lines = error_lines(capsys.readouterr().err)
    assert len(lines) == 1 and message in lines[0], lines
    assert not out.exists()


def test_unlabelled_data_trains_an_unconditional_model(tmp_path):
    out = str(tmp_path / "run")
    assert train.main([*tiny_flags("conv"), "--data", _unlabelled_folder(tmp_path / "plain"),
                       "--out", out]) == 0
    assert RunDir(out).read_config()["model"]["num_classes"] == 0


# -- the served signature ------------------------------------------------------------------------

SERVED_BAD_REQUEST = r"""
import json, sys
sys.modules["keras"] = None
import tensorflow as tf
fn = tf.saved_model.load(sys.argv[1]).signatures["serving_default"]
errors = []
for request in json.loads(sys.argv[2]):
    args = {k: tf.constant(v, fn.structured_input_signature[1][k].dtype) for k, v in request.items()}
    try:
        fn(**args)
        errors.append(None)
    except tf.errors.InvalidArgumentError as e:
        errors.append(e.message)
print(json.dumps(errors))
"""


def test_the_served_signature_rejects_out_of_range_labels_and_controls(tmp_path):
    model = tiny_model("diffusion")  # 2 classes
    path = export(model, tmp_path)
    base = {"seed": [1, 2], "label": [-1], "steps": [2], "eta": [0.0], "guidance": [2.0]}
    requests = [base, {**base, "label": [0, 1]}, {**base, "label": [2]}, {**base, "label": [-2, 0]},
                {**base, "label": [0, 1, 1]}, {**base, "steps": [0]}, {**base, "steps": [1001]},
                {**base, "eta": [2.0]}, {**base, "seed": list(range(65))}]
    result = run_python(["-c", SERVED_BAD_REQUEST, path, json.dumps(requests)])
    assert result.returncode == 0, result.stderr[-2000:]
    errors = json.loads(result.stdout.strip().splitlines()[-1])
    assert errors[:2] == [None, None]
    for error, message in zip(errors[2:], ["label must be < 2", "label must be ≥ -1",
                                           "label must hold one row, or one per row",
                                           "steps must be in [1, 1000]", "steps must be in [1, 1000]",
                                           "eta must be in [0.0, 1.0]", "at most 64 rows"]):
        assert error and message in error, (error, message)


def test_served_labels_draw_the_classes_the_model_draws(tmp_path):
    model = tiny_model("conv")
    loaded = tf.saved_model.load(export(model, tmp_path))
    out = loaded.signatures["decode"](latent=tf.ones((2, model.latent_dim)), label=tf.constant([1, 0]))
    expected = np.asarray(model.decode(np.ones((2, model.latent_dim), np.float32), np.array([1, 0])))
    assert np.max(np.abs(out["images"].numpy() - expected * 255)) <= 1.0
    assert os.path.isdir(os.path.join(str(tmp_path), "conv"))
