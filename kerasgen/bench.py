"""python -m kerasgen.bench train|decode|serve|race|scale|images|tokenizers: re-runnable
measurements, side by side.

Timings on a shared machine are noisy, so each figure is a median over many
executions, and comparisons are made inside one run, never across runs.
"""
import dataclasses
import json
import os
import statistics
import sys
import time

from kerasgen.cli import Parser, command, start_tensorflow
from kerasgen.errors import UsageError


def _build(name, overrides, seq_len):
    import kerasgen.zoo  # noqa: F401  registers the models
    from kerasgen import registry
    from kerasgen.config import TrainConfig, apply_overrides, model_defaults

    cls = registry.get(name)
    train, _, kwargs = apply_overrides(TrainConfig(model=name, seq_len=seq_len), cls, overrides)
    if "seq_len" in model_defaults(cls):
        kwargs["seq_len"] = train.seq_len
    return train, cls, kwargs


def train_step_ms(name, overrides, batch_size, seq_len, steps, steps_per_execution, jit_compile,
                  pipeline):
    """Median milliseconds per training step, and the model's parameter count.

    `pipeline` = "text" feeds the real tf.data pipeline (embedded corpus);
    "memory" feeds one fixed batch, so the two show whether input starves the step.
    """
    import keras
    import tensorflow as tf

    from kerasgen.recipes import get_recipe
    from kerasgen.text.data import load_text, text_datasets
    from kerasgen.text.tokenizer import CharVocab

    train, cls, kwargs = _build(name, overrides, seq_len)
    text = load_text(None)
    vocab = CharVocab.from_text(text)
    ds, _ = text_datasets(vocab.encode(text), seq_len, batch_size, train.seed, 1)
    if pipeline == "memory":
        ds = tf.data.Dataset.from_tensors(next(iter(ds))).repeat()
    keras.utils.set_random_seed(0)
    model = cls(**{**kwargs, "vocab_size": vocab.size, "vocabulary": vocab.chars})
    model(model.sample_inputs(1, seq_len))
    model.compile_from_recipe(get_recipe(cls.train_defaults["recipe"]), 10 * steps,
                              jit_compile=jit_compile, steps_per_execution=steps_per_execution)
    return _median_step_ms(model, ds, steps, steps_per_execution), model.count_params()


