"""Time to quality: our baby GPT against nanoGPT's, trained side by side on one text.

Both validation losses are measured the same way, outside the timed training:
the mean cross-entropy (nats per character) over every non-overlapping
`block`-character window of the text's last 10%. nanoGPT runs from a checkout
of karpathy/nanoGPT under a Python that has torch (neither is a kerasgen
dependency), with its README's CPU baby-GPT command.
"""
import io
import math
import os
import pickle
import re
import shutil
import subprocess
import time

import numpy as np

from kerasgen.errors import KerasgenError, UsageError
from kerasgen.rundir import atomic_write

# nanoGPT's README: "a baby GPT on CPU" (4 layers, 4 heads, 128 wide, context 64, batch 12).
NANOGPT_ARGS = ["--device=cpu", "--compile=False", "--eval_iters=20", "--log_interval=1",
                "--block_size=64", "--batch_size=12", "--n_layer=4", "--n_head=4", "--n_embd=128",
                "--max_iters=2000", "--lr_decay_iters=2000", "--dropout=0.0"]
BABY_GPT = dict(num_layers=4, num_heads=4, embed_dim=128, dropout=0.0)

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


def ours(train, recipe, model_kwargs, eval_every):
    """Trains the Transformer as `train` and `recipe` say; returns [(seconds, step, val loss)],
    seconds of training only (evaluation paused), the first point before any step."""
    import keras

    import kerasgen.zoo  # noqa: F401  registers the models
    from kerasgen import registry

    cls = registry.get("transformer")
    kwargs, data = cls.family.training_data(cls, train, model_kwargs)
    keras.utils.set_random_seed(train.seed)
    model = cls(**kwargs)
    model(model.sample_inputs(1))
    total = train.epochs * train.steps_per_epoch
    model.compile_from_recipe(recipe, total, jit_compile=train.jit_compile,
                              steps_per_execution=min(train.steps_per_execution, eval_every))
    curve = [(0.0, 0, model.evaluate(data.validation, verbose=0, return_dict=True)["loss"])]
    clock = {"start": time.perf_counter(), "paused": 0.0}

    def on_epoch_end(epoch, logs):
        seconds = time.perf_counter() - clock["start"] - clock["paused"]
        paused = time.perf_counter()
        loss = model.evaluate(data.validation, verbose=0, return_dict=True)["loss"]
        curve.append((seconds, (epoch + 1) * eval_every, loss))
        print(f"  kerasgen  step {(epoch + 1) * eval_every:5d}  {seconds:7.1f} s  val {loss:.4f}",
              flush=True)
        clock["paused"] += time.perf_counter() - paused

    model.fit(data.train, epochs=total // eval_every, steps_per_epoch=eval_every, verbose=0,
              callbacks=[keras.callbacks.LambdaCallback(on_epoch_end=on_epoch_end)])
    return curve


def prepare_nanogpt_data(text, folder):
    """nanoGPT's character-level layout (its data/shakespeare_char/prepare.py) for `text`."""
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    cut = int(len(text) * 0.9)
    os.makedirs(folder, exist_ok=True)
    for name, part in (("train", text[:cut]), ("val", text[cut:])):
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


def nanogpt(text, checkout, python, workdir, eval_every, extra=()):
    """Runs nanoGPT's CPU baby GPT on `text`; returns [(seconds, step, val loss)] like `ours`.

    Seconds are the sum of its own per-iteration times, with the iterations that
    evaluated and saved a checkpoint counted at the median iteration time.
    """
    prepare_nanogpt_data(text, os.path.join(workdir, "data", "race"))
    shutil.copy(os.path.join(checkout, "configurator.py"), workdir)  # train.py reads it from its cwd
    out = os.path.join(workdir, "out")
    command = [python, "-u", os.path.join(checkout, "train.py"),
               os.path.join(checkout, "config", "train_shakespeare_char.py"), *NANOGPT_ARGS,
               "--dataset=race", f"--out_dir={out}", f"--eval_interval={eval_every}",
               "--always_save_checkpoint=True", *extra]
    times, saved, pending = {}, {}, None
    with subprocess.Popen(command, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as process:
        for line in process.stdout:
            step = re.match(r"iter (\d+): loss [\d.]+, time ([\d.]+)ms", line)
            if line.startswith("saving checkpoint"):
                pending = True
            elif step:
                iteration, milliseconds = int(step.group(1)), float(step.group(2))
                times[iteration] = milliseconds / 1000
                if pending:  # the save finished before this iteration's line was printed
                    copy = os.path.join(out, f"ckpt-{iteration}.pt")
                    os.replace(os.path.join(out, "ckpt.pt"), copy)
                    saved[iteration] = copy
                    pending = None
                if iteration % 100 == 0:
                    print(f"  nanoGPT   iter {iteration:5d}", flush=True)
    if process.returncode:
        raise KerasgenError(f"nanoGPT exited with {process.returncode}: {' '.join(command)}")
    typical = float(np.median(list(times.values())))
    clean = {i: (typical if i in saved else t) for i, t in times.items()}
    losses = evaluate_checkpoints(checkout, python, os.path.join(workdir, "data", "race", "val.bin"),
                                  list(saved.values()))
    # The checkpoint saved at iteration i holds the model before its step: i steps done.
    return [(sum(t for j, t in clean.items() if j < i), i, losses[path]) for i, path in sorted(saved.items())]


def evaluate_checkpoints(checkout, python, val_path, paths, block=64):
    import json

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
    """Validation loss against training seconds, one coloured line per curve, as a PNG."""
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
    draw.text((left, size[1] - 22), "validation loss (nats/char) against training time", fill="black")
    for (name, curve), colour in zip(curves.items(), colours):
        draw.line([xy(t, v) for t, _, v in curve[1:]], fill=colour, width=2)
        draw.text((right - 200, top + 10 + 15 * list(curves).index(name)), name, fill=colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    atomic_write(path, buffer.getvalue())  # a full disk: one line, no half-written PNG
