"""Training a zoo model into a run directory: the recipe's callbacks, resumable backups, fit, save.

`train_run` is the whole job of `python -m kerasgen.train` once its settings
are resolved; the model's family supplies the data, its callbacks and the
summary, so nothing here knows what kind of model it trains.
"""
import dataclasses
import glob
import json
import math
import os
import shutil
import sys
import time
import warnings

import keras
import numpy as np
import tensorflow as tf

import kerasgen

from kerasgen.errors import ConfigError, RunError
from kerasgen.rundir import atomic_save_model, atomic_write

class TrainingDiverged(Exception):
    """A loss or weight became NaN or infinite: training stops, the last good backup is kept."""


class Backup(keras.callbacks.Callback):
    """Everything needed to continue a run exactly, after each epoch: weights and optimizer
    state, the random generators' states and the state of the callbacks that have one
    (`resumable_state()` / `restore_state()`). It must come after those callbacks, so that
    it saves their state after the epoch and restores it after their own on_train_begin.

    Written atomically: the weights go to a new file, then state.json (naming that
    file) is replaced, so a kill at any moment leaves the previous epoch intact. The
    backup is not removed here: the trainer removes it once the final model is safe.
    """

    def __init__(self, run, callbacks=(), restore_from=None):
        super().__init__()
        self.run, self.stateful = run, [c for c in callbacks if hasattr(c, "resumable_state")]
        self.restore_from = restore_from or run  # another worker's, in a multi-worker run

    def _random_states(self):
        return [v for v in self.model.variables if "seed_generator_state" in v.path]

    def on_train_begin(self, logs=None):
        state = self.restore_from.backup_state()
        if state is None:
            return
        if self.model.optimizer is not None and not self.model.optimizer.built:
            self.model.optimizer.build(self.model.trainable_variables)
        weights = os.path.join(self.restore_from.backup_dir, state["weights"])
        try:
            with warnings.catch_warnings():
                # Keras only warns when it skips a variable; a partial restore is not a resume.
                warnings.simplefilter("error", UserWarning)
                self.model.load_weights(weights)
        except Exception as e:  # h5py and Keras raise many kinds; all mean "unusable"
            raise RunError(f"{weights} cannot be loaded ({str(e).splitlines()[0]}); delete "
                           f"{self.restore_from.backup_dir} to restart the run") from None
        try:
            for variable, value in zip(self._random_states(), state["random"], strict=True):
                variable.assign(np.asarray(value, variable.dtype).reshape(variable.shape))
            for callback, saved in zip(self.stateful, state["callbacks"], strict=True):
                callback.restore_state(saved)
        except (ValueError, TypeError, KeyError) as e:
            raise RunError(f"{self.restore_from.backup_state_path} is corrupted ({e}); delete "
                           f"{self.restore_from.backup_dir} to restart the run") from None
        self.model._initial_epoch = state["epoch"]

    def on_epoch_end(self, epoch, logs=None):
        os.makedirs(self.run.backup_dir, exist_ok=True)
        name = f"epoch-{epoch + 1}.weights.h5"
        try:
            self.model.save_weights(os.path.join(self.run.backup_dir, name))
        except OSError as e:
            raise RunError(f"cannot write the backup in {self.run.backup_dir}: {e.strerror or e}") from None
        state = {"epoch": epoch + 1, "weights": name,
                 "random": [np.asarray(v).tolist() for v in self._random_states()],
                 "callbacks": [c.resumable_state() for c in self.stateful]}
        atomic_write(self.run.backup_state_path, json.dumps(state))
        for old in glob.glob(os.path.join(self.run.backup_dir, "epoch-*.weights.h5")):
            if os.path.basename(old) != name:
                os.remove(old)


class BestCheckpoint(keras.callbacks.Callback):
    """Saves the model atomically whenever `monitor` improves (lower is better), or every
    epoch when there is nothing to monitor. The best value survives a resume, so the
    checkpoint only ever improves."""

    def __init__(self, path, monitor):
        super().__init__()
        self.path, self.monitor, self.best = path, monitor, math.inf

    def on_epoch_end(self, epoch, logs=None):
        value = (logs or {}).get(self.monitor) if self.monitor else None
        if self.monitor and (value is None or not value < self.best):
            return
        if value is not None:
            self.best = float(value)
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        atomic_save_model(self.model, self.path)

    def resumable_state(self):
        return {"best": self.best}

    def restore_state(self, state):
        self.best = float(state["best"])


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """EarlyStopping whose patience count and best value survive a resume."""

    def resumable_state(self):
        return {"wait": self.wait, "best": None if self.best is None else float(self.best)}

    def restore_state(self, state):
        self.wait, self.best = int(state["wait"]), None if state["best"] is None else float(state["best"])


