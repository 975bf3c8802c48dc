"""The base class of the zoo's language models: compile defaults and the decoding protocol."""
import math

import keras
from keras import ops

from kerasgen.base import GenerativeModel
from kerasgen.errors import ConfigError
from kerasgen.text import FAMILY


@keras.saving.register_keras_serializable(package="kerasgen")
def bits_per_char(y_true, y_pred):
    """Cross-entropy in bits: the unit character-level results are published in."""
    loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    return loss / math.log(2.0)


class CausalLM(GenerativeModel):
    """A next-token model over characters that generation can drive one token at a time.

    Subclasses implement `call` (token ids (B, T) → logits (B, T, V)) and the
    decoding protocol: `initial_state(batch_size)`, `step(token_ids, state,
    position)` → (logits (B, V), state), `prefill(token_ids)` → state, and,
    where the context is bounded, `context_length`. For fine-tuning they list
    `lower_layers()`.

    Args:
        vocab_size: number of token ids (id 0 = unknown character).
        vocabulary: the characters of ids 1..vocab_size-1, kept in the config
            so that a saved model alone can encode prompts and decode output.
    """

    family = FAMILY
    context_length = None  # None: any number of tokens (a recurrent state)

    def __init__(self, vocab_size=256, vocabulary=None, **kwargs):
        super().__init__(**kwargs)
        if vocabulary is not None and len(vocabulary) + 1 != vocab_size:
            raise ValueError(f"vocab_size={vocab_size} does not fit a vocabulary of "
                             f"{len(vocabulary)} characters (+1 for unknown)")
        self.vocab_size, self.vocabulary = vocab_size, vocabulary

    def compile(self, optimizer="adamw", loss=None, metrics=None, **kwargs):
        loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics or [bits_per_char], **kwargs)
        # The metrics' variables made now, not inside the first training step: variables made
        # while tracing make tf.function trace that step a second time (seconds here).
        ids = self.sample_inputs(1)
        logits = self(ids)
        self.compute_loss(ids, ids, logits)
        self.compute_metrics(ids, ids, logits)
        self.reset_metrics()

    def sample_inputs(self, batch_size=2, seq_len=None):
        seq_len = seq_len or min(8, self.context_length or 8)
        ids = ops.arange(batch_size * seq_len) % self.vocab_size
        return ops.reshape(ops.cast(ids, "int32"), (batch_size, seq_len))

    def sample_fit_data(self, batch_size=2):
        ids = self.sample_inputs(batch_size)
        return ids, ops.roll(ids, -1, axis=1)

    def lower_layers(self):
        """(input embeddings, layers bottom-up): what `freeze_lower` walks."""
        raise NotImplementedError

    def freeze_lower(self, count):
        """Fine-tuning: fixes the input embeddings and the `count` lowest layers (none if 0)."""
        embeddings, layers = self.lower_layers()
        if count > len(layers):
            raise ConfigError(f"freeze_layers={count}, but the model has {len(layers)} layers")
        for layer in (embeddings + layers[:count]) if count else []:
            layer.trainable = False

    def get_config(self):
        return {**super().get_config(), "vocab_size": self.vocab_size, "vocabulary": self.vocabulary}