def _median_step_ms(model, ds, steps, steps_per_execution):
    """Median ms per training step of a compiled model over `steps` steps of `ds`, after two
    untimed executions (the first traces and compiles)."""
    import keras

    stamps = []  # the end of each compiled execution (`steps_per_execution` steps)
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: stamps.append(time.perf_counter()))
    warmup = 2 * steps_per_execution
    model.fit(ds, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[timer])
    stamps = stamps[warmup // steps_per_execution - 1:]
    return statistics.median((b - a) * 1000 / steps_per_execution for a, b in zip(stamps, stamps[1:]))


def _train(args, overrides):
    print(f"{'model':12s} {'params':>9s} {'settings':40s} {'ms/step':>8s} {'steps/s':>8s}")
    settings = [("graph, 1 step/exec", False, 1, "text"),
                ("XLA, 10 steps/exec, memory batch", True, 10, "memory"),
                ("XLA, 10 steps/exec, tf.data", True, 10, "text")]
    for name in args.models:
        for label, jit, spe, pipeline in settings:
            if args.quick and not jit:
                continue
            ms, params = train_step_ms(name, overrides, args.batch_size, args.seq_len, args.steps,
                                       spe, jit, pipeline)
            print(f"{name:12s} {params:9,d} {label:40s} {ms:8.1f} {1000 / ms:8.1f}", flush=True)


def _tokens_per_second(fn, tokens, repeats=3):
    fn()  # trace and compile
    best = min(_timed(fn) for _ in range(repeats))
    return tokens / best


def _timed(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _decode(args, overrides):
    """Cached compiled decode at batch 1 and 8 vs re-running the prefix, same model, one run."""
    import keras
    import numpy as np

    from kerasgen.text.data import load_text
    from kerasgen.text.tokenizer import CharVocab
    from kerasgen.text.decoding import generate_ids, generate_uncached
    from kerasgen.text.sampling import Sampling

    vocab = CharVocab.from_text(load_text(None))
    n = args.max_new_tokens
    sampling = Sampling(max_new_tokens=n, temperature=args.temperature, top_p=args.top_p, seed=0)
    print(f"{'model':12s} {'decoding':44s} {'tokens/s':>9s}")
    for name in args.models:
        _, cls, kwargs = _build(name, overrides, args.seq_len)
        keras.utils.set_random_seed(0)
        model = cls(**{**kwargs, "vocab_size": vocab.size, "vocabulary": vocab.chars})
        model(model.sample_inputs(1))
        rates = {batch: _tokens_per_second(
            lambda b=batch: list(generate_ids(model, ["\n"] * b, sampling)), n * batch)
            for batch in (1, 8)}
        prompt = np.array([vocab.encode("\n")])
        uncached = _tokens_per_second(lambda: generate_uncached(model, prompt, args.uncached_tokens),
                                      args.uncached_tokens, repeats=1)
        print(f"{name:12s} {'uncached: re-run the prefix each token, batch 1':44s} {uncached:9.0f}")
        print(f"{name:12s} {'cached, compiled loop, batch 1':44s} {rates[1]:9.0f}"
              f"   {rates[1] / uncached:.1f}x uncached")
        print(f"{name:12s} {'cached, compiled loop, batch 8':44s} {rates[8]:9.0f}"
              f"   {rates[8] / rates[1]:.1f}x batch 1", flush=True)


def _serve(args, overrides):
    """A run's generate: in-process Keras (XLA loop) vs its exported SavedModel vs the LiteRT step."""
    import tempfile

    import tensorflow as tf

    from kerasgen.export import tflite
    from kerasgen.export.saved_model import export_saved_model
    from kerasgen.rundir import RunDir
    from kerasgen.text.decoding import generate
    from kerasgen.text.sampling import Sampling
    from kerasgen.text.serving import TextServing, tflite_generate

    run = RunDir.find(args.run)
    model, name = run.load_model(), run.read_config()["model_name"]
    n = args.max_new_tokens
    sampling = Sampling(max_new_tokens=n)
    inputs = dict(prompt=tf.constant(["\n"]), max_new_tokens=tf.constant([n]),
                  temperature=tf.constant([sampling.temperature]), top_k=tf.constant([0]),
                  top_p=tf.constant([1.0]), repetition_penalty=tf.constant([1.0]),
                  seed=tf.constant([0]))
    keras_rate = _tokens_per_second(lambda: generate(model, ["\n"], sampling), n)
    served_rates = {}
    for xla in (False, True):
        with tempfile.TemporaryDirectory() as base:
            path = export_saved_model(model, TextServing(model, jit_compile=xla), name, base)
            signature = tf.saved_model.load(path).signatures["generate"]
            served_rates[xla] = _tokens_per_second(lambda: signature(**inputs)["text"].numpy(), n)
    runner = tflite.interpreter(tflite.convert(model.family.tflite_function(model)))
    steps = min(n, model.context_length or n)
    lite_rate = _tokens_per_second(lambda: tflite_generate(runner, model, "\n", steps), steps)
    print(f"{name}: {n} new tokens at batch 1")
    print(f"  in-process Keras decode (XLA loop)               {keras_rate:9.0f} tokens/s  {1000 / keras_rate:7.3f} ms/token")
    for xla, label in ((False, "graph, stock TF Serving"), (True, "export --xla")):
        rate = served_rates[xla]
        print(f"  SavedModel 'generate' ({label:23s}) {rate:9.0f} tokens/s  {1000 / rate:7.3f} ms/token"
              f"   {keras_rate / rate:.2f}x the in-process time")
    print(f"  LiteRT step decoder, Python loop per token       {lite_rate:9.0f} tokens/s  {1000 / lite_rate:7.3f} ms/token")


def _race(args, overrides):
    """Time to nanoGPT's final validation loss: ours against nanoGPT's, on one machine and text."""
    from kerasgen import race, registry
    from kerasgen.config import TrainConfig, apply_overrides
    from kerasgen.recipes import get_recipe
    from kerasgen.text.data import load_text

    import kerasgen.zoo  # noqa: F401  registers the models

    if not 1 <= args.eval_every <= args.steps or args.steps % args.eval_every:
        raise UsageError(f"--steps={args.steps} --eval_every={args.eval_every}: "
                         "expected 1 ≤ eval_every ≤ steps, steps a multiple of eval_every")
    if args.rounds < 1:
        raise UsageError(f"--rounds={args.rounds}: expected ≥ 1")
    if args.out and not (args.out.lower().endswith(".png")
                         and os.access(os.path.dirname(os.path.abspath(args.out)), os.W_OK)):
        raise UsageError(f"--out={args.out}: expected a .png file in a writable folder "
                         "(checked before training, so the curves are not lost at the end)")
    cls = registry.get("transformer")
    # nanoGPT's baby-GPT shape; the batch, steps and peak rate are ours: on 2 cores a batch of
    # 16 costs ~1.2x a step of its 12 here, and at 1.5e-3 with the default recipe reaches its
    # loss within 850 steps (seeds 1337, 1, 2: at 787, 822, 837); 900 leaves a margin.
    base = TrainConfig(**{**cls.train_defaults, "data": args.data, "seq_len": 64, "batch_size": 16,
                          "epochs": args.steps // args.eval_every, "steps_per_epoch": args.eval_every})
    train, recipe_changes, model_kwargs = apply_overrides(base, cls, overrides)
    train.check()
    recipe = dataclasses.replace(get_recipe(train.recipe), **{"learning_rate": 1.5e-3, **recipe_changes})
    text = load_text(args.data)
    if args.nanogpt:
        race.check_nanogpt(args.nanogpt, args.torch_python)
    ratios = []
    for round_ in range(1, args.rounds + 1):
        if args.rounds > 1:
            print(f"round {round_} of {args.rounds}", flush=True)
        curves = _race_round(args, text, train, recipe, model_kwargs)
        if "nanoGPT" in curves:
            ratios.append(_race_report(curves))
    if len(ratios) > 1:  # the machine's speed drifts between runs: each round pairs both sides
        print(f"kerasgen reaches nanoGPT's loss in {statistics.median(ratios):.2f}x its time, "
              f"the median of {len(ratios)} rounds (each: {' '.join(f'{r:.2f}' for r in ratios)})")
    if args.out:
        race.plot(curves, args.out)
        print(f"curves: {args.out}")


def _race_round(args, text, train, recipe, model_kwargs):
    """nanoGPT's curve (when given a checkout) then ours, one after the other."""
    import tempfile

    from kerasgen import race

    curves = {}
    if args.nanogpt:
        print(f"nanoGPT ({args.nanogpt}, {args.torch_python}): {' '.join(race.NANOGPT_ARGS)}", flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            curves["nanoGPT"] = race.nanogpt(text, args.nanogpt, args.torch_python, workdir,
                                             args.eval_every)
    print(f"kerasgen: batch {train.batch_size}, {train.epochs * train.steps_per_epoch} steps, "
          f"{recipe}", flush=True)
    curves["kerasgen"] = race.ours(train, recipe, {**race.BABY_GPT, **model_kwargs}, args.eval_every)
    for name, curve in curves.items():
        print(f"{name:9s} " + "  ".join(f"{t:6.1f}s {v:.3f}" for t, _, v in curve[1:]))
    return curves


def _race_report(curves):
    """Prints when ours reaches nanoGPT's final loss; returns that time over nanoGPT's (or inf)."""
    from kerasgen import race

    target, total = curves["nanoGPT"][-1][2], curves["nanoGPT"][-1][0]
    reached = race.time_to_reach(curves["kerasgen"], target)
    final, seconds = curves["kerasgen"][-1][2], curves["kerasgen"][-1][0]
    print(f"nanoGPT: final validation loss {target:.4f} after {total:.1f} s of training")
    if reached < float("inf"):
        print(f"kerasgen: reaches it after {reached:.1f} s = {reached / total:.2f}x nanoGPT's time "
              f"(final loss {final:.4f} after {seconds:.1f} s)")
    else:
        print(f"kerasgen: does not reach it (final loss {final:.4f} after {seconds:.1f} s = "
              f"{seconds / total:.2f}x nanoGPT's time); try more --steps")
    return reached / total


def _epoch_end_times(run):
    """Wall times at which the run's training epochs ended, from its TensorBoard log."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(os.path.join(run, "logs", "train"), size_guidance={"tensors": 0})
    events.Reload()
    return [e.wall_time for e in events.Tensors("epoch_loss")]


def _scale(args, overrides):
    """Training steps/s and examples/s of one worker and of N on this host, side by side: the
    same `python -m kerasgen.train` command, its global batch split over the workers."""
    import subprocess
    import tempfile

    from kerasgen.distribute import local_cluster

    if args.epochs < 2 or args.steps < 1 or args.workers < 2:
        raise UsageError("expected --epochs ≥ 2, --steps ≥ 1 and --workers ≥ 2")
    command = [sys.executable, "-m", "kerasgen.train", f"--model={args.model}",
               f"--epochs={args.epochs}", f"--steps_per_epoch={args.steps}", "--validation_steps=1",
               "--sample_chars=8", *(f"--{k}={v}" for k, v in overrides.items())]
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
            ends = _epoch_end_times(out)
            with open(os.path.join(out, "config.json")) as f:
                batch = json.load(f)["train"]["batch_size"]
            steps_per_s = (len(ends) - 1) * args.steps / (ends[-1] - ends[0])
            rows.append((label, steps_per_s, steps_per_s * batch))
            print(f"  {label:58s} {steps_per_s:7.1f} steps/s  {steps_per_s * batch:8.0f} examples/s"
                  f"  {steps_per_s / rows[0][1]:.2f}x", flush=True)
    return rows


def _image_spec(spec):
    """'conv:num_classes=0,filters=32' → ('conv', {'num_classes': '0', 'filters': '32'})."""
    name, _, settings = spec.partition(":")
    pairs = [item.partition("=") for item in settings.split(",") if item]
    if any(not eq for _, eq, _ in pairs):
        raise UsageError(f"--models {spec}: expected NAME or NAME:key=value,key=value")
    return name, {key: value for key, _, value in pairs}


def family_step_ms(name, overrides, data, batch_size, steps=40):
    """Median ms per training step of a model on `data` as its family prepares it (a text
    model's tokenizer, an image model's labels), at the model's own defaults for XLA and
    steps per execution."""
    import keras

    from kerasgen.recipes import get_recipe

    train, cls, kwargs = _build(name, overrides, 64)
    train = dataclasses.replace(train, data=data, batch_size=batch_size,
                                **{k: v for k, v in cls.train_defaults.items()
                                   if k == "steps_per_execution"})
    kwargs, prepared = cls.family.training_data(cls, train, kwargs)
    keras.utils.set_random_seed(0)
    model = cls(**kwargs)
    model(model.sample_inputs(1))
    model.compile_from_recipe(get_recipe(cls.train_defaults["recipe"]), 10 * steps,
                              jit_compile=True, steps_per_execution=train.steps_per_execution)
    return _median_step_ms(model, prepared.train, steps, train.steps_per_execution)


def _train_for(minutes, epochs, ms_per_step, command, run):
    """Runs the train CLI `command` for `minutes` of calibrated training steps into `run`;
    returns (steps per epoch, wall seconds, summary.json)."""
    import shutil
    import subprocess

    per_epoch = max(20, int(minutes * 60_000 / ms_per_step / epochs) // 20 * 20)
    shutil.rmtree(run, ignore_errors=True)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kerasgen.train", f"--epochs={epochs}",
                           f"--steps_per_epoch={per_epoch}", *command, "--out", run],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    if done.returncode:
        raise UsageError(f"{os.path.basename(run)}: the training command failed: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    with open(os.path.join(run, "summary.json")) as f:
        return per_epoch, wall, json.load(f)


def _images(args, overrides):
    """Each image model trained for the same CPU time on the same data, then judged alike: the
    steps of each run are its calibrated steps/s times the budget."""
    import tempfile

    if args.minutes <= 0 or args.epochs < 1:
        raise UsageError("expected --minutes > 0 and --epochs ≥ 1")
    specs = [_image_spec(spec) for spec in args.models]
    for name, settings in specs:  # every name and setting checked before anything trains
        _build(name, {**overrides, **settings}, 64)
    out = args.out or tempfile.mkdtemp(prefix="kerasgen-bench-images-")
    os.makedirs(out, exist_ok=True)
    rows = []
    header = (f"{'model':28s} {'batch':>5s} {'steps':>6s} {'train s':>8s} {'wall s':>7s} {'FD':>7s} {'conf':>6s} "
              f"{'entropy':>8s} {'label':>6s}")
    print(f"image models, {args.minutes:g} min of training steps each, {args.image_size}x"
          f"{args.image_size}x{args.channels}, data: {args.data or 'digits'}\n{header}", flush=True)
    for spec, (name, settings) in zip(args.models, specs):
        flags = {**overrides, **settings, "image_size": str(args.image_size),
                 "channels": str(args.channels)}
        batch_size = args.batch_size or _build(name, flags, 64)[1].train_defaults["batch_size"]
        ms = family_step_ms(name, flags, args.data, batch_size)
        run = os.path.join(out, spec.replace(":", "_").replace(",", "_").replace("=", "-"))
        command = [f"--model={name}", f"--batch_size={batch_size}",
                   *(["--data", args.data] if args.data else []),
                   *(f"--{k}={v}" for k, v in flags.items())]
        per_epoch, wall, summary = _train_for(args.minutes, args.epochs, ms, command, run)
        label = summary.get("label_accuracy")
        rows.append({"model": spec, "batch_size": batch_size, "steps": per_epoch * args.epochs, "train_s": ms * per_epoch *
                     args.epochs / 1000, "wall_s": wall, **{k: summary.get(k) for k in (
                         "fid", "confidence", "class_entropy", "label_accuracy")}, "run": run})
        print(f"{spec:28s} {batch_size:5d} {per_epoch * args.epochs:6d} {rows[-1]['train_s']:8.0f} {wall:7.0f} "
              f"{summary['fid']:7.2f} {summary['confidence']:6.1%} {summary['class_entropy']:8.2f} "
              f"{'' if label is None else f'{label:.1%}':>6s}", flush=True)
    print(f"runs (samples.png in each): {out}")
    with open(os.path.join(out, "images.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows


def _tokenizers(args, overrides):
    """Each text model with each tokenizer, trained for the same time on the same text: bits per
    byte of the validation split, generation speed in tokens and characters, and a sample."""
    import tempfile

    import numpy as np

    from kerasgen.rundir import RunDir
    from kerasgen.text import run_validation_scores
    from kerasgen.text.decoding import generate_ids
    from kerasgen.text.sampling import Sampling

    if args.minutes <= 0 or args.epochs < 1 or args.max_new_tokens < 1:
        raise UsageError("expected --minutes > 0, --epochs ≥ 1 and --max_new_tokens ≥ 1")
    settings = {"char": {}, "bpe": {"tokenizer": "bpe", "vocab_size": str(args.vocab_size)}}
    for name in args.models:  # every name and setting checked before anything trains
        for flags in settings.values():
            train, cls, _ = _build(name, {**overrides, **flags}, 64)
            train.check()
            if cls.family.name != "text":
                raise UsageError(f"--models {name}: not a text model")
    out = args.out or tempfile.mkdtemp(prefix="kerasgen-bench-tokenizers-")
    os.makedirs(out, exist_ok=True)
    print(f"text models, {args.minutes:g} min of training steps each, data: {args.data or 'pydoc'}\n"
          f"validation bits per byte of the final model and of the best epoch's\n"
          f"{'model':12s} {'tokenizer':10s} {'steps':>6s} {'wall s':>7s} {'final bpb':>10s} {'best bpb':>9s} "
          f"{'tokens/s':>9s} {'chars/s':>9s} {'chars/token':>11s}", flush=True)
    rows = []
    for name in args.models:
        for tokenizer, flags in settings.items():
            flags = {**overrides, **flags}
            batch_size = _build(name, flags, 64)[1].train_defaults.get("batch_size", 32)
            ms = family_step_ms(name, flags, args.data, batch_size)
            run = os.path.join(out, f"{name}-{tokenizer}")
            command = [f"--model={name}", *(["--data", args.data] if args.data else []),
                       *(f"--{k}={v}" for k, v in flags.items())]
            per_epoch, wall, summary = _train_for(args.minutes, args.epochs, ms, command, run)
            best = run_validation_scores(RunDir(run).load_model("best"), RunDir(run).train_config())
            model = RunDir(run).load_model()
            sampling = Sampling(max_new_tokens=args.max_new_tokens, seed=0)

            def decode():
                return np.concatenate(list(generate_ids(model, ["\n"], sampling)), axis=1)[0]

            ids = decode()
            tokens_per_s = _tokens_per_second(decode, len(ids))
            text = model.text_tokenizer.decode(ids)
            rows.append({"model": name, "tokenizer": tokenizer, "steps": per_epoch * args.epochs,
                         "wall_s": wall, "bits_per_byte": summary["bits_per_byte"],
                         "best_bits_per_byte": best["bits_per_byte"],
                         "tokens_per_s": tokens_per_s,
                         "chars_per_s": tokens_per_s * len(text) / len(ids),
                         "sample": text[:args.sample_chars], "run": run})
            row = rows[-1]
            print(f"{name:12s} {tokenizer:10s} {row['steps']:6d} {wall:7.0f} {row['bits_per_byte']:10.3f} "
                  f"{row['best_bits_per_byte']:9.3f} {row['tokens_per_s']:9.0f} {row['chars_per_s']:9.0f} "
                  f"{len(text) / len(ids):11.2f}", flush=True)
    for row in rows:
        print(f"\n--- {row['model']}, {row['tokenizer']} ---\n{row['sample']}")
    with open(os.path.join(out, "tokenizers.json"), "w") as f:
        json.dump(rows, f, indent=1, ensure_ascii=False)
    print(f"\nruns: {out}")
    return rows


@command("kerasgen.bench")
def main(argv):
    p = Parser(
        prog="python -m kerasgen.bench",
        description="Speed benchmarks, measured side by side in one run (compare rows, not runs). "
                    "Extra --key=value flags set model hyperparameters.")
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("train", help="ms per training step: graph vs XLA, tf.data vs a batch in memory")
    t.add_argument("--models", nargs="+", default=["gru", "transformer"])
    t.add_argument("--batch_size", type=int, default=12)
    t.add_argument("--seq_len", type=int, default=64)
    t.add_argument("--steps", type=int, default=200, help="timed steps per setting")
    t.add_argument("--quick", action="store_true", help="skip the slow graph-mode baseline")
    d = sub.add_parser("decode", help="generation tokens per second, cached vs uncached")
    d.add_argument("--models", nargs="+", default=["transformer", "gru"])
    d.add_argument("--seq_len", type=int, default=64, help="the Transformer's context")
    d.add_argument("--max_new_tokens", type=int, default=500)
    d.add_argument("--uncached_tokens", type=int, default=200)
    d.add_argument("--temperature", type=float, default=1.0)
    d.add_argument("--top_p", type=float, default=1.0)
    v = sub.add_parser("serve", help="a run's generate: in-process vs SavedModel vs LiteRT")
    v.add_argument("--run", required=True, metavar="DIR")
    v.add_argument("--max_new_tokens", type=int, default=200)
    r = sub.add_parser("race", help="time to quality: the baby GPT against nanoGPT's, side by side")
    r.add_argument("--data", metavar="FILE",
                   help="a UTF-8 text, the last 10%% validating (default: the embedded help text)")
    r.add_argument("--steps", type=int, default=900,
                   help="our training steps (default 900 at batch 16; nanoGPT's run is its 2000 at 12)")
    r.add_argument("--eval_every", type=int, default=100, help="steps between validations")
    r.add_argument("--nanogpt", metavar="DIR", help="a checkout of karpathy/nanoGPT (optional)")
    r.add_argument("--torch_python", default="python", metavar="PATH",
                   help="a Python with torch, to run nanoGPT (default: python)")
    r.add_argument("--rounds", type=int, default=1,
                   help="run both sides this many times, alternately, and report the median ratio")
    r.add_argument("--out", metavar="FILE.png",
                   help="where to draw the loss-vs-time curves (of the last round)")
    s = sub.add_parser("scale", help="training steps/s: one worker against several on this host")
    s.add_argument("--model", default="gru")
    s.add_argument("--workers", type=int, default=2)
    s.add_argument("--batch_size", type=int, help="the global batch (default: the model's)")
    s.add_argument("--epochs", type=int, default=3, help="the first one warms up, untimed")
    s.add_argument("--steps", type=int, default=100, help="training steps per epoch")
    i = sub.add_parser("images", help="image models at equal training time: Fréchet distance, "
                                      "confidence, class entropy, requested-class accuracy")
    i.add_argument("--models", nargs="+",
                   default=["dense", "conv:num_classes=0", "vae", "diffusion:num_classes=0", "conv",
                            "diffusion"],
                   help="NAME or NAME:key=value,… (num_classes=0: unconditional on labelled data)")
    i.add_argument("--minutes", type=float, default=4.0, help="training-step time per model")
    i.add_argument("--epochs", type=int, default=5, help="per run (each ends with a judged sample)")
    i.add_argument("--image_size", type=int, default=28)
    i.add_argument("--channels", type=int, default=1)
    i.add_argument("--batch_size", type=int, help="(default: each model's own)")
    i.add_argument("--data", help="image data as the train CLI takes it (default: the embedded digits)")
    i.add_argument("--out", metavar="DIR", help="where the runs go (default: a new temporary folder)")
    k = sub.add_parser("tokenizers", help="char vs byte-level BPE at equal training time: bits per "
                                          "byte, generation tokens/s and characters/s, samples")
    k.add_argument("--models", nargs="+", default=["transformer", "gru"])
    k.add_argument("--minutes", type=float, default=4.0, help="training-step time per run")
    k.add_argument("--epochs", type=int, default=4)
    k.add_argument("--vocab_size", type=int, default=1024, help="the BPE vocabulary")
    k.add_argument("--max_new_tokens", type=int, default=400, help="tokens generated per timing")
    k.add_argument("--sample_chars", type=int, default=300, help="characters of each sample shown")
    k.add_argument("--data", help="text as the train CLI takes it (default: the embedded help text)")
    k.add_argument("--out", metavar="DIR", help="where the runs go (default: a new temporary folder)")
    args, rest = p.parse_known_args(argv)
    overrides = {}
    for item in rest:
        key, eq, value = item.lstrip("-").partition("=")
        if not item.startswith("--") or not eq:
            raise UsageError(f"unexpected argument {item!r}; model hyperparameters look like --key=value")
        overrides[key] = value
    start_tensorflow()
    {"train": _train, "decode": _decode, "serve": _serve, "race": _race,
     "scale": _scale, "images": _images, "tokenizers": _tokenizers}[args.what](args, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
