"""Checks every registered model at its tiny size: a new model needs no new test code."""
import json

import keras
import numpy as np
import pytest

from conftest import run_python
from kerasgen import recipes, registry
from kerasgen.text import CausalLM

MODELS = registry.names()
TEXT_MODELS = [name for name in MODELS if issubclass(registry.get(name), CausalLM)]
IMAGE_MODELS = [name for name in MODELS if name not in TEXT_MODELS]


def build(name):
    cls = registry.get(name)
    keras.utils.set_random_seed(0)
    model = cls(**cls.tiny)
    inputs = model.sample_inputs(2)
    return model, inputs, model(inputs)


@pytest.mark.parametrize("name", MODELS)
def test_output_shape_and_finite(name):
    model, inputs, outputs = build(name)
    if name in TEXT_MODELS:
        assert outputs.shape == (2, 8, model.vocab_size)
    else:
        assert outputs.shape == (2, *model.image_shape)
        assert np.min(outputs) >= 0.0 and np.max(outputs) <= 1.0
    assert np.isfinite(outputs).all()


@pytest.mark.parametrize("name", MODELS)
def test_one_fit_step_gives_finite_losses(name):
    model, _, _ = build(name)
    recipe = recipes.get_recipe(type(model).default_recipe)
    recipes.compile_model(model, recipe, total_steps=1, jit_compile=False)
    data = model.sample_fit_data(2)
    history = model.fit(*data if isinstance(data, tuple) else (data,), epochs=1, verbose=0)
    assert history.history and all(np.isfinite(v[0]) for v in history.history.values())


@pytest.mark.parametrize("name", IMAGE_MODELS)
def test_sampling_is_deterministic_for_a_seed(name):
    model, _, _ = build(name)
    first, again, other = model.generate(4, 7), model.generate(4, 7), model.generate(4, 8)
    assert first.shape == (4, *model.image_shape)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


@pytest.mark.parametrize("name", MODELS)
def test_get_config_round_trips(name):
    model, inputs, logits = build(name)
    clone = type(model).from_config(model.get_config())
    assert clone.get_config() == model.get_config()
    clone(inputs)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(inputs), logits, atol=1e-6)


@pytest.mark.parametrize("name", TEXT_MODELS)
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
