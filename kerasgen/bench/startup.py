"""Where the user's clock goes: each default model's start-up to its first steps, validation's share, all from the train command."""
import os
import subprocess
import sys
import tempfile
import time

from kerasgen.bench import common

DEFAULT_MODELS = ("gru", "transformer", "dense", "conv", "vae", "diffusion")


def add_arguments(p):
    p.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    p.add_argument("--epochs", type=int, default=2,
                   help="epochs of each model's default length (the second has nothing to compile)")


def check(args):
    from kerasgen import catalogue

    for name in args.models:
        catalogue.model(name)


def import_seconds():
    """Wall seconds of a fresh `python -c 'import tensorflow, keras'`: the floor of any start-up."""
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow, keras"], check=True,
                   capture_output=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    return time.perf_counter() - started


def run(args, overrides):
    from kerasgen.rundir import RunDir

    floor = import_seconds()
    print(f"a bare `import tensorflow, keras`: {floor:.1f} s")
    print(f"{'model':12s} {'to first steps':>14s} {'training':>9s} {'validation':>10s} {'share':>6s} "
          f"{'between':>8s} {'save':>6s} {'wall':>7s}")
    with tempfile.TemporaryDirectory(prefix="kerasgen-bench-startup-") as scratch:
        for name in args.models:
            out = os.path.join(scratch, name)
            wall = common.train_command([f"--model={name}", f"--epochs={args.epochs}",
                                         *common.model_flags(overrides)], out)
            t = RunDir(out).read_summary()["timings"]
            epochs = t["train_s"] + t["validation_s"] + t["between_epochs_s"]
            print(f"{name:12s} {t['startup_s']:12.1f} s {t['train_s']:7.1f} s {t['validation_s']:8.1f} s "
                  f"{t['validation_s'] / epochs:6.1%} {t['between_epochs_s']:6.1f} s "
                  f"{t['save_and_scores_s']:4.1f} s {wall:5.1f} s", flush=True)
    print("to first steps: from the command to the end of the first compiled execution "
          "(steps_per_execution steps); share: validation's part of the epochs' wall")
