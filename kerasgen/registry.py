"""A strict name → model-class registry; registering also makes a class Keras-serializable."""
import keras

_MODELS = {}


def register(name, *, tiny, description):
    """Adds a keras.Model subclass to the zoo; `tiny` = kwargs for fast tests."""

    def decorator(cls):
        if name in _MODELS:
            raise KeyError(f"model {name!r} registered twice")
        keras.saving.register_keras_serializable(package="kerasgen")(cls)
        cls.zoo_name, cls.tiny, cls.description = name, dict(tiny), description
        _MODELS[name] = cls
        return cls

    return decorator


def get(name):
    """The class registered as `name`; an unknown name lists the known ones."""
    if name not in _MODELS:
        known = ", ".join(sorted(_MODELS)) or "none (import zoo to register them)"
        raise KeyError(f"unknown model {name!r}; known models: {known}")
    return _MODELS[name]


def names():
    return sorted(_MODELS)
