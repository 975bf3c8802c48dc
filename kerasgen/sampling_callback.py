"""A callback that writes a generated text sample to TensorBoard's Text tab each epoch."""
import keras
import tensorflow as tf

from kerasgen.generation import Sampling, generate


class TextSampleLogger(keras.callbacks.Callback):
    """Samples `length` characters after each epoch (same seed every time, so change is visible)."""

    def __init__(self, log_dir, length, seed):
        super().__init__()
        self.log_dir, self.length, self.seed = log_dir, length, seed
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        text = generate(self.model, ["\n"], self.length, Sampling(temperature=0.8, seed=self.seed))[0]
        with self._writer.as_default():
            # Markdown would eat newlines and indentation: show it as a code block.
            tf.summary.text("sample", "```\n" + text + "\n```", step=epoch)
        self._writer.flush()
