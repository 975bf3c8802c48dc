"""Checks every registered model at its tiny size: a new model needs no new test code."""
import json

import keras
import numpy as np
import pytest

from conftest import run_python
from kerasgen import recipes, registry

MODELS = registry.names()


def build(name):
    cls = registry.get(name)
    keras.utils.set_random_seed(0)
    model = cls(**cls.tiny)
    inputs = model.sample_inputs(2, 8)
    return model, inputs, model(inputs)


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_finite(name):
    model, inputs, logits = build(name)
    assert logits.shape == (2, 8, model.vocab_size)
    assert np.isfinite(logits).all()


@pytest.mark.parametrize("name", MODELS)
def test_one_fit_step_gives_finite_loss(name):
    model, inputs, _ = build(name)
    recipes.compile_model(model, recipes.get_recipe("default"), total_steps=1, jit_compile=False)
    history = model.fit(inputs, inputs, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("name", MODELS)
def test_get_config_round_trips(name):
    model, inputs, logits = build(name)
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone(inputs)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(inputs), logits, atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_step_by_step_decoding_matches_the_full_pass(name):
    """The cache/state path that generation uses computes the same logits as call()."""
    model, inputs, logits = build(name)
    state, steps = model.initial_state(2), []
    for t in range(inputs.shape[1]):
        step_logits, state = model.step(inputs[:, t], state, t)
        steps.append(step_logits)
    np.testing.assert_allclose(np.stack(steps, axis=1), logits, atol=1e-5)
    state = model.prefill(inputs[:, :5])
    step_logits, _ = model.step(inputs[:, 5], state, 5)
    np.testing.assert_allclose(step_logits, logits[:, 5], atol=1e-5)


@pytest.mark.parametrize("name", MODELS)
def test_keras_file_loads_in_a_fresh_process_with_equal_outputs(name, tmp_path):
    model, inputs, logits = build(name)
    path = tmp_path / "model.keras"
    model.save(path)
    np.save(tmp_path / "inputs.npy", np.asarray(inputs))
    result = run_python(
        "import json, sys, numpy as np, keras, zoo\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"out = m(np.load({str(tmp_path / 'inputs.npy')!r}))\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, np.asarray(out))\n"
        "print(json.dumps(type(m).__name__))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == type(model).__name__
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.asarray(logits))
