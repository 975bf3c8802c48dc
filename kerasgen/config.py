"""Training settings in one dataclass, and `--key=value` overrides that fail loudly."""
import dataclasses
import difflib
import inspect
import math
import typing
from typing import Optional

from kerasgen.distribute import PRECISIONS, STRATEGIES
from kerasgen.errors import ConfigError
from kerasgen.recipes import Recipe
from kerasgen.text.tokenizer import MAX_BPE_VOCAB, TOKENIZERS


@dataclasses.dataclass
class TrainConfig:
    """Everything about a run that is neither a model hyperparameter nor a recipe knob.

    A model's family and the model itself may change these defaults (see
    `--list`); the resolved values are recorded in the run's config.json.
    """

    model: str = "gru"
    data: Optional[str] = None  # None: the family's embedded default dataset
    recipe: Optional[str] = None  # None: the model's default recipe ('finetune' with init_from)
    epochs: int = 8
    batch_size: int = 32
    steps_per_epoch: int = 150
    validation_steps: Optional[int] = None  # None: the whole validation split, every epoch
    seq_len: int = 64  # text: training window (in tokens), and the Transformer's context
    tokenizer: str = "char"  # text: char, or bpe (byte-level BPE learned from the training split)
    vocab_size: Optional[int] = None  # text, bpe: tokens incl. the 256 bytes (None: 1024)
    seed: int = 1337  # every random draw of training: weights, data order, noise
    out: Optional[str] = None  # None: runs/<model>/<timestamp>
    strategy: str = "default"  # default | mirrored | multi_worker (from TF_CONFIG)
    precision: str = "float32"  # float32 | mixed_float16 | mixed_bfloat16 (Keras dtype policies)
    jit_compile: bool = True  # XLA for the training steps
    steps_per_execution: int = 10  # fewer Python round trips per step (at most; a divisor of an epoch)
    sample_chars: int = 200  # text: length of the per-epoch TensorBoard samples
    log_every: int = 10  # TensorBoard: the training losses and learning rate every N steps (0: per epoch only)
    init_from: Optional[str] = None  # a run directory to fine-tune from
    freeze_layers: int = 0  # fine-tuning: keep the embedding and this many lower layers fixed

    def check(self):
        """Values no run can use: one ConfigError naming each."""
        problems = [f"--{name}={getattr(self, name)} must be ≥ {low}"
                    for name, low in (("epochs", 1), ("batch_size", 1), ("steps_per_epoch", 1),
                                      ("seq_len", 2), ("steps_per_execution", 1),
                                      ("sample_chars", 1), ("freeze_layers", 0), ("seed", 0),
                                      ("log_every", 0))
                    if getattr(self, name) < low]
        if self.validation_steps is not None and self.validation_steps < 1:
            problems.append(f"--validation_steps={self.validation_steps} must be ≥ 1 (or none: all)")
        if self.seed >= 2 ** 31:
            problems.append(f"--seed={self.seed} must be < 2^31")
        for name, choices in (("strategy", STRATEGIES), ("precision", PRECISIONS)):
            if getattr(self, name) not in choices:
                problems.append(f"--{name}={getattr(self, name)} must be one of {', '.join(choices)}")
        if self.tokenizer not in TOKENIZERS:
            problems.append(f"--tokenizer={self.tokenizer} must be one of {', '.join(TOKENIZERS)}")
        elif self.vocab_size is not None and self.tokenizer != "bpe":
            problems.append(f"--vocab_size={self.vocab_size} needs --tokenizer=bpe (the characters "
                            f"of the data make the char vocabulary)")
        elif self.vocab_size is not None and not 257 <= self.vocab_size <= MAX_BPE_VOCAB:
            problems.append(f"--vocab_size={self.vocab_size} must be in 257..{MAX_BPE_VOCAB} "
                            f"(the 256 bytes and at least one merge)")
        if problems:
            raise ConfigError("; ".join(problems))
        return self


def did_you_mean(name, known):
    """'did you mean --x or --y?' for the known option names closest to `name` (those it
    abbreviates first, then by initials, lr → learning_rate, then by spelling), or '' when
    none is close."""
    close = ([k for k in known if k.startswith(name)]
             or [k for k in known if "".join(word[:1] for word in k.split("_")) == name]
             or difflib.get_close_matches(name, known, n=3, cutoff=0.6))
    return f"did you mean {' or '.join(f'--{k}' for k in close[:3])}?" if close else ""


def _unwrap(hint):
    """Optional[X] → X."""
    return next((a for a in typing.get_args(hint) if a is not type(None)), hint)


