"""What the benches share: settings resolved as `train` resolves them, models built through the
trainer, step and token timers, and training runs through the train command itself."""
import dataclasses
import os
import statistics
import subprocess
import sys
import time

from kerasgen.errors import UsageError


def settings(name, overrides, **train_changes):
    """(TrainConfig, Recipe, model class, model flags) of zoo model `name` with `overrides`
    (`--key=value` settings as `train` takes them) on top of its defaults and `train_changes`."""
    import kerasgen.zoo  # noqa: F401  registers the models
    from kerasgen import registry
    from kerasgen.config import TrainConfig, apply_overrides
    from kerasgen.recipes import get_recipe

    cls = registry.get(name)
    base = dataclasses.replace(TrainConfig(**cls.train_defaults), model=name, **train_changes)
    train, recipe_changes, flags = apply_overrides(base, cls, overrides)
    train.check()
    return train, dataclasses.replace(get_recipe(train.recipe), **recipe_changes), cls, flags


def training_model(name, overrides, data_arguments=None, **train_changes):
    """(model, TrainConfig) of zoo model `name`, built and compiled through the trainer as a run
    of these settings would be; `data_arguments`: what the data decides (a vocabulary)."""
    import keras

    from kerasgen import distribute, trainer
    from kerasgen.config import model_arguments

    train, recipe, cls, flags = settings(name, overrides, **train_changes)
    keras.utils.set_random_seed(train.seed)
    kwargs = model_arguments(cls, train, recipe, flags, data=data_arguments)
    with distribute.dtype_policy(train.precision):
        return trainer.training_model(cls, kwargs, train, recipe), train


def family_data(name, overrides, **train_changes):
    """(the model arguments the data decides, TrainingData, TrainConfig) of zoo model `name` on
    its family's data, as a run of these settings would load it."""
    from kerasgen.config import model_arguments

    train, recipe, cls, flags = settings(name, overrides, **train_changes)
    decided, data = cls.family.training_data(cls, train, model_arguments(cls, train, recipe, flags))
    return decided, data, train


def median_step_ms(model, dataset, steps, steps_per_execution):
    """Median ms per training step of a compiled model over `steps` steps of `dataset`, after two
    untimed executions (the first traces and compiles)."""
    import keras

    stamps = []  # the end of each compiled execution (`steps_per_execution` steps)
    timer = keras.callbacks.LambdaCallback(
        on_train_batch_end=lambda batch, logs: stamps.append(time.perf_counter()))
    warmup = 2 * steps_per_execution
    model.fit(dataset, epochs=1, steps_per_epoch=warmup + steps, verbose=0, callbacks=[timer],
              shuffle=False)  # tf.data shuffles
    stamps = stamps[warmup // steps_per_execution - 1:]
    return statistics.median((b - a) * 1000 / steps_per_execution for a, b in zip(stamps, stamps[1:]))


def timed(function):
    """Seconds one call of `function` takes."""
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def tokens_per_second(function, tokens, repeats=3):
    """`tokens` over the best of `repeats` timed calls of `function`, after one untimed call
    (the first traces and compiles)."""
    function()
    return tokens / min(timed(function) for _ in range(repeats))


def train_command(args, out):
    """Runs `python -m kerasgen.train ARGS --out OUT` as a user would; returns its wall seconds,
    from the command to the saved model. A failed run is one UsageError naming its last line."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "kerasgen.train", *args, "--out", out],
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise UsageError(f"{os.path.basename(out)}: the training command failed: "
                         f"{(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return time.perf_counter() - started


def step_ms(name, flags, data, batch_size, steps=40):
    """Median ms per training step of a model on `data` as its family prepares it (a text
    model's tokenizer, an image model's labels), at the model's own XLA and steps a call."""
    decided, prepared, train = family_data(name, flags, data=data, batch_size=batch_size)
    model, train = training_model(name, flags, decided, data=data, batch_size=batch_size,
                                         epochs=10, steps_per_epoch=steps)
    return median_step_ms(model, prepared.train, steps, train.steps_per_execution)


def train_for(minutes, epochs, ms_per_step, command, run):
    """Runs the train command for `minutes` of calibrated training steps into `run`; returns
    (steps per epoch, wall seconds, summary.json)."""
    import shutil

    from kerasgen.rundir import RunDir

    per_epoch = max(20, int(minutes * 60_000 / ms_per_step / epochs) // 20 * 20)
    shutil.rmtree(run, ignore_errors=True)
    wall = train_command([f"--epochs={epochs}", f"--steps_per_epoch={per_epoch}", *command], run)
    return per_epoch, wall, RunDir(run).read_summary()


def epoch_scalars(run, part, tag="epoch_loss"):
    """[(wall time, value)] of a run's per-epoch TensorBoard scalar `tag` in `part` (train,
    validation)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import tensorflow as tf

    events = EventAccumulator(run.log_dir(part), size_guidance={"tensors": 0})
    events.Reload()
    return [(e.wall_time, float(tf.make_ndarray(e.tensor_proto))) for e in events.Tensors(tag)]


def model_flags(overrides):
    """`overrides` as command-line flags."""
    return [f"--{key}={value}" for key, value in overrides.items()]
