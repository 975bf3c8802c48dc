"""Shared training recipes: the optimizer, schedule, clipping, regularization and callbacks of every model."""
import dataclasses
import json
import os

import keras


@dataclasses.dataclass(frozen=True)
class Recipe:
    """How to optimize: one place for the knobs users turn to make training stable."""

    learning_rate: float = 1e-3  # peak rate, reached after warmup
    warmup_fraction: float = 0.05  # share of all steps spent warming up linearly
    min_lr_ratio: float = 0.1  # cosine decays to this share of the peak (as nanoGPT)
    weight_decay: float = 0.1  # AdamW decoupled decay; not on biases and norms
    clipnorm: float = 1.0  # global gradient-norm clipping
    beta_1: float = 0.9
    beta_2: float = 0.99  # nanoGPT's choice for small character models
    dropout: float = 0.0  # applied to models that take `dropout`, unless set by flag
    patience: int = 5  # EarlyStopping epochs without a better validation loss


RECIPES = {
    "default": Recipe(),
    # Lower rate, tighter clipping, more regularization: the fixes users reach for first.
    "stable": Recipe(learning_rate=3e-4, warmup_fraction=0.1, clipnorm=0.5,
                     weight_decay=0.2, dropout=0.1, patience=3),
    # A pretrained model: a small rate and a short warmup so it is not knocked off its minimum.
    "finetune": Recipe(learning_rate=1e-4, warmup_fraction=0.02, min_lr_ratio=0.5,
                       weight_decay=0.01, patience=3),
    # GANs: DCGAN's Adam(2e-4, beta_1=0.5), no decay toward zero, a loose clip.
    "gan": Recipe(learning_rate=2e-4, warmup_fraction=0.0, min_lr_ratio=0.5, weight_decay=0.0,
                  clipnorm=10.0, beta_1=0.5, beta_2=0.999, patience=10),
}


def get_recipe(name):
    if name not in RECIPES:
        raise KeyError(f"unknown recipe {name!r}; known recipes: {', '.join(RECIPES)}")
    return RECIPES[name]


def make_optimizer(recipe, total_steps, learning_rate=None):
    """AdamW with linear warmup, cosine decay and global-norm clipping."""
    peak = learning_rate or recipe.learning_rate
    warmup = max(1, int(total_steps * recipe.warmup_fraction))
    schedule = keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=0.0, warmup_target=peak, warmup_steps=warmup,
        decay_steps=max(1, total_steps - warmup), alpha=recipe.min_lr_ratio)
    optimizer = keras.optimizers.AdamW(learning_rate=schedule, weight_decay=recipe.weight_decay,
                                       beta_1=recipe.beta_1, beta_2=recipe.beta_2,
                                       global_clipnorm=recipe.clipnorm)
    optimizer.exclude_from_weight_decay(var_names=["bias", "gamma", "beta"])
    return optimizer


def compile_model(model, recipe, total_steps, learning_rate=None, jit_compile=True,
                  steps_per_execution=1):
    """Compiles with the recipe's optimizer; the model's own compile() fills in loss and metrics."""
    model.compile(optimizer=make_optimizer(recipe, total_steps, learning_rate),
                  jit_compile=jit_compile, steps_per_execution=steps_per_execution)


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """BackupAndRestore whose files are replaced atomically.

    Keras overwrites the backup in place, so a SIGKILL during the write leaves
    a corrupt file and --resume fails; here a kill keeps the previous backup.
    """

    def _save_model(self):
        os.makedirs(self.backup_dir, exist_ok=True)
        weights_tmp = self._weights_path.replace(".weights.h5", ".tmp.weights.h5")
        self.model.save_weights(weights_tmp, overwrite=True)
        with open(self._training_metadata_path + ".tmp", "w") as f:
            json.dump({"epoch": self._current_epoch, "batch": self._last_batch_seen}, f)
        # Weights first: a kill between the two renames repeats an epoch, never loses one.
        os.replace(weights_tmp, self._weights_path)
        os.replace(self._training_metadata_path + ".tmp", self._training_metadata_path)


def callbacks(run_dir, recipe, monitor="val_loss", first=()):
    """Resumable backup, NaN guard, best checkpoint, early stopping and TensorBoard.

    `first` run before the checkpoint, so metrics they add to the epoch's logs
    (a sample-quality score) can be `monitor`ed (lower is better) and plotted. With monitor=None
    every epoch is checkpointed and nothing stops early.
    """
    checkpoint = os.path.join(run_dir, "checkpoints", "best.keras")
    return [
        AtomicBackupAndRestore(os.path.join(run_dir, "backup")),
        # raise_error: stop with an error so the last good backup is kept for --resume.
        keras.callbacks.TerminateOnNaN(raise_error=True),
        *first,
        keras.callbacks.ModelCheckpoint(checkpoint, monitor=monitor or "loss", mode="min",
                                        save_best_only=monitor is not None),
        *([keras.callbacks.EarlyStopping(monitor=monitor, mode="min", patience=recipe.patience,
                                                restore_best_weights=True)]
          if monitor else []),
        keras.callbacks.TensorBoard(os.path.join(run_dir, "logs")),
    ]