class StopOnNonFinite(keras.callbacks.Callback):
    """Stops training when any reported loss or metric (not only `loss`: GANs report g_loss and
    d_loss) or, at an epoch's end, any weight is NaN or infinite."""

    def __init__(self):
        super().__init__()
        self.epoch = 0

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        for name, value in (logs or {}).items():
            if not np.all(np.isfinite(value)):
                raise TrainingDiverged(f"{name} became {float(np.asarray(value).ravel()[0])} at epoch "
                                       f"{self.epoch + 1}, batch {batch + 1}")

    def on_epoch_end(self, epoch, logs=None):
        for variable in self.model.weights:
            if not np.all(np.isfinite(variable)):
                raise TrainingDiverged(f"weight {variable.path} became non-finite in epoch {epoch + 1}")


class StepCurves(keras.callbacks.Callback):
    """Every `every` training steps, the mean of each loss the model reports over those steps
    (`loss`, or a GAN's `g_loss` and `d_loss`) and the learning rate, as `steps/…` scalars at
    the run's global step: a curve, not a point an epoch, continued by a resumed run. Keras'
    logs hold each loss's running mean over the epoch, so the mean of the last steps is the
    difference of two running sums (exact: the batches are of one size)."""

    def __init__(self, log_dir, every, steps_per_epoch):
        super().__init__()
        self.log_dir, self.every, self.steps_per_epoch = log_dir, every, steps_per_epoch
        self._writer = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch, self.written = epoch, (0, {})  # steps of the epoch and the losses' sums then

    def on_train_batch_end(self, batch, logs=None):
        steps, (before, sums_before) = batch + 1, self.written
        first = self.epoch * self.steps_per_epoch
        if (first + steps) // self.every == (first + before) // self.every:
            return
        sums = {name: float(np.mean(value)) * steps for name, value in (logs or {}).items()
                if name.endswith("loss")}
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        with self._writer.as_default(step=first + steps):
            for name, total in sums.items():
                tf.summary.scalar(f"steps/{name}", (total - sums_before.get(name, 0.0)) / (steps - before))
            rate = getattr(self.model.optimizer, "learning_rate", None)
            if rate is not None:
                tf.summary.scalar("steps/learning_rate", float(np.asarray(rate)))
        self.written = (steps, sums)

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is not None:
            self._writer.flush()

    def on_train_end(self, logs=None):
        if self._writer is not None:
            self._writer.close()


class Clock(keras.callbacks.Callback):
    """Where the user's wall time goes, from the process' start (kerasgen's import) to the saved
    model: start-up (to the end of the first training execution: imports, data, model, tracing
    and compilation), training, validation, and what runs between epochs (samples, checkpoints,
    backups). First among the callbacks, so the between-epochs time counts the others'."""

    def __init__(self):
        super().__init__()
        self.times = dict(startup_s=None, train_s=0.0, validation_s=0.0, between_epochs_s=0.0,
                          save_and_scores_s=0.0)
        self._mark = None

    def _lap(self, key):
        now = time.monotonic()
        if self._mark is not None:
            self.times[key] += now - self._mark
        self._mark = now

    def on_epoch_begin(self, epoch, logs=None):
        self._lap("between_epochs_s")

    def on_train_batch_end(self, batch, logs=None):
        if self.times["startup_s"] is None:
            self.times["startup_s"] = time.monotonic() - kerasgen.STARTED
            self._mark = time.monotonic()

    def on_test_begin(self, logs=None):
        self._lap("train_s")

    def on_test_end(self, logs=None):
        self._lap("validation_s")

    def on_epoch_end(self, epoch, logs=None):
        self._lap("train_s")  # the epoch's steps, when it has no validation

    def on_train_end(self, logs=None):
        self._lap("between_epochs_s")

    def summary(self):
        """The timings in seconds, the final save and scores and the whole run included."""
        self._lap("save_and_scores_s")
        return {**{k: round(v, 2) for k, v in self.times.items() if v is not None},
                "total_s": round(time.monotonic() - kerasgen.STARTED, 2)}


