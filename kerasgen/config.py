"""Training settings in one dataclass, and `--key=value` overrides that fail loudly."""
import dataclasses
import inspect
import typing
from typing import Optional


@dataclasses.dataclass
class TrainConfig:
    """Everything about a run that is not a model hyperparameter."""

    model: str = "gru"
    data: Optional[str] = None  # None: the model's embedded default dataset
    recipe: Optional[str] = None  # None: the model's default recipe
    epochs: int = 8
    batch_size: int = 32
    steps_per_epoch: int = 150
    validation_steps: int = 20
    learning_rate: Optional[float] = None  # None: the recipe's peak rate
    seq_len: int = 64  # training window; the Transformer's context length
    seed: int = 1337
    out: Optional[str] = None  # None: runs/<model>/<timestamp>
    strategy: str = "default"  # default | mirrored
    jit_compile: bool = True  # XLA: ~2x faster steps on this CPU
    steps_per_execution: int = 10  # fewer Python round trips per step
    sample_chars: int = 200  # length of the per-epoch text sample
    init_from: Optional[str] = None  # a run directory to fine-tune from (its model and vocabulary)
    freeze_layers: int = 0  # fine-tuning: keep the embedding and this many lower layers fixed


class ConfigError(ValueError):
    """A bad flag or value: reported as one line, exit code 2."""


def _field_types():
    """TrainConfig's field types with Optional[...] unwrapped."""
    hints = typing.get_type_hints(TrainConfig)
    return {name: next((a for a in typing.get_args(t) if a is not type(None)), t)
            for name, t in hints.items()}


def _coerce(key, raw, kind, nullable):
    """Parses the string `raw` as `kind` (int, float, bool or str)."""
    if nullable and raw.lower() in ("none", "null"):
        return None
    try:
        if kind is bool:
            return {"1": True, "true": True, "yes": True, "on": True,
                    "0": False, "false": False, "no": False, "off": False}[raw.lower()]
        return kind(raw)
    except (KeyError, ValueError):
        raise ConfigError(f"--{key}={raw}: expected a value of type {kind.__name__}") from None


def model_defaults(model_cls):
    """A model's hyperparameters: its __init__ keyword arguments and their defaults."""
    params = inspect.signature(model_cls.__init__).parameters
    return {k: p.default for k, p in params.items()
            if k != "self" and p.default is not inspect.Parameter.empty}


def apply_overrides(train, model_cls, overrides):
    """Splits `{key: raw string}` into the TrainConfig and the model's kwargs.

    Returns (new TrainConfig, model kwargs). An unknown key or a wrong type
    raises ConfigError.
    """
    field_types = _field_types()
    hyper = model_defaults(model_cls)
    train_updates, model_kwargs = {}, {}
    for key, raw in overrides.items():
        if key in field_types:
            nullable = TrainConfig.__dataclass_fields__[key].default is None
            train_updates[key] = _coerce(key, raw, field_types[key], nullable)
        elif key in hyper:
            default = hyper[key]
            kind = str if default is None else type(default)
            model_kwargs[key] = _coerce(key, raw, kind, default is None)
        else:
            known = sorted(set(field_types) | set(hyper))
            raise ConfigError(f"unknown option --{key}; known: {', '.join(known)}")
    return dataclasses.replace(train, **train_updates), model_kwargs
