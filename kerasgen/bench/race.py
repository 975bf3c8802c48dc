"""Time to quality: the baby GPT against nanoGPT's, side by side, on the user's clock.

Our side is `python -m kerasgen.train` itself, timed from the command to the saved
model: start-up, compilation, the per-epoch validation and samples included.
nanoGPT runs from a checkout of karpathy/nanoGPT under a Python that has torch
(neither is a kerasgen dependency), with its README's CPU baby-GPT command, timed
the same way. Both validation losses are the mean cross-entropy (nats per
character) over every non-overlapping 64-character window of the text's last
10%: ours is what the trainer reports each epoch, nanoGPT's is computed from
its checkpoints afterwards (outside its clock).
"""
import io
import json
import math
import os
import pickle
import re
import shutil
import statistics
import subprocess
import tempfile
import time

import numpy as np

from kerasgen.bench import common
from kerasgen.errors import KerasgenError, UsageError
from kerasgen.text import check_text_source
from kerasgen.rundir import RunDir, atomic_write

# nanoGPT's README: "a baby GPT on CPU" (4 layers, 4 heads, 128 wide, context 64, batch 12).
NANOGPT_ARGS = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
                "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
                "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
# The same shape on our side; the batch, steps and peak rate are ours: on 2 cores a batch of
# 16 costs ~1.2x a step of its 12 here, and at 1.5e-3 with the default recipe reaches its
# loss within 850 steps (seeds 1337, 1, 2: at 787, 822, 837); 900 leaves a margin.
BABY_GPT = dict(num_layers=4, num_heads=4, embed_dim=128, dropout=0.0, seq_len=64, batch_size=16,
                learning_rate=1.5e-3)

# Runs under nanoGPT's Python: the full-window validation loss of each saved checkpoint.
_TORCH_EVAL = r"""
import json, sys, numpy as np, torch
sys.path.insert(0, sys.argv[1])
from model import GPT, GPTConfig
val = np.fromfile(sys.argv[2], dtype=np.uint16).astype(np.int64)
block, out = int(sys.argv[3]), {}
count = (len(val) - 1) // block
x = torch.from_numpy(val[:count * block].reshape(count, block))
y = torch.from_numpy(val[1:count * block + 1].reshape(count, block))
for path in sys.argv[4:]:
    checkpoint = torch.load(path, map_location="cpu")
    model = GPT(GPTConfig(**checkpoint["model_args"]))
    state = {k.removeprefix("_orig_mod."): v for k, v in checkpoint["model"].items()}
    model.load_state_dict(state)
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, count, 256):
            logits, _ = model(x[i:i + 256], y[i:i + 256])  # targets given: logits at every position
            total += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.size(-1)), y[i:i + 256].reshape(-1), reduction="sum").item()
    out[path] = total / (count * block)
print(json.dumps(out))
"""


def add_arguments(p):
    p.add_argument("--data", metavar="FILE",
                   help="a UTF-8 text, the last 10%% validating (default: the embedded help text)")
    p.add_argument("--steps", type=int, default=900,
                   help="our training steps (default 900 at batch 16; nanoGPT's run is its 2000 at 12)")
    p.add_argument("--eval_every", type=int, default=100,
                   help="our steps between validations (an epoch each)")
    p.add_argument("--nanogpt", metavar="DIR", help="a checkout of karpathy/nanoGPT (optional)")
    p.add_argument("--torch_python", default="python", metavar="PATH",
                   help="a Python with torch, to run nanoGPT (default: python)")
    p.add_argument("--rounds", type=int, default=1,
                   help="run both sides this many times, alternately, and report the median ratio")
    p.add_argument("--out", metavar="FILE.png",
                   help="where to draw the loss-vs-time curves (of the last round)")


def check(args):
    """Every flag checked before anything trains: one line each."""
    if not 1 <= args.eval_every <= args.steps or args.steps % args.eval_every:
        raise UsageError(f"--steps={args.steps} --eval_every={args.eval_every}: "
                         "expected 1 ≤ eval_every ≤ steps, steps a multiple of eval_every")
    if args.rounds < 1:
        raise UsageError(f"--rounds={args.rounds}: expected ≥ 1")
    if args.out and not (args.out.lower().endswith(".png")
                         and os.access(os.path.dirname(os.path.abspath(args.out)), os.W_OK)):
        raise UsageError(f"--out={args.out}: expected a .png file in a writable folder "
                         "(checked before training, so the curves are not lost at the end)")
    if args.nanogpt:
        check_nanogpt(args.nanogpt, args.torch_python)
    check_text_source(args.data)


