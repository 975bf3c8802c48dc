"""Shared fixtures: quiet TensorFlow, the zoo registered, a tiny text corpus."""
import os
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402

import zoo  # noqa: E402,F401  registers the models

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Small enough that every CLI run in the suite takes seconds.
TINY_TRAIN = ["--epochs=1", "--steps_per_epoch=2", "--validation_steps=1", "--batch_size=2",
              "--seq_len=8", "--sample_chars=8", "--jit_compile=false"]
TINY_MODEL = {"gru": ["--units=8", "--embed_dim=4"],
              "transformer": ["--num_layers=1", "--num_heads=2", "--embed_dim=8"]}


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("the quick brown fox jumps over the lazy dog.\n" * 20, encoding="utf-8")
    return str(path)


def run_python(code_or_args, timeout=300, env=None):
    """Runs Python in a fresh process from the repo root; returns the CompletedProcess."""
    args = ["-c", code_or_args] if isinstance(code_or_args, str) else code_or_args
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})})