def training_model(cls, model_kwargs, train, recipe, strategy=None, pretrained=None):
    """The model of `cls`, built under `strategy` (default: none), given the weights of the
    `pretrained` model with `train.freeze_layers` fixed, and compiled with the recipe for
    `train`'s steps: what every training and every training benchmark starts from."""
    import tensorflow as tf

    from kerasgen import distribute

    strategy = strategy or tf.distribute.get_strategy()
    with strategy.scope():
        try:
            model = cls(**model_kwargs)
        except (ValueError, TypeError) as e:  # hyperparameters that do not fit together
            raise ConfigError(str(e)) from None
        model(model.sample_inputs(1))
        if pretrained is not None:
            model.set_weights(pretrained.get_weights())
        model.freeze_lower(train.freeze_layers)
        model.compile_from_recipe(recipe, train.epochs * train.steps_per_epoch,
                                  **distribute.step_options(train))
    return model


def train_run(model, data, train, recipe, run, restore_from=None):
    """Fits `model` into `run`, continuing the backup of `restore_from` (default: `run`) if
    there is one, and writes the final model, the summary and the family's files.
    Returns (summary, report lines)."""
    family = model.family
    stateful = [BestCheckpoint(run.checkpoint_path("best"), data.monitor)]
    if data.monitor:
        stateful.append(ResumableEarlyStopping(monitor=data.monitor, mode="min",
                                               patience=recipe.patience))
    clock = Clock()
    callbacks = [
        clock,
        StopOnNonFinite(),  # first: a non-finite epoch is never checkpointed or backed up
        # The family's callbacks add their scores to the epoch's logs before these read them.
        *family.callbacks(model, data, train, run),
        *stateful,
        *([StepCurves(run.log_dir("train_steps"), train.log_every, train.steps_per_epoch)]
          if train.log_every else []),
        # Before the backup: an epoch the backup counts as finished is always in the logs.
        tensorboard := keras.callbacks.TensorBoard(run.logs_dir),
        Backup(run, stateful, restore_from),
    ]
    try:
        history = model.fit(data.training_input(model.distribute_strategy), epochs=train.epochs, steps_per_epoch=train.steps_per_epoch,
                            validation_data=data.validation, callbacks=callbacks,
                            shuffle=False,  # tf.data shuffles
                            verbose="auto" if sys.stdout.isatty() else 2)  # a log: a line an epoch
    except KeyboardInterrupt:
        # Keras writes the finished epochs' scalars to disk only when its writers close, which
        # fit() does not do when interrupted: close them here, so that no logged epoch is lost.
        tensorboard.on_train_end()
        raise
    atomic_save_model(model, run.checkpoint_path("final"))
    last = {key: values[-1] for key, values in history.history.items()} if history.epoch else None
    summary, report = family.summarize(model, data, train, run, last)
    summary["timings"] = timings = clock.summary()
    report.append(_timings_line(timings))
    run.write_summary(summary)  # its presence marks the run finished …
    shutil.rmtree(run.backup_dir, ignore_errors=True)  # … so the backup is no longer needed
    return summary, report


def _timings_line(t):
    epochs = t["train_s"] + t["validation_s"] + t["between_epochs_s"]
    return (f"time: {t['total_s']:.1f} s in all: {t.get('startup_s', 0):.1f} s to the first steps "
            f"(start-up, tracing, compilation), {t['train_s']:.1f} s training, {t['validation_s']:.1f} s "
            f"validation ({t['validation_s'] / max(epochs, 1e-9):.0%} of the epochs), "
            f"{t['between_epochs_s']:.1f} s samples and checkpoints, {t['save_and_scores_s']:.1f} s "
            f"final save and scores")


def run_config(cls, model, train, recipe):
    """What config.json records: enough to resume, evaluate or export the run from it alone."""
    return {"model_name": cls.zoo_name, "family": cls.family.name, "train": dataclasses.asdict(train),
            "recipe": dataclasses.asdict(recipe), "model": model.get_config()}