def _coerce(key, raw, kind, nullable):
    """Parses the string `raw` as `kind` (int, float, bool or str)."""
    if nullable and raw.lower() in ("none", "null"):
        return None
    try:
        if kind is bool:
            return {"1": True, "true": True, "yes": True, "on": True,
                    "0": False, "false": False, "no": False, "off": False}[raw.lower()]
        value = kind(raw)
    except (KeyError, ValueError):
        raise ConfigError(f"--{key}={raw}: expected a value of type {kind.__name__}") from None
    if kind is float and not math.isfinite(value):
        raise ConfigError(f"--{key}={raw}: expected a finite number")
    return value


def _dataclass_fields(cls):
    """{field: (type, nullable)} of a dataclass."""
    hints = typing.get_type_hints(cls)
    return {f.name: (_unwrap(hints[f.name]), f.default is None) for f in dataclasses.fields(cls)}


# Model arguments whose one home is the run, not the model: the training window is the
# Transformer's context, and the recipe's dropout is every model's that takes one.
RUN_SETTINGS = {"seq_len": "train", "dropout": "recipe"}


def model_defaults(model_cls):
    """A model's arguments: its __init__ keyword arguments and their defaults (of a class, or of
    a `catalogue.ModelInfo`, which read them from the source)."""
    if not isinstance(model_cls, type):
        return dict(model_cls.arguments)
    params = inspect.signature(model_cls.__init__).parameters
    return {k: p.default for k, p in params.items()
            if k != "self" and p.default is not inspect.Parameter.empty}


def own_hyperparameters(defaults, family):
    """The model's own settings among its arguments' `defaults`, the ones its flags set: not
    those the run owns (RUN_SETTINGS) nor those its family takes from the data."""
    return {k: v for k, v in defaults.items()
            if k not in RUN_SETTINGS and k not in family.data_arguments}


def hyperparameters(model_cls):
    """`own_hyperparameters` of a model class."""
    return own_hyperparameters(model_defaults(model_cls), model_cls.family)


def model_arguments(model_cls, train, recipe, flags=None, pretrained=None, data=None):
    """A model's constructor arguments, each from its one home, in this order: the model config
    of the run it continues or fine-tunes (`pretrained`), the model flags (`flags`, typed),
    what the data decides (`data`: a tokenizer, the classes), then the run's own settings
    (RUN_SETTINGS, from `train` and `recipe`). The rest are the model's defaults."""
    accepted = model_defaults(model_cls)
    kwargs = {k: v for k, v in (pretrained or {}).items() if k in accepted}
    kwargs.update(flags or {})
    kwargs.update(data or {})
    kwargs.update({key: getattr(train if home == "train" else recipe, key)
                   for key, home in RUN_SETTINGS.items() if key in accepted})
    return kwargs


def apply_overrides(train, model_cls, overrides):
    """Routes each `{key: raw string}` to its one home, a TrainConfig field, a recipe field or
    one of the model's own hyperparameters (the three are disjoint), typed as the field it names.

    Returns (TrainConfig, recipe field updates, model flags): the recipe is
    chosen by name (a TrainConfig field) before its fields are changed. An
    unknown key or a wrong type raises ConfigError.
    """
    train_fields, recipe_fields = _dataclass_fields(TrainConfig), _dataclass_fields(Recipe)
    hyper = hyperparameters(model_cls)
    updates = {"train": {}, "recipe": {}, "model": {}}
    for key, raw in overrides.items():
        if key in train_fields:
            updates["train"][key] = _coerce(key, raw, *train_fields[key])
        elif key in recipe_fields:
            updates["recipe"][key] = _coerce(key, raw, *recipe_fields[key])
        elif key in hyper:
            default = hyper[key]
            updates["model"][key] = _coerce(key, raw, str if default is None else type(default),
                                            default is None)
        else:
            hint = did_you_mean(key, sorted(set(train_fields) | set(hyper) | set(recipe_fields)))
            raise ConfigError(f"unknown option --{key}; " + (hint or "see --help for the training "
                              "and recipe fields, --list for the models' own"))
    return dataclasses.replace(train, **updates["train"]), updates["recipe"], updates["model"]


def from_dict(cls, values, where):
    """A dataclass from a dict read back from a file: missing fields take their defaults
    (older runs); unknown fields and values of the wrong type are an error naming `where`."""
    fields = _dataclass_fields(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"{where} has unknown settings: {', '.join(unknown)}")
    for key, value in values.items():
        kind, nullable = fields[key]
        ok = (value is None and nullable) or (
            isinstance(value, kind) and not (isinstance(value, bool) and kind is not bool)) or (
            kind is float and isinstance(value, int) and not isinstance(value, bool))
        if not ok:
            raise ConfigError(f"{where}: {key}={value!r} is not of type {kind.__name__}")
    return cls(**values)