def run(args, overrides):
    from kerasgen.text.data import load_text

    flags = [f"--{key}={value}" for key, value in {**BABY_GPT, **overrides}.items()]
    common.settings("transformer", {key: str(value) for key, value in {**BABY_GPT, **overrides}.items()})
    text = load_text(args.data)
    ratios = []
    for round_ in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f"round {round_} of {args.rounds}", flush=True)
        curves = _round(args, text, flags)
        if "nanoGPT" in curves:
            ratios.append(_report(curves))
    if len(ratios) > 1:  # the machine's speed drifts between runs: each round pairs both sides
        print(f"kerasgen reaches nanoGPT's final loss in {statistics.median(ratios):.2f}x its whole "
              f"time, the median of {len(ratios)} rounds (each: {' '.join(f'{r:.2f}' for r in ratios)})")
    if args.out:
        plot({name: curve for name, (curve, _) in curves.items()}, args.out)
        print(f"curves: {args.out}")


def _round(args, text, flags):
    """{side: (curve, whole seconds)}: nanoGPT's (when given a checkout), then ours."""
    curves = {}
    with tempfile.TemporaryDirectory() as workdir:
        if args.nanogpt:
            print(f"nanoGPT ({args.nanogpt}, {args.torch_python}): {' '.join(NANOGPT_ARGS)}", flush=True)
            curves["nanoGPT"] = nanogpt(text, args.nanogpt, args.torch_python, workdir)
        path = os.path.join(workdir, "text.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        command = ["--model=transformer", "--data", path, f"--epochs={args.steps // args.eval_every}",
                   f"--steps_per_epoch={args.eval_every}", *flags]
        print(f"kerasgen: python -m kerasgen.train {' '.join(command)}", flush=True)
        curves["kerasgen"] = ours(command, os.path.join(workdir, "run"), args.eval_every)
    for name, (curve, seconds) in curves.items():
        print(f"{name:9s} " + "  ".join(f"{t:6.1f}s {v:.3f}" for t, _, v in curve[1:])
              + f"  (whole run {seconds:.1f} s)")
    return curves


def ours(command, out, eval_every):
    """Trains with the train command; returns ([(seconds since the command, step, validation
    loss)], the command's whole seconds), starting from the loss of a uniform guess."""
    started = time.time()
    seconds = common.train_command(command, out)
    run = RunDir(out)
    losses = common.epoch_scalars(run, "validation")
    uniform = math.log(run.read_config()["model"]["vocab_size"] - 1)  # id 0 is never a target
    return [(0.0, 0, uniform)] + [(wall - started, (i + 1) * eval_every, loss)
                                  for i, (wall, loss) in enumerate(losses)], seconds


def _report(curves):
    """Prints when ours reaches nanoGPT's final loss; returns that time over nanoGPT's whole
    time (or inf)."""
    (theirs, their_seconds), (curve, our_seconds) = curves["nanoGPT"], curves["kerasgen"]
    target = theirs[-1][2]
    reached = time_to_reach(curve, target)
    final = curve[-1][2]
    print(f"nanoGPT: final validation loss {target:.4f}; its whole run {their_seconds:.1f} s")
    if reached < float("inf"):
        print(f"kerasgen: reaches it {reached:.1f} s after the command = {reached / their_seconds:.2f}x "
              f"nanoGPT's whole time (final loss {final:.4f}; its whole run {our_seconds:.1f} s)")
    else:
        print(f"kerasgen: does not reach it (final loss {final:.4f} after {our_seconds:.1f} s = "
              f"{our_seconds / their_seconds:.2f}x nanoGPT's whole time); try more --steps")
    return reached / their_seconds


def prepare_nanogpt_data(text, folder):
    """nanoGPT's character-level layout (its data/shakespeare_char/prepare.py) for `text`, cut
    where our trainer cuts it."""
    from kerasgen.text.data import split_text

    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    os.makedirs(folder, exist_ok=True)
    for name, part in zip(("train", "val"), split_text(text)):
        np.array([stoi[c] for c in part], np.uint16).tofile(os.path.join(folder, f"{name}.bin"))
    with open(os.path.join(folder, "meta.pkl"), "wb") as f:
        pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)


