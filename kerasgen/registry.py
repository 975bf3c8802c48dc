"""A strict name → model-class registry; registering also makes a class Keras-serializable."""
from kerasgen.errors import ConfigError

_MODELS = {}


def register(name, *, tiny, description, train=None):
    """Adds a model class to the zoo.

    tiny: constructor kwargs of a seconds-fast instance, for tests.
    description: one line for `--list`.
    train: TrainConfig fields this model trains with by default, on top of its
        family's (literal values: `--list` reads them from the source).
    """

    def decorator(cls):
        import keras

        if name in _MODELS:
            raise KeyError(f"model {name!r} registered twice")
        keras.saving.register_keras_serializable(package="kerasgen")(cls)
        cls.zoo_name, cls.tiny, cls.description = name, dict(tiny), description
        cls.train_defaults = {**cls.family.train_defaults, **(train or {})}
        _MODELS[name] = cls
        return cls

    return decorator


def get(name):
    """The class registered as `name`; an unknown name lists the known ones."""
    if name not in _MODELS:
        known = ", ".join(sorted(_MODELS)) or "none (import kerasgen.zoo to register them)"
        raise ConfigError(f"unknown model {name!r}; known models: {known}")
    return _MODELS[name]


def names():
    return sorted(_MODELS)
