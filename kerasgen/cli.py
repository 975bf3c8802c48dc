"""What every kerasgen command shares: argument errors and bad input as one line and exit code 2."""
import argparse
import functools
import sys

from kerasgen.config import ConfigError
from kerasgen.data import DataError


class UsageError(Exception):
    """Bad input on the command line: one line on stderr, exit code 2."""


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UsageErrors, so `command` reports them in one line."""

    def error(self, message):
        raise UsageError(message)


def command(prog):
    """Wraps main(argv) so bad input (usage, config, data, unknown names, bad sampling values)
    prints `prog: error: …` on stderr and returns 2 instead of a traceback."""

    def decorator(main):
        @functools.wraps(main)
        def wrapper(argv=None):
            try:
                return main(sys.argv[1:] if argv is None else argv)
            except (UsageError, ConfigError, DataError) as e:
                message = str(e)
            except KeyError as e:  # unknown model or recipe: the message lists the known names
                message = e.args[0]
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2

        return wrapper

    return decorator


def load_run(run_dir, checkpoint="final"):
    """(model, config.json dict) of a run directory made by kerasgen.train.

    checkpoint: 'final' (model.keras) or 'best' (checkpoints/best.keras).
    """
    import json
    import os

    import keras

    import zoo  # noqa: F401  registers the models

    config_path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(config_path):
        raise UsageError(f"{run_dir} is not a run directory (no config.json)")
    path = os.path.join(run_dir, "model.keras" if checkpoint == "final" else "checkpoints/best.keras")
    if not os.path.isfile(path):
        raise UsageError(f"{path} does not exist (did training finish?)")
    with open(config_path) as f:
        config = json.load(f)
    return keras.saving.load_model(path, compile=False), config