def check_nanogpt(checkout, python):
    """One line, before anything trains: a folder that is not nanoGPT, a Python without torch."""
    for name in ("train.py", "model.py", "configurator.py"):
        if not os.path.isfile(os.path.join(checkout, name)):
            raise UsageError(f"--nanogpt={checkout}: not a checkout of karpathy/nanoGPT (no {name})")
    try:
        subprocess.run([python, "-c", "import torch"], capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        raise UsageError(f"--torch_python={python}: cannot run it and import torch") from None


def nanogpt(text, checkout, python, workdir, extra=()):
    """Runs nanoGPT's CPU baby GPT on `text` at its own evaluation interval; returns ([(seconds
    since its command, step, validation loss)] of each checkpoint, its whole seconds)."""
    prepare_nanogpt_data(text, os.path.join(workdir, "data", "race"))
    shutil.copy(os.path.join(checkout, "configurator.py"), workdir)  # train.py reads it from its cwd
    out = os.path.join(workdir, "out")
    command = [python, "-u", os.path.join(checkout, "train.py"),
               os.path.join(checkout, "config", "train_shakespeare_char.py"), *NANOGPT_ARGS,
               "--dataset=race", f"--out_dir={out}", "--always_save_checkpoint=True", *extra]
    saved, pending = {}, None
    started = time.time()
    with subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            step = re.match(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", line)
            if line.startswith("saving checkpoint"):
                pending = True
            elif step:
                iteration = int(step.group(1))
                if pending:  # the save finished before this iteration's line was printed
                    copy = os.path.join(out, f"ckpt-{iteration}.pt")
                    os.replace(os.path.join(out, "ckpt.pt"), copy)
                    saved[iteration] = (time.time() - started, copy)
                    pending = None
                if iteration % 250 == 0:
                    print(f"  nanoGPT   iter {iteration:5d}", flush=True)
    seconds = time.time() - started
    if process.returncode:
        raise KerasgenError(f"nanoGPT exited with {process.returncode}: {' '.join(command)}")
    losses = evaluate_checkpoints(checkout, python, os.path.join(workdir, "data", "race", "val.bin"),
                                  [path for _, path in saved.values()])
    # The checkpoint saved at iteration i holds the model before its step: i steps done.
    return [(wall, i, losses[path]) for i, (wall, path) in sorted(saved.items())], seconds


def evaluate_checkpoints(checkout, python, val_path, paths, block=64):
    result = subprocess.run([python, "-c", _TORCH_EVAL, checkout, val_path, str(block), *paths],
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def time_to_reach(curve, loss):
    """Seconds at which `curve` first gets down to `loss` (linear between its points), or inf."""
    for (t0, _, l0), (t1, _, l1) in zip(curve, curve[1:]):
        if l1 <= loss:
            return t0 + (t1 - t0) * (l0 - loss) / (l0 - l1) if l0 > loss else t0
    return math.inf


def plot(curves, path, size=(720, 440)):
    """Validation loss against seconds since the command, one coloured line per curve, as a PNG."""
    from PIL import Image, ImageDraw

    colours = [(200, 60, 40), (40, 90, 200), (40, 150, 60)]
    points = [p for curve in curves.values() for p in curve[1:]]
    t_max = max(t for t, _, _ in points)
    low = min(v for _, _, v in points)
    high = max(low + 0.01, min(3.0, max(v for _, _, v in points)))  # a flat curve still has a scale
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    left, top, right, bottom = 60, 20, size[0] - 20, size[1] - 50

    def xy(t, v):
        v = min(max(v, low), high)
        return (left + (right - left) * t / t_max, bottom - (bottom - top) * (v - low) / (high - low))

    draw.rectangle([left, top, right, bottom], outline="black")
    for i in range(5):
        v = low + (high - low) * i / 4
        draw.text((5, xy(0, v)[1] - 6), f"{v:.2f}", fill="black")
        t = t_max * i / 4
        draw.text((xy(t, low)[0] - 10, bottom + 5), f"{t:.0f} s", fill="black")
    draw.text((left, size[1] - 22), "validation loss (nats/char) against seconds since the command",
              fill="black")
    for (name, curve), colour in zip(curves.items(), colours):
        draw.line([xy(t, v) for t, _, v in curve[1:]], fill=colour, width=2)
        draw.text((right - 200, top + 10 + 15 * list(curves).index(name)), name, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())  # a full disk: one line, no half-written PNG
