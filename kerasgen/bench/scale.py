"""Training steps/s: one worker against several on this host (--strategy multi_worker)."""
import os
import subprocess
import sys
import tempfile

from kerasgen.bench import common
from kerasgen.errors import UsageError


def add_arguments(p):
    p.add_argument("--model", default="gru")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch_size", type=int, help="the global batch (default: the model's)")
    p.add_argument("--epochs", type=int, default=3, help="the first one warms up, untimed")
    p.add_argument("--steps", type=int, default=100, help="training steps per epoch")


def check(args):
    if args.epochs < 2 or args.steps < 1 or args.workers < 2:
        raise UsageError("expected --epochs ≥ 2, --steps ≥ 1 and --workers ≥ 2")
    from kerasgen import catalogue

    catalogue.model(args.model)


def run(args, overrides):
    """The same `python -m kerasgen.train` command on one worker and on N, its global batch split
    over the workers; steps/s from the epochs' ends in each run's TensorBoard log."""
    from kerasgen.distribute import local_cluster
    from kerasgen.rundir import RunDir
    command = [sys.executable, "-m", "kerasgen.train", f"--model={args.model}",
               f"--epochs={args.epochs}", f"--steps_per_epoch={args.steps}", "--validation_steps=1",
               "--sample_chars=8", *common.model_flags(overrides)]
    if args.batch_size:
        command.append(f"--batch_size={args.batch_size}")
    settings = [("1 worker, default strategy (XLA, 10 steps a call)", 1, []),
                ("1 worker, the steps multi_worker runs (no XLA, 1 a call)", 1,
                 ["--jit_compile=false", "--steps_per_execution=1"]),
                (f"{args.workers} workers on localhost, --strategy multi_worker", args.workers,
                 ["--strategy=multi_worker"])]
    rows = []
    print(f"{args.model}: training steps/s over epochs 2-{args.epochs} of {args.steps} steps "
          f"(the same global batch in every row)", flush=True)
    with tempfile.TemporaryDirectory() as workdir:
        for i, (label, workers, extra) in enumerate(settings):
            out = os.path.join(workdir, str(i))
            configs = local_cluster(workers) if workers > 1 else [None]
            processes = [subprocess.Popen([*command, *extra, "--out", out],
                                          env={**os.environ, **({"TF_CONFIG": c} if c else {})},
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
                         for c in configs]
            for p in processes:
                _, err = p.communicate()
                if p.returncode:
                    raise UsageError(f"{label}: the training command failed: "
                                     f"{(err.strip().splitlines() or ['?'])[-1]}")
            run_dir = RunDir(out)
            ends = [wall for wall, _ in common.epoch_scalars(run_dir, "train")]
            batch = run_dir.train_config().batch_size
            steps_per_s = (len(ends) - 1) * args.steps / (ends[-1] - ends[0])
            rows.append((label, steps_per_s, steps_per_s * batch))
            print(f"  {label:58s} {steps_per_s:7.1f} steps/s  {steps_per_s * batch:8.0f} examples/s"
                  f"  {steps_per_s / rows[0][1]:.2f}x", flush=True)
    return rows
