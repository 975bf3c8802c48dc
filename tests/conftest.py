"""Shared test helpers: the zoo registered, model lists from the registry and the families, tiny
models and runs, and fresh processes."""
import argparse
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

import kerasgen.zoo  # noqa: F401  registers the models
from kerasgen import registry
from kerasgen.config import model_defaults
from kerasgen.image import FAMILY as IMAGE
from kerasgen.text import FAMILY as TEXT
from kerasgen.text.tokenizer import UNKNOWN_ID

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTS = os.path.join(REPO, "tests")

# Every registered model (a model registered by a plugin, e.g. `-p throwaway_lstm`, included).
MODELS = registry.names()
TEXT_MODELS = [n for n in MODELS if registry.get(n).family is TEXT]
IMAGE_MODELS = [n for n in MODELS if registry.get(n).family is IMAGE]
VOCAB = "abcdefgh .\n"  # tiny text models' characters (ids 1..11; 0 = unknown)

# Small enough that every CLI run in the suite takes seconds; the data is each family's embedded one.
TINY_TRAIN = ["--epochs=1", "--steps_per_epoch=2", "--validation_steps=1", "--batch_size=2",
              "--seq_len=8", "--sample_chars=8", "--jit_compile=false"]


def tiny_kwargs(name):
    """The registry's tiny size, with a vocabulary for models that take one."""
    cls = registry.get(name)
    kwargs = dict(cls.tiny)
    if "vocabulary" in model_defaults(cls) and kwargs.get("vocabulary") is None:
        kwargs["vocabulary"] = VOCAB[:kwargs.get("vocab_size", len(VOCAB) + 1) - 1]
        kwargs["vocab_size"] = len(kwargs["vocabulary"]) + 1
    return kwargs


def tiny_model(name, seed=0, **changes):
    """A built tiny model, the same for the same seed."""
    keras.utils.set_random_seed(seed)
    model = registry.get(name)(**{**tiny_kwargs(name), **changes})
    model(model.sample_inputs(2))
    return model


def tiny_flags(name):
    """Command-line flags that train `name` at its tiny size."""
    return [f"--model={name}", *TINY_TRAIN] + [
        f"--{k}={v}" for k, v in registry.get(name).tiny.items()
        if k not in ("vocab_size", "vocabulary", "num_classes")]  # the data's own


def keras_hub_search(model, sampler, prompts, new):
    """KerasHub's sampler (ContrastiveSampler, BeamSampler) driven by the model's own
    `hidden_step`: its `next(prompt, cache, index)` reads token index-1, so the cache it is
    handed is the model's state before that token; the unknown id is never generated."""
    ids = np.array([model.text_tokenizer.encode(p) for p in prompts], np.int32)
    batch, index = ids.shape
    prompt = np.concatenate([ids, np.zeros((batch, new), np.int32)], axis=1)
    state, hidden = model.initial_state(batch), []
    for position in range(index):
        _, h, after = model.hidden_step(prompt[:, position], state, position)
        hidden.append(h)
        state = after if position < index - 1 else state
    hidden = np.concatenate([np.stack(hidden, axis=1), np.zeros((batch, new, hidden[0].shape[-1]))],
                            axis=1).astype(np.float32)
    never = tf.one_hot(UNKNOWN_ID, model.vocab_size, on_value=True, off_value=False)[None]

    def next_token_logits(prompt, cache, index):
        logits, h, cache = model.hidden_step(prompt[:, index - 1], cache, index - 1)
        return tf.where(never, tf.float32.min, logits), h, cache

    out = sampler(next_token_logits, tf.constant(prompt), cache=state, index=index,
                  hidden_states=tf.constant(hidden))
    return np.asarray(out)[:, index:]


def export_args(**changes):
    """The export command's flags at their defaults, as the families' serving() gets them."""
    from kerasgen.export.__main__ import _parser

    return argparse.Namespace(**{**vars(_parser().parse_args(["--run", "-"])), **changes})


def export(model, base, **changes):
    """Exports `model` under `base` with the export CLI's defaults changed by `changes`."""
    from kerasgen.export.saved_model import export_saved_model

    return export_saved_model(model, model.family.serving(model, export_args(**changes)),
                              type(model).zoo_name, str(base))


def error_lines(stderr):
    """What a command printed on stderr, blank lines left out."""
    return [line for line in stderr.splitlines() if line.strip()]


def run_python(code_or_args, timeout=300, env=None):
    """Runs Python in a fresh process from the repo root; returns the CompletedProcess. The tests
    folder is importable there, so a model registered by a test module loads too."""
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    path = os.pathsep.join(p for p in (REPO, TESTS, os.environ.get("PYTHONPATH")) if p)
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": path, **(env or {})})


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """name → the RunDir of a tiny training run of that model, trained once per test process and
    shared by every test that only reads it (generate, evaluate, export, fine-tune from it)."""
    from kerasgen import train
    from kerasgen.rundir import RunDir

    runs = {}

    def run(name):
        if name not in runs:
            out = str(tmp_path_factory.mktemp(f"tiny-{name}") / "run")
            assert train.main([*tiny_flags(name), "--out", out]) == 0
            runs[name] = RunDir(out)
        return runs[name]

    return run


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog.\n" * 20, encoding="utf-8")
    return str(path)
