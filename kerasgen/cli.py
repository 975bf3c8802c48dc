"""What every kerasgen command shares: one-line errors with exit code 2, and a quiet TensorFlow start.

Nothing here imports TensorFlow, so a command parses its arguments (and answers
--help) before paying for TensorFlow's start-up.
"""
import argparse
import contextlib
import functools
import os
import re
import sys
import tempfile

from kerasgen.errors import KerasgenError, UsageError

# TensorFlow's C++ start-up lines that no user can act on; everything else still reaches stderr.
_START_UP_NOISE = re.compile(
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called"
    r"|^I\d{4} "  # start-up INFO lines (oneDNN, "could not find cuda drivers", …)
    r"|^To enable the following instructions: .* rebuild TensorFlow"
    r"|cpu_feature_guard\.cc")
# A CPU-only machine without NVIDIA's driver: CUDA's failed probe is expected, not an error.
_NO_DRIVER_NOISE = re.compile(r"^E\d{4} .*failed call to cuInit")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are UsageErrors, so `command` reports them in one line, and
    which takes no abbreviation of an option (`--epoch` is not `--epochs`)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **{"allow_abbrev": False, **kwargs})

    def parse_args(self, args=None, namespace=None):
        """As argparse's, with the closest known option named for an unknown one."""
        from kerasgen.config import did_you_mean

        namespace, extras = self.parse_known_args(args, namespace)
        if extras:
            unknown = extras[0].partition("=")[0]
            known = sorted(name[2:] for name in self._option_string_actions if name.startswith("--"))
            hint = did_you_mean(unknown.lstrip("-"), known) if unknown.startswith("--") else ""
            self.error(f"unrecognized arguments: {' '.join(extras)}" + (f"; {hint}" if hint else ""))
        return namespace

    def error(self, message):
        raise UsageError(message)


def parse_overrides(rest):
    """{key: raw value} of the `--key=value` and `--key value` options an ArgumentParser left
    over (parse_known_args): the settings of training fields, recipes and models."""
    overrides, i = {}, 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--") or len(item) == 2:
            raise UsageError(f"unexpected argument {item!r}; options look like --key=value")
        key, eq, value = item[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                raise UsageError(f"--{key} needs a value")
            i, value = i + 1, rest[i + 1]
        overrides[key] = value
        i += 1
    return overrides


def add_run_arguments(p):
    """--run and --checkpoint: how the generate, evaluate and export commands name a trained model."""
    from kerasgen.rundir import CHECKPOINTS

    p.add_argument("--run", required=True, metavar="DIR",
                   help="run directory made by kerasgen.train ('latest': the newest under runs/)")
    p.add_argument("--checkpoint", choices=CHECKPOINTS, default="best",
                   help="best: the epoch with the best validation loss (GANs: Fréchet distance), "
                        "checkpoints/best.keras; final: the last epoch, model.keras (default: best)")


def find_run(path, prog):
    """The run `--run path` names, its config checked; `--run latest` says on stderr which run
    it took (the newest of any model)."""
    from kerasgen.rundir import RunDir

    run = RunDir.find(path)
    config = run.read_config()  # a corrupted run is reported, not half used
    if path == "latest":
        print(f"{prog}: --run latest is {run} (a {config['model_name']} run)", file=sys.stderr)
    return run, config


def command(prog):
    """Wraps main(argv): bad input prints `prog: error: …` on stderr and returns 2; Ctrl-C
    prints one line and returns 130 (mains with more to say about it catch it themselves)."""

    def decorator(main):
        @functools.wraps(main)
        def wrapper(argv=None):
            try:
                return main(sys.argv[1:] if argv is None else argv)
            except KerasgenError as e:
                print(f"{prog}: error: {e}", file=sys.stderr)
                return 2
            except KeyboardInterrupt:
                print(f"\n{prog}: interrupted", file=sys.stderr)
                return 130

        return wrapper

    return decorator


@contextlib.contextmanager
def filtered_stderr(drop):
    """Runs the block with file descriptor 2 captured (C++ writes there directly), then
    writes back the captured lines `drop` does not match."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = [line for line in capture.read().decode(errors="replace").splitlines(True)
                    if not drop(line)]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def start_tensorflow():
    """Imports TensorFlow and finds its devices with the start-up chatter filtered out.

    Called by the CLIs after parsing, never by library code: how chatty
    TensorFlow is belongs to the program, not to a library imported into one.
    """
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # INFO and WARNING from C++; errors still show
    no_driver = not os.path.exists("/proc/driver/nvidia")

    def drop(line):
        return bool(_START_UP_NOISE.search(line) or (no_driver and _NO_DRIVER_NOISE.search(line)))

    with filtered_stderr(drop):
        import tensorflow as tf

        tf.config.list_physical_devices()  # CUDA is probed here, once per process
