"""Adding a model is one file: a throwaway LSTM, registered at test time, runs through every
per-model test (zoo, decoding, export, every command, fine-tuning) and breaks none of the others."""
import re
import sys

import pytest

from conftest import run_python

PER_MODEL = ["tests/test_zoo.py", "tests/test_generation.py", "tests/test_export.py",
             "tests/test_cli_end_to_end.py"]
LISTING = ["tests/test_registry_config.py", "tests/test_train_cli.py"]  # tests that list models


@pytest.mark.slow
def test_a_model_registered_by_one_file_is_picked_up_by_every_per_model_test():
    result = run_python(["-m", "pytest", "-p", "throwaway_lstm", "-q", "-p", "no:cacheprovider", "-n", "0",
                         *PER_MODEL, *LISTING,
                         "-k", "lstm or test_registry_config or test_train_cli and not slow",
                         "-rA"], timeout=900)
    assert result.returncode == 0, result.stdout[-4000:]
    passed = re.findall(r"^PASSED (\S+)", result.stdout, re.M)
    lstm = sorted(test for test in passed if "[lstm" in test)
    assert any(test.startswith(LISTING[0]) for test in passed)
    # As many per-model tests as its sibling, the GRU, gets:
    collected = run_python(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", "0", "--collect-only",
                            *PER_MODEL, "-k", "gru"])
    gru = sorted(line.replace("[gru", "[lstm") for line in collected.stdout.splitlines()
                 if "[gru" in line)
    assert lstm == gru and len(gru) > 10


def test_the_zoo_itself_is_left_alone():
    """The throwaway is registered only where the plugin is loaded."""
    import kerasgen.zoo  # noqa: F401
    from kerasgen import registry

    assert "lstm" not in registry.names() or "throwaway_lstm" in sys.modules
