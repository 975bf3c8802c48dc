"""A callback that shows generated text in TensorBoard each epoch: samples and their stability."""
import keras
import tensorflow as tf

from kerasgen.data import CharVocab
from kerasgen.generation import Sampling, generate
from kerasgen.metrics import text_stability

STABILITY_SAMPLES = 4  # one batch through the compiled loop: cheap next to an epoch


class TextSampleLogger(keras.callbacks.Callback):
    """After each epoch, with the same seed every time so change is visible: the first of a
    batch of samples in the Text tab, and the batch's repetition rate, distinct-1/2/3 and
    self-BLEU as scalars (`stability/…`) next to it. The prompt falls back to a new line
    when the corpus lacks its characters."""

    def __init__(self, log_dir, length, seed, prompt="The "):
        super().__init__()
        self.log_dir, self.length, self.seed, self.prompt = log_dir, length, seed, prompt
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(self.log_dir)
        prompt = "\n" if CharVocab(self.model.vocabulary).unknown(self.prompt) else self.prompt
        texts = generate(self.model, [prompt] * STABILITY_SAMPLES, self.length,
                         Sampling(temperature=0.8, seed=self.seed))
        with self._writer.as_default():
            # Markdown would eat newlines and indentation: show it as a code block.
            tf.summary.text("sample", "```\n" + prompt + texts[0] + "\n```", step=epoch)
            for name, value in text_stability(texts).items():
                tf.summary.scalar(f"stability/{name}", value, step=epoch)
        self._writer.flush()
