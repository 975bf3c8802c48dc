"""The base class of the zoo's language models: compile defaults and the decoding protocol."""
import contextlib
import contextvars
import math

import keras
from keras import ops

from kerasgen.base import GenerativeModel
from kerasgen.errors import ConfigError
from kerasgen.text import FAMILY
from kerasgen.text.tokenizer import tokenizer_from_config


_TRACED_FOR_XLA = contextvars.ContextVar("kerasgen_traced_for_xla", default=False)


@contextlib.contextmanager
def tracing_for_xla(jit_compile):
    """Declares, while a function is traced, whether XLA will compile it: what a model's step
    may choose its kernels by (the fastest ones differ between XLA and TF's plain graph)."""
    token = _TRACED_FOR_XLA.set(bool(jit_compile))
    try:
        yield
    finally:
        _TRACED_FOR_XLA.reset(token)


def traced_for_xla():
    """Whether the function being traced will be compiled by XLA (see `tracing_for_xla`)."""
    return _TRACED_FOR_XLA.get()


@keras.saving.register_keras_serializable(package="kerasgen")
def bits_per_char(y_true, y_pred):
    """Cross-entropy in bits: the unit character-level results are published in."""
    loss = keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
    return loss / math.log(2.0)


@keras.saving.register_keras_serializable(package="kerasgen")
def bits_per_token(y_true, y_pred):
    """Cross-entropy in bits per subword token."""
    return bits_per_char(y_true, y_pred)


@keras.saving.register_keras_serializable(package="kerasgen")
class BitsPerByte(keras.metrics.Metric):
    """Cross-entropy per byte of UTF-8 text, in bits: the figure that compares models
    whatever their tokenizer (a token of 3 bytes carries 3 bytes' worth of surprise)."""

    def __init__(self, byte_lengths, name="bits_per_byte", **kwargs):
        super().__init__(name=name, **kwargs)
        self.byte_lengths = [int(n) for n in byte_lengths]
        self.bits = self.add_variable((), "zeros", name="bits", aggregation="sum")
        self.bytes = self.add_variable((), "zeros", name="bytes", aggregation="sum")

    def update_state(self, y_true, y_pred, sample_weight=None):
        loss = keras.losses.sparse_categorical_crossentropy(y_true, ops.cast(y_pred, "float32"),
                                                            from_logits=True)
        lengths = ops.take(ops.convert_to_tensor(self.byte_lengths, "float32"), y_true)
        self.bits.assign_add(ops.sum(loss) / math.log(2.0))
        self.bytes.assign_add(ops.sum(lengths))

    def result(self):
        return self.bits / ops.maximum(self.bytes, 1.0)

    def get_config(self):
        return {**super().get_config(), "byte_lengths": self.byte_lengths}


class CausalLM(GenerativeModel):
    """A next-token model over characters or BPE subwords that generation drives a token at a time.

    Subclasses implement `call` (token ids (B, T) → logits (B, T, V)) and the
    decoding protocol: `initial_state(batch_size)`, `hidden_step(token_ids,
    state, position)` → (logits (B, V), the last hidden state (B, C), state)
    (or only `step` → (logits, state), which leaves out contrastive search,
    the one method that compares hidden states), `prefill(token_ids)` → state,
    and, where the context is bounded, `context_length`. For fine-tuning they
    list `lower_layers()`.

    Args:
        vocab_size: number of token ids (id 0 = unknown character).
        vocabulary: the characters of ids 1..vocab_size-1, kept in the config
            so that a saved model alone can encode prompts and decode output.
        tokenizer: instead of `vocabulary`, a byte-level BPE tokenizer (its
            `tokenizers` JSON; see `kerasgen.text.tokenizer`).
    """

    family = FAMILY
    context_length = None  # None: any number of tokens (a recurrent state)

    def __init__(self, vocab_size=256, vocabulary=None, tokenizer=None, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size, self.vocabulary, self.tokenizer = vocab_size, vocabulary, tokenizer
        # Text ↔ ids (a CharVocab or a BytePairTokenizer); None for a bare model without one.
        self.text_tokenizer = (tokenizer_from_config(vocabulary, tokenizer)
                               if vocabulary or tokenizer else None)
        if self.text_tokenizer and self.text_tokenizer.size != vocab_size:
            raise ValueError(f"vocab_size={vocab_size} does not fit a tokenizer of "
                             f"{self.text_tokenizer.size} ids (id 0 included)")

    def compile(self, optimizer="adamw", loss=None, metrics=None, **kwargs):
        loss = loss or keras.losses.SparseCategoricalCrossentropy(from_logits=True)
        if metrics is None:
            metrics = [bits_per_token if self.tokenizer else bits_per_char]
            if self.text_tokenizer:
                metrics.append(BitsPerByte(self.text_tokenizer.byte_lengths()))
        super().compile(optimizer=optimizer, loss=loss, metrics=metrics, **kwargs)
        # The metrics' variables made now, not inside the first training step: variables made
        # while tracing make tf.function trace that step a second time (seconds here).
        ids = self.sample_inputs(1)
        logits = self(ids)
        self.compute_loss(ids, ids, logits)
        self.compute_metrics(ids, ids, logits)
        self.reset_metrics()

    def step(self, token_ids, state, position):
        """One token a row: (logits (B, V), the state after it)."""
        logits, _, state = self.hidden_step(token_ids, state, position)
        return logits, state

    def hidden_step(self, token_ids, state, position):
        raise ConfigError(f"{type(self).__name__} implements only `step`: contrastive search "
                          f"needs `hidden_step`, which also returns the last hidden state")

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
        return {**super().get_config(), "vocab_size": self.vocab_size, "vocabulary": self.vocabulary,
                "tokenizer": self.tokenizer}
