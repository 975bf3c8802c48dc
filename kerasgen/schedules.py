"""Learning-rate schedules Keras does not ship."""
import keras
from keras import ops


@keras.saving.register_keras_serializable(package="kerasgen")
class WarmupStableDecay(keras.optimizers.schedules.LearningRateSchedule):
    """Warmup-stable-decay: a linear warmup to `peak`, `peak` held, then a linear decay to
    `min_ratio` × peak over the last `decay_steps` of `total_steps`.

    Holding the peak rate keeps a small Transformer learning fastest through its
    early plateau; the short final decay then takes most of the loss a cosine
    schedule would take over the whole run.
    """

    def __init__(self, peak, warmup_steps, decay_steps, total_steps, min_ratio):
        self.peak, self.warmup_steps, self.decay_steps = peak, warmup_steps, decay_steps
        self.total_steps, self.min_ratio = total_steps, min_ratio

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = self.peak * (step + 1.0) / (self.warmup_steps + 1.0)
        decay_start = float(self.total_steps - self.decay_steps)
        left = ops.clip((self.total_steps - step) / float(self.decay_steps), 0.0, 1.0)
        decay = self.peak * (self.min_ratio + (1.0 - self.min_ratio) * left)
        return ops.where(step < self.warmup_steps, warmup,
                         ops.where(step < decay_start, self.peak, decay))

    def get_config(self):
        return {"peak": self.peak, "warmup_steps": self.warmup_steps,
                "decay_steps": self.decay_steps, "total_steps": self.total_steps,
                "min_ratio": self.min_ratio}
