"""Checks every registered model at its tiny size: a new model needs no new test code."""
import inspect
import json
import os

import numpy as np
import pytest

from conftest import MODELS, TESTS, run_python, tiny_kwargs, tiny_model
from kerasgen import registry
from kerasgen.config import model_defaults
from kerasgen.recipes import get_recipe


@pytest.mark.parametrize("name", MODELS)
def test_outputs_are_finite_with_the_batch_dimension(name):
    model = tiny_model(name)
    outputs = np.asarray(model(model.sample_inputs(2)))
    assert outputs.shape[0] == 2 and np.isfinite(outputs).all()


@pytest.mark.parametrize("name", MODELS)
def test_one_fit_step_changes_every_trainable_weight_and_gives_finite_losses(name):
    model = tiny_model(name)
    model.compile_from_recipe(get_recipe(type(model).train_defaults["recipe"]), total_steps=10,
                              jit_compile=False)
    before = [np.array(v) for v in model.trainable_variables]
    history = model.fit(*model.sample_fit_data(2), epochs=1, verbose=0)
    assert history.history and all(np.isfinite(v[0]) for v in history.history.values())
    unchanged = [v.path for v, old in zip(model.trainable_variables, before)
                 if np.array_equal(np.asarray(v), old)]
    assert not unchanged, f"not trained by one step: {unchanged}"


def _other_value(value):
    """A value of the same type that differs from `value` (None: no candidate)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return round(value + 0.1, 6)
    return None


def _non_default_kwargs(cls):
    """The tiny kwargs with every other hyperparameter moved off its default, where the model
    accepts the new value (some must fit together, e.g. width and heads)."""
    kwargs = tiny_kwargs(cls.zoo_name)
    for key, default in model_defaults(cls).items():
        if kwargs.get(key, default) != default:
            continue
        candidate = _other_value(default)
        if candidate is None:
            continue
        try:
            cls(**{**kwargs, key: candidate})
        except (ValueError, TypeError):
            continue
        kwargs[key] = candidate
    return kwargs


@pytest.mark.parametrize("name", MODELS)
def test_get_config_round_trips_every_init_argument_set_off_its_default(name):
    cls = registry.get(name)
    kwargs = _non_default_kwargs(cls)
    unmoved = [k for k, v in model_defaults(cls).items() if kwargs.get(k, v) == v]
    assert not unmoved, f"no non-default value found for {unmoved}: set them in `tiny`"
    model = tiny_model(name, **kwargs)
    config = model.get_config()
    parameters = set(inspect.signature(cls.__init__).parameters) - {"self", "kwargs"}
    assert parameters <= set(config), f"get_config misses {parameters - set(config)}"
    assert {k: config[k] for k in kwargs} == kwargs
    clone = cls.from_config(config)
    assert clone.get_config() == config
    inputs = model.sample_inputs(2)
    clone(inputs)
    clone.set_weights(model.get_weights())
    np.testing.assert_allclose(clone(inputs), model(inputs), atol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_keras_file_loads_in_a_fresh_process_with_equal_outputs(name, tmp_path):
    model = tiny_model(name)
    inputs = model.sample_inputs(2)
    path = tmp_path / "model.keras"
    model.save(path)
    parts = inputs if isinstance(inputs, tuple) else (inputs,)  # a conditional model's (latent, labels)
    np.savez(tmp_path / "inputs.npz", *[np.asarray(p) for p in parts])
    result = run_python(
        "import json, numpy as np, keras\n"
        f"import kerasgen.zoo, {type(model).__module__}\n"
        f"m = keras.saving.load_model({str(path)!r})\n"
        f"parts = tuple(np.load({str(tmp_path / 'inputs.npz')!r}).values())\n"
        "out = m(parts if len(parts) > 1 else parts[0])\n"
        f"np.save({str(tmp_path / 'out.npy')!r}, np.asarray(out))\n"
        "print(json.dumps(type(m).__name__))")
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == type(model).__name__
    np.testing.assert_array_equal(np.load(tmp_path / "out.npy"), np.asarray(model(inputs)))


def test_a_transformer_saved_by_an_earlier_kerasgen_loads_with_the_same_outputs():
    """tests/saved/transformer-0.2.0.keras was saved by kerasgen 0.2.0 (before its block and
    attention were rewritten as one), with the logits it gave for ids 1..5: users' runs must
    keep loading, and keep meaning what they meant."""
    import keras

    model = keras.saving.load_model(os.path.join(TESTS, "saved", "transformer-0.2.0.keras"),
                                    compile=False)
    expected = np.load(os.path.join(TESTS, "saved", "transformer-0.2.0-logits.npy"))
    np.testing.assert_allclose(model(np.array([[1, 2, 3, 4, 5]])), expected, atol=1e-5)
