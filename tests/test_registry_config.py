"""The registry is strict and --key=value overrides fail loudly."""
import keras
import pytest

from kerasgen import registry
from kerasgen.config import ConfigError, TrainConfig, apply_overrides


def test_duplicate_name_is_an_error():
    with pytest.raises(KeyError, match="registered twice"):
        @registry.register("gru", tiny={}, description="again")
        class Again(keras.Model):
            pass


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        registry.get("lstm")
    assert "gru" in err.value.args[0] and "transformer" in err.value.args[0]


def test_registered_class_is_keras_serializable():
    cls = registry.get("gru")
    assert keras.saving.get_registered_object("kerasgen>GRUGenerator") is cls


def test_overrides_route_to_training_or_model_with_types():
    train, model_kwargs = apply_overrides(
        TrainConfig(), registry.get("transformer"),
        {"batch_size": "12", "learning_rate": "3e-4", "num_layers": "4", "dropout": "0.1",
         "tie_weights": "false", "jit_compile": "0"})
    assert (train.batch_size, train.learning_rate, train.jit_compile) == (12, 3e-4, False)
    assert model_kwargs == {"num_layers": 4, "dropout": 0.1, "tie_weights": False}


@pytest.mark.parametrize("overrides, message", [
    ({"nope": "1"}, "unknown option --nope"),
    ({"batch_size": "twelve"}, "expected a value of type int"),
    ({"units": "1.5"}, "expected a value of type int"),
    ({"jit_compile": "maybe"}, "expected a value of type bool"),
])
def test_bad_overrides_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(TrainConfig(), registry.get("gru"), overrides)
