"""The registry is strict, --key=value overrides fail loudly, and the source catalogue agrees with it."""
import dataclasses
import re

import keras
import pytest

from conftest import MODELS
from kerasgen import registry
from kerasgen.catalogue import zoo_models
from kerasgen.config import TrainConfig, apply_overrides, from_dict, hyperparameters
from kerasgen.errors import ConfigError
from kerasgen.family import families
from kerasgen.recipes import Recipe, get_recipe


def test_duplicate_name_is_an_error():
    with pytest.raises(KeyError, match="registered twice"):
        @registry.register("gru", tiny={}, description="again")
        class Again(keras.Model):
            family = families()[0]


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ConfigError) as err:
        registry.get("no such model")
    assert all(name in str(err.value) for name in registry.names())


def test_registered_class_is_keras_serializable():
    cls = registry.get("gru")
    assert keras.saving.get_registered_object("kerasgen>GRUGenerator") is cls


@pytest.mark.parametrize("name", [m["name"] for m in zoo_models()])
def test_a_new_run_trains_with_the_defaults_its_source_declares(name):
    """The family's training defaults and the model's own (`register(train=…)`), as the sources
    say them (read without importing), are what a run of the model gets."""
    from kerasgen.train import _fresh_plan, parse_args

    listed = {m["name"]: m for m in zoo_models()}[name]
    plan = _fresh_plan(parse_args(["--model", name])[0], {})
    assert registry.get(name).family in families()
    assert {key: getattr(plan.train, key) for key in listed["train"]} == listed["train"]


def test_the_source_catalogue_lists_exactly_what_the_zoo_registers():
    """`--list` reads the sources without TensorFlow; it must say what importing the zoo does."""
    listed = {m["name"]: m for m in zoo_models()}
    zoo = [n for n in MODELS if registry.get(n).__module__.startswith("kerasgen.zoo.")]
    assert sorted(listed) == sorted(zoo)
    for name in zoo:
        cls = registry.get(name)
        assert listed[name]["description"] == cls.description
        assert listed[name]["family"] == cls.family.name
        assert listed[name]["hyperparameters"] == hyperparameters(cls)
        assert listed[name]["train"] == cls.train_defaults


def test_overrides_route_to_training_model_and_recipe_with_types():
    train, recipe, model_kwargs = apply_overrides(
        TrainConfig(), registry.get("transformer"),
        {"batch_size": "12", "learning_rate": "3e-4", "num_layers": "4", "dropout": "0.1",
         "tie_weights": "false", "jit_compile": "0", "weight_decay": "0.05", "validation_steps": "none",
         "seq_len": "32"})
    assert (train.batch_size, train.jit_compile, train.validation_steps, train.seq_len) == (
        12, False, None, 32)
    assert recipe == {"learning_rate": 3e-4, "weight_decay": 0.05, "dropout": 0.1}
    assert model_kwargs == {"num_layers": 4, "tie_weights": False}


@pytest.mark.parametrize("name", MODELS)
def test_every_setting_has_one_home_and_reaches_the_model_from_it(name):
    """A flag names a training field, a recipe field or a model's own hyperparameter, never two;
    the model arguments the run owns come from the run, the data's from the data, the rest from
    the flags over the pretrained run's."""
    from kerasgen.config import RUN_SETTINGS, model_arguments, model_defaults

    cls = registry.get(name)
    homes = [{f.name for f in dataclasses.fields(TrainConfig)},
             {f.name for f in dataclasses.fields(Recipe)}, set(hyperparameters(cls))]
    assert all(not (a & b) for i, a in enumerate(homes) for b in homes[i + 1:])
    for key in set(cls.family.data_arguments) - homes[0]:
        with pytest.raises(ConfigError, match=f"unknown option --{key}"):
            apply_overrides(TrainConfig(), cls, {key: "x"})
    train, recipe = TrainConfig(seq_len=24), dataclasses.replace(get_recipe("default"), dropout=0.2)
    data = {key: f"data: {key}" for key in cls.family.data_arguments}
    pretrained = {key: f"pretrained: {key}" for key in model_defaults(cls)}
    flagged = next(iter(hyperparameters(cls)))
    kwargs = model_arguments(cls, train, recipe, {flagged: "flag"}, pretrained, data)
    run_values = {"seq_len": 24, "dropout": 0.2}
    assert kwargs == {key: run_values[key] if key in RUN_SETTINGS else data.get(
        key, "flag" if key == flagged else f"pretrained: {key}") for key in {*model_defaults(cls), *data}}


def test_every_recipe_field_is_settable_and_gans_take_their_own_discriminator_rate():
    _, recipe, _ = apply_overrides(TrainConfig(), registry.get("conv"),
                                   {f.name: "0.5" for f in dataclasses.fields(Recipe)
                                    if f.name != "patience"})
    assert set(recipe) == {f.name for f in dataclasses.fields(Recipe)} - {"patience"}
    model = registry.get("conv")(**registry.get("conv").tiny)
    model(model.sample_inputs(1))
    model.compile_from_recipe(dataclasses.replace(get_recipe("gan"), d_learning_rate=1e-2), 10)
    peak = lambda o: o.get_config()["learning_rate"]["config"]["warmup_target"]  # noqa: E731
    assert (peak(model.optimizer), peak(model.d_optimizer)) == (2e-4, 1e-2)


@pytest.mark.parametrize("overrides, message", [
    ({"nope": "1"}, "unknown option --nope"),
    ({"batch_size": "twelve"}, "expected a value of type int"),
    ({"units": "1.5"}, "expected a value of type int"),
    ({"jit_compile": "maybe"}, "expected a value of type bool"),
    ({"learning_rate": "nan"}, "finite number"),
    ({"clipnorm": "fast"}, "expected a value of type float"),
])
def test_bad_overrides_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(TrainConfig(), registry.get("gru"), overrides)


@pytest.mark.parametrize("changes, message", [
    (dict(batch_size=-1), "batch_size=-1 must be ≥ 1"), (dict(epochs=0), "epochs=0 must be ≥ 1"),
    (dict(seed=99999999999), "seed=99999999999 must be < 2^31"),
    (dict(validation_steps=0), "validation_steps=0"), (dict(strategy="tpu"), "strategy"),
])
def test_unusable_training_values_are_config_errors(changes, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        dataclasses.replace(TrainConfig(), **changes).check()


def test_settings_read_back_from_a_file_are_checked():
    assert from_dict(TrainConfig, {"epochs": 3}, "x").epochs == 3
    with pytest.raises(ConfigError, match="unknown settings: wings"):
        from_dict(TrainConfig, {"wings": 2}, "x")
    with pytest.raises(ConfigError, match="seq_len='long' is not of type int"):
        from_dict(TrainConfig, {"seq_len": "long"}, "x")


def test_wsd_warms_up_holds_the_peak_decays_linearly_and_round_trips():
    from kerasgen.schedules import WarmupStableDecay

    schedule = WarmupStableDecay(peak=1.0, warmup_steps=10, decay_steps=30, total_steps=100,
                                 min_ratio=0.1)
    rates = [float(schedule(step)) for step in range(101)]
    assert rates[0] < rates[5] < rates[9] < rates[10] == 1.0  # warmup, never 0
    assert set(rates[10:70]) == {1.0}  # stable
    assert rates[85] == pytest.approx(0.1 + 0.9 * 15 / 30)  # linear decay
    assert rates[100] == pytest.approx(0.1)
    again = keras.optimizers.schedules.deserialize(keras.optimizers.schedules.serialize(schedule))
    assert [float(again(step)) for step in range(101)] == rates
