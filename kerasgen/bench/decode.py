"""Generation tokens per second: cold from the command line and warm, the cached loop (batch 1, 8) vs re-running the prefix."""
import os
import subprocess
import sys
import tempfile
import time

from kerasgen.bench import common

CLI_TOKENS = 1000
# Runs in a fresh process: the seconds from its start to a run's model loaded, as generate's.
_LOAD = "import kerasgen, time; from kerasgen.rundir import RunDir; RunDir({!r}).load_model(); " \
        "print(time.monotonic() - kerasgen.STARTED)"


def add_arguments(p):
    p.add_argument("--models", nargs="+", default=["transformer", "gru"])
    p.add_argument("--seq_len", type=int, default=64, help="the Transformer's context")
    p.add_argument("--max_new_tokens", type=int, default=500)
    p.add_argument("--uncached_tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top_p", type=float, default=1.0)
    p.add_argument("--run", nargs="*", default=[],
                   help="runs to generate from on the command line (default: a 10-step run of "
                        "each model, trained here)")


def check(args):
    """Each --run a text run, before TensorFlow starts."""
    from kerasgen.errors import UsageError
    from kerasgen.rundir import RunDir

    for path in args.run:
        family = RunDir.find(path).read_config().get("family")
        if family != "text":
            raise UsageError(f"--run {path} is not a text run ({family}); bench decode generates text")


def cold_cli(run):
    """(wall seconds of `python -m kerasgen.generate` streaming CLI_TOKENS tokens, seconds a
    fresh process takes to load the run's model, seconds of a warm streaming call here)."""
    from kerasgen.errors import UsageError
    from kerasgen.rundir import RunDir
    from kerasgen.text.decoding import COLD_XLA, generate_ids
    from kerasgen.text.sampling import Sampling

    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kerasgen.generate", "--run", run, "--prompt",
                           "The ", f"--max_new_tokens={CLI_TOKENS}"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    cli = time.perf_counter() - started
    if done.returncode:
        raise UsageError(f"{run}: the generate command failed: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    load = float(subprocess.run([sys.executable, "-c", _LOAD.format(run)], check=True, text=True,
                                capture_output=True).stdout.split()[-1])
    model, sampling = RunDir(run).load_model(), Sampling(max_new_tokens=CLI_TOKENS)
    stream = lambda: list(generate_ids(model, ["The "], sampling, block=32,  # noqa: E731
                                       jit_compile=COLD_XLA))
    cold = common.timed(stream)
    return cli, load, cold, min(common.timed(stream) for _ in range(3))


def run(args, overrides):
    """The command line's cold generation against start-up plus a warm call; then cached decode
    at batch 1 and 8 vs re-running the prefix, same model, one run."""
    print(f"{'run':28s} {'CLI, 1000 tokens':>16s} {'load':>6s} {'cold call':>9s} {'warm call':>9s} "
          f"{'CLI / (load + warm)':>19s}")
    with tempfile.TemporaryDirectory(prefix="kerasgen-bench-decode-") as scratch:
        runs = args.run or []
        for name in () if args.run else args.models:
            runs.append(os.path.join(scratch, name))
            common.train_command([f"--model={name}", "--epochs=1", "--steps_per_epoch=10",
                                  *common.model_flags(overrides)], runs[-1])
        for path in runs:
            cli, load, cold, warm = cold_cli(path)
            print(f"{os.path.basename(path):28s} {cli:14.1f} s {load:4.1f} s {cold:7.2f} s "
                  f"{warm:7.2f} s {cli / (load + warm):18.2f}x   cold {CLI_TOKENS / cold:6.0f}, "
                  f"warm {CLI_TOKENS / warm:6.0f} tokens/s", flush=True)

    import numpy as np

    from kerasgen.text.decoding import generate_ids, generate_uncached
    from kerasgen.text.sampling import Sampling

    print()
    n = args.max_new_tokens
    sampling = Sampling(max_new_tokens=n, temperature=args.temperature, top_p=args.top_p, seed=0)
    print(f"{'model':12s} {'decoding':44s} {'tokens/s':>9s}")
    for name in args.models:
        decided, _, _ = common.family_data(name, overrides, seq_len=args.seq_len, validation_steps=1)
        model, _ = common.training_model(name, overrides, decided, seq_len=args.seq_len)
        rates = {batch: common.tokens_per_second(
            lambda b=batch: list(generate_ids(model, ["\n"] * b, sampling)), n * batch)
            for batch in (1, 8)}
        prompt = np.array([model.text_tokenizer.encode("\n")])
        uncached = common.tokens_per_second(
            lambda: generate_uncached(model, prompt, args.uncached_tokens), args.uncached_tokens,
            repeats=1)
        print(f"{name:12s} {'uncached: re-run the prefix each token, batch 1':44s} {uncached:9.0f}")
        print(f"{name:12s} {'cached, compiled loop, batch 1':44s} {rates[1]:9.0f}"
              f"   {rates[1] / uncached:.1f}x uncached")
        print(f"{name:12s} {'cached, compiled loop, batch 8':44s} {rates[8]:9.0f}"
              f"   {rates[8] / rates[1]:.1f}x batch 1", flush=True)
