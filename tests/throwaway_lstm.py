"""A throwaway LSTM text model, written as a contributor adding a model would (modelled on zoo/gru.py).

Not part of the zoo: test_adding_a_model.py loads it as a pytest plugin (`-p throwaway_lstm`) to show
that one file registering a model is picked up by every per-model test and breaks none.
"""
import keras
from keras import ops

from kerasgen.registry import register
from kerasgen.text.model import CausalLM


@register("lstm", tiny=dict(vocab_size=11, embed_dim=4, units=8, num_layers=2),
          description="character-level LSTM language model (a test's throwaway)")
class LSTMGenerator(CausalLM):
    """Embedding → `num_layers` LSTMs → next-token logits; generation carries (h, c) per layer.

    Args:
        vocab_size, vocabulary: see `CausalLM`.
        embed_dim: width of the token embedding.
        units: LSTM state size.
        num_layers: stacked LSTM layers.
        dropout: dropout between layers during training.
    """

    def __init__(self, vocab_size=256, embed_dim=64, units=256, num_layers=1, dropout=0.0,
                 vocabulary=None, **kwargs):
        super().__init__(vocab_size=vocab_size, vocabulary=vocabulary, **kwargs)
        self.embed_dim, self.units, self.num_layers, self.dropout = embed_dim, units, num_layers, dropout
        self.embedding = keras.layers.Embedding(vocab_size, embed_dim)
        self.lstms = [keras.layers.LSTM(units, return_sequences=True, return_state=True)
                      for _ in range(num_layers)]
        self.drop = keras.layers.Dropout(dropout)
        self.head = keras.layers.Dense(vocab_size)

    def call(self, token_ids, training=False):
        x = self.embedding(token_ids)  # (B, T, E)
        for lstm in self.lstms:
            x = self.drop(lstm(x)[0], training=training)  # (B, T, units)
        return self.head(x)  # (B, T, V)

    def initial_state(self, batch_size):
        return tuple((ops.zeros((batch_size, self.units)), ops.zeros((batch_size, self.units)))
                     for _ in self.lstms)

    def hidden_step(self, token_ids, state, position):
        x, new_state = self.embedding(token_ids), []  # (B, E)
        for lstm, (h, c) in zip(self.lstms, state):
            x, (h, c) = lstm.cell(x, [h, c])  # (B, units)
            new_state.append((h, c))
        return self.head(x), x, tuple(new_state)

    def prefill(self, token_ids):
        x, state = self.embedding(token_ids), []
        for lstm in self.lstms:
            x, h, c = lstm(x)
            state.append((h, c))
        return tuple(state)

    def lower_layers(self):
        return [self.embedding], list(self.lstms)

    def get_config(self):
        return {**super().get_config(), "embed_dim": self.embed_dim, "units": self.units,
                "num_layers": self.num_layers, "dropout": self.dropout}
