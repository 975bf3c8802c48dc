"""Adding a model is one file: a throwaway LSTM, registered by loading it as a pytest plugin, is
collected by every per-model test its sibling, the GRU, is collected by, and changes nothing else."""
import re

from conftest import run_python

PER_MODEL = ["tests/test_zoo.py", "tests/test_generation.py", "tests/test_export.py",
             "tests/test_cli_end_to_end.py", "tests/test_distribute.py"]


def collected(*plugin):
    """The test ids pytest collects from PER_MODEL, with the plugin (`-p throwaway_lstm`) or without."""
    result = run_python(["-m", "pytest", *plugin, "-q", "-p", "no:cacheprovider", "-n", "0",
                         "--collect-only", *PER_MODEL])
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return {line for line in result.stdout.splitlines() if re.match(r"tests/\S+::", line)}


def test_a_model_registered_by_one_file_gets_every_per_model_test_its_sibling_gets():
    with_lstm, without = collected("-p", "throwaway_lstm"), collected()
    lstm = sorted(test for test in with_lstm if "[lstm" in test)
    gru = sorted(test.replace("[gru", "[lstm") for test in without if "[gru" in test)
    assert lstm == gru and gru
    assert with_lstm - set(lstm) == without  # nothing else added or lost
    assert not [test for test in without if "lstm" in test]  # the zoo itself is left alone
