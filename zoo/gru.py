"""GRU language model over characters or byte-level BPE tokens."""
import keras
from keras import ops

from kerasgen.registry import register
from kerasgen.text.model import CausalLM


@register("gru", tiny=dict(vocab_size=11, embed_dim=4, units=8, num_layers=2),
          description="GRU language model over characters or BPE tokens (embedding → GRUs → logits)")
class GRUGenerator(CausalLM):
    """Embedding → `num_layers` GRUs → next-token logits.

    Generation carries each layer's state through `step`, running the GRU
    cells on one token instead of re-reading the prefix.

    Args:
        vocab_size: number of token ids.
        embed_dim: width of the token embedding.
        units: GRU state size.
        num_layers: stacked GRU layers.
        dropout: dropout between layers during training.
        vocabulary: see `CausalLM`.
    """

    def __init__(self, vocab_size=256, embed_dim=64, units=256, num_layers=1, dropout=0.0,
                 vocabulary=None, **kwargs):
        super().__init__(vocab_size=vocab_size, vocabulary=vocabulary, **kwargs)
        self.embed_dim, self.units, self.num_layers, self.dropout = embed_dim, units, num_layers, dropout
        self.embedding = keras.layers.Embedding(vocab_size, embed_dim)
        self.grus = [keras.layers.GRU(units, return_sequences=True, return_state=True)
                     for _ in range(num_layers)]
        self.drop = keras.layers.Dropout(dropout)
        self.head = keras.layers.Dense(vocab_size, dtype="float32")  # float32 logits when mixed

    def call(self, token_ids, training=False):
        x = self.embedding(token_ids)  # (B, T, E)
        for gru in self.grus:
            x, _ = gru(x)
            x = self.drop(x, training=training)  # (B, T, units)
        return self.head(x)  # (B, T, V)

    def initial_state(self, batch_size):
        return tuple(ops.zeros((batch_size, self.units), self.compute_dtype) for _ in self.grus)

    def hidden_step(self, token_ids, state, position):
        x = self.embedding(token_ids)  # (B, E)
        new_state = []
        for gru, h in zip(self.grus, state):
            x, h = gru.cell(x, h)  # (B, units)
            new_state.append(h)
        return self.head(x), x, tuple(new_state)

    def prefill(self, token_ids):
        """The state after reading `token_ids` (B, T) in one pass."""
        x, state = self.embedding(token_ids), []
        for gru in self.grus:
            x, h = gru(x)
            state.append(h)
        return tuple(state)

    def lower_layers(self):
        return [self.embedding], list(self.grus)

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "units": self.units,
                "num_layers": self.num_layers, "dropout": self.dropout}
