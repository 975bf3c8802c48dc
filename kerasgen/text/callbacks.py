"""A callback that shows generated text in TensorBoard each epoch: a sample and its stability."""
import keras
import tensorflow as tf

from kerasgen.text.decoding import generate
from kerasgen.text.metrics import text_stability
from kerasgen.text.sampling import DEFAULT_PROMPT, Sampling

STABILITY_SAMPLES = 8  # one batch through the compiled loop: cheap next to an epoch


class TextSampleLogger(keras.callbacks.Callback):
    """After each epoch, with the same seed every time so change is visible: the first of a
    batch of samples in the Text tab, and the batch's stability figures as `stability/…`
    scalars next to it."""

    def __init__(self, log_dir, length, seed):
        super().__init__()
        self.log_dir, self.sampling = log_dir, Sampling(max_new_tokens=length, seed=seed)
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        texts = generate(self.model, [DEFAULT_PROMPT] * STABILITY_SAMPLES, self.sampling)
        with self._writer.as_default():
            # Markdown would eat newlines and indentation: show it as a code block.
            tf.summary.text("sample", "```\n" + texts[0] + "\n```", step=epoch)
            for name, value in text_stability(texts).items():
                tf.summary.scalar(f"stability/{name}", value, step=epoch)
        self._writer.flush()
