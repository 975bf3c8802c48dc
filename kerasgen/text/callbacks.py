"""A callback that shows generated text in TensorBoard each epoch: a sample and its stability."""
import keras
import tensorflow as tf

from kerasgen.text.decoding import COLD_XLA, generate
from kerasgen.text.metrics import text_stability
from kerasgen.text.sampling import DEFAULT_PROMPT, Sampling

STABILITY_SAMPLES = 8  # one batch through the traced loop: cheap next to an epoch
# The figures that move while a model trains (measured on the default GRU: word trigrams of
# 8 × 200 characters never repeat at temperature 0.8, so those stay flat at 1 and 0).
PLOTTED = ("char_repetition", "char_distinct_4", "distinct_1", "self_bleu")


class TextSampleLogger(keras.callbacks.Callback):
    """After each epoch, with the same seed every time so change is visible: the first of a
    batch of samples in the Text tab, the batch's stability figures as `stability/…`
    scalars, and the same figures of as many real validation passages as
    `stability_real_text/…` (flat lines the samples should approach)."""

    def __init__(self, log_dir, length, seed, real_texts=()):
        super().__init__()
        self.log_dir, self.sampling = log_dir, Sampling(max_new_tokens=length, seed=seed)
        self.real = text_stability(real_texts) if real_texts else {}
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        texts = generate(self.model, [DEFAULT_PROMPT] * STABILITY_SAMPLES, self.sampling,
                         jit_compile=COLD_XLA)
        figures = text_stability(texts)
        with self._writer.as_default():
            # Markdown would eat newlines and indentation: show it as a code block.
            tf.summary.text("sample", "```\n" + texts[0] + "\n```", step=epoch)
            for name in PLOTTED:
                tf.summary.scalar(f"stability/{name}", figures[name], step=epoch)
                if self.real:
                    tf.summary.scalar(f"stability_real_text/{name}", self.real[name], step=epoch)
        self._writer.flush()
