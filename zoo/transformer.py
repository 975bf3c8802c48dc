"""GPT-style decoder-only Transformer (nanoGPT's shape) with a key/value cache for generation.

One block and one attention serve every use: training reads the whole window with no cache;
generation's one-token step and the prefill that refills the cache write their keys and values
into it (keras-hub's CachedMultiHeadAttention shape), in the XLA-compiled CLI loop, in the plain
graph TF Serving runs and in LiteRT alike.
"""
import keras
import tensorflow as tf
from keras import ops

from kerasgen.registry import register
from kerasgen.text.model import CausalLM, traced_for_xla

MASKED = -3e4  # a score no softmax weight survives (exp underflows), yet finite in float16


def gelu(x):
    """Exact GELU written with erf: XLA computes erf as one vectorised polynomial, 2-4x
    faster than the erfc that TF's own gelu uses (measured in training and decoding)."""
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


@keras.saving.register_keras_serializable(package="kerasgen")
class LayerNormalization(keras.layers.LayerNormalization):
    """Keras' LayerNormalization over the last axis, written in 9 plain-graph kernels where
    Keras' own takes 14: TF Serving runs each of them for every generated token. The
    statistics are float32 under mixed precision, as Keras computes them. (Keras' class
    name: a .keras file stores a model's layers under their class names, so the runs saved
    before keep loading.)"""

    def call(self, x):
        x32 = ops.cast(x, "float32")
        centered = x32 - ops.mean(x32, axis=-1, keepdims=True)
        variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
        normalized = centered * ops.rsqrt(variance + self.epsilon)
        return ops.cast(normalized * self.gamma + self.beta, self.compute_dtype)


def softmax(scores):
    """Written out: fewer kernels than TF's oneDNN Softmax in a plain graph, the same under XLA."""
    weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
    return weights / ops.sum(weights, axis=-1, keepdims=True)


def attention(q, keys, values, mask):
    """Scaled dot-product attention: q (B, H, T, D) over keys and values (B, H, S, D), `mask`
    (T, S) added to the scores (MASKED where a query may not look) → (B, H, T, D).

    One query (the decode step) in a graph that TF runs op by op (TF Serving, LiteRT) is a
    broadcast multiply and a sum: oneDNN's batched matmul takes ~60 µs a layer at these sizes,
    the broadcasts ~20. Under XLA, and for longer queries, batched matmuls (~4 µs a layer):
    TF's einsum, which XLA contracts in place, where Keras' rewrites the scores as a transpose
    of the keys and a matmul, a copy of the whole cache every step."""
    scale = 1.0 / float(q.shape[-1]) ** 0.5
    if q.shape[2] == 1 and not traced_for_xla():
        weights = softmax(ops.sum(q * keys, axis=-1) * scale + mask)  # (B, H, S)
        return ops.sum(weights[..., None] * values, axis=2, keepdims=True)
    weights = softmax(tf.einsum("bhqd,bhkd->bhqk", q, keys) * scale + mask)  # (B, H, T, S)
    return tf.einsum("bhqk,bhkd->bhqd", weights, values)


def _one(length):
    """Whether a (possibly symbolic) sequence length is statically 1: the decode step."""
    return isinstance(length, int) and length == 1


def causal_mask(length, dtype):
    """(T, T): each position sees itself and the ones before."""
    positions = ops.arange(length)
    return ops.cast(ops.where(positions[:, None] >= positions[None, :], 0.0, MASKED), dtype)


def cache_update(batch, heads, size, start, length, dtype):
    """(slots, mask): where every block writes the keys and values of `length` new positions
    from `start` ((B, H, T, 3) scatter indices into its (B, H, S, D) cache), and what each of
    them may see ((T, S)). Made once per step for all blocks."""
    positions = start + ops.arange(length)  # (T,)
    shape = (batch, heads, length)
    slots = ops.stack([ops.broadcast_to(ops.arange(batch)[:, None, None], shape),
                       ops.broadcast_to(ops.arange(heads)[None, :, None], shape),
                       ops.broadcast_to(positions[None, None, :], shape)], axis=-1)
    return slots, ops.cast(ops.where(ops.arange(size)[None, :] <= positions[:, None], 0.0, MASKED),
                           dtype)


class Block(keras.layers.Layer):
    """Pre-LayerNorm block: x + attention(ln(x)), then x + mlp(ln(x)).

    Its matmuls take (B·T, C) rows: a matmul of rank 3 becomes a dozen shape ops in a plain
    graph, run for every token. Each bias is added where TF's grappler cannot fuse it with its
    matmul (to the residual, across a reshape): oneDNN's fused kernel is twice as slow at one
    row (TF Serving: 0.76 against 0.64 ms a token); XLA and LiteRT do not mind either form.
    """

    def __init__(self, num_heads, embed_dim, dropout, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.ln1 = LayerNormalization(epsilon=1e-5)
        self.qkv = keras.layers.Dense(3 * embed_dim)  # one fused matmul for q, k and v
        self.proj = keras.layers.Dense(embed_dim)
        self.ln2 = LayerNormalization(epsilon=1e-5)
        self.fc = keras.layers.Dense(4 * embed_dim, activation=gelu)
        self.fc_out = keras.layers.Dense(embed_dim)
        self.drop = keras.layers.Dropout(dropout)

    def build(self, input_shape):
        width = input_shape[-1]
        for layer, features in ((self.ln1, width), (self.qkv, width), (self.proj, width),
                                (self.ln2, width), (self.fc, width), (self.fc_out, 4 * width)):
            layer.build((None, features))

    def _heads(self, rows, length, parts, bias):
        """(B·T, parts·H·D) rows + bias → `parts` tensors (B, H, T, D)."""
        heads, dim = self.num_heads, self.head_dim
        bias = ops.cast(bias, rows.dtype)
        if _one(length):  # moving a length-1 axis is a reshape: no transpose kernel per token
            split = ops.reshape(rows, (-1, parts, heads, 1, dim)) + ops.reshape(bias, (parts, heads, 1, dim))
            return ops.unstack(split, axis=1)
        split = ops.reshape(rows, (-1, length, parts, heads, dim)) + ops.reshape(bias, (parts, heads, dim))
        return ops.unstack(ops.transpose(split, (2, 0, 3, 1, 4)), axis=0)

    def _rows(self, y, length):
        """(B, H, T, D) → (B·T, H·D)."""
        if not _one(length):
            y = ops.transpose(y, (0, 2, 1, 3))
        return ops.reshape(y, (-1, self.num_heads * self.head_dim))

    def call(self, x, cache=None, update=None, training=False):
        """x (B, T, C) → (x after the block, (keys, values)). Without a cache (training), this
        layer's own keys and values (B, H, T, D), attended causally; with one, the cache
        (keys, values), each (B, H, S, D), with x's written at `update`'s slots, attended as
        `update`'s mask says."""
        length, width = ops.shape(x)[1], x.shape[-1]  # the length is a tensor where not static
        rows = ops.reshape(x, (-1, width))  # (B·T, C)
        q, k, v = self._heads(ops.matmul(self.ln1(rows), self.qkv.kernel), length, 3, self.qkv.bias)
        if cache is None:
            keys, values, mask = k, v, causal_mask(length, q.dtype)
        else:
            slots, mask = update
            keys = ops.scatter_update(cache[0], slots, ops.cast(k, cache[0].dtype))
            values = ops.scatter_update(cache[1], slots, ops.cast(v, cache[1].dtype))
        y = self._rows(attention(q, keys, values, mask), length)
        rows = rows + ops.cast(self.proj.bias, rows.dtype) + self.drop(
            ops.matmul(y, self.proj.kernel), training=training)
        h = ops.reshape(ops.matmul(self.ln2(rows), self.fc.kernel), (-1, 1, self.fc.units))
        h = ops.reshape(self.fc.activation(h + ops.cast(self.fc.bias, h.dtype)), (-1, self.fc.units))
        rows = rows + ops.cast(self.fc_out.bias, rows.dtype) + self.drop(
            ops.matmul(h, self.fc_out.kernel), training=training)
        return ops.reshape(rows, (-1, length, width)), (keys, values)


@register("transformer",
          tiny=dict(vocab_size=11, seq_len=8, num_layers=2, num_heads=2, embed_dim=8),
          description="GPT-style decoder-only Transformer (pre-LN, causal attention, KV cache)")
class TransformerGenerator(CausalLM):
    """Token + position embedding → pre-LN blocks → LayerNorm → logits (nanoGPT's GPT).

    Generation keeps each block's keys and values in a fixed-size cache, so a
    new token costs one position, not a re-run of the prefix.

    Args:
        vocab_size: number of token ids.
        seq_len: context length (the position table's size).
        num_layers: Transformer blocks.
        num_heads: attention heads per block.
        embed_dim: model width (divisible by num_heads).
        dropout: dropout on embeddings and residual branches.
        tie_weights: reuse the token embedding as the output head (as GPT-2 does).
        vocabulary: see `CausalLM`.
    """

    def __init__(self, vocab_size=256, seq_len=64, num_layers=4, num_heads=4, embed_dim=128,
                 dropout=0.0, tie_weights=True, vocabulary=None, **kwargs):
        super().__init__(vocab_size=vocab_size, vocabulary=vocabulary, **kwargs)
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.seq_len, self.num_layers, self.num_heads = seq_len, num_layers, num_heads
        self.embed_dim, self.dropout, self.tie_weights = embed_dim, dropout, tie_weights
        self.context_length = seq_len
        init = keras.initializers.RandomNormal(stddev=0.02)
        self.token_embedding = keras.layers.Embedding(vocab_size, embed_dim, embeddings_initializer=init)
        self.position_embedding = keras.layers.Embedding(seq_len, embed_dim, embeddings_initializer=init)
        self.drop = keras.layers.Dropout(dropout)
        self.blocks = [Block(num_heads, embed_dim, dropout) for _ in range(num_layers)]
        self.ln_f = LayerNormalization(epsilon=1e-5)
        self.head = None if tie_weights else keras.layers.Dense(vocab_size, use_bias=False,
                                                                 dtype="float32")  # when mixed

    def _forward(self, token_ids, start=0, state=None, training=False):
        """Logits (B·T, V) of token_ids (B, T) at positions start.., each block's keys and
        values (its own without `state`, else the cache `state` with these positions written),
        and the last hidden state (B·T, C): the final LayerNorm's output, GPT-2's."""
        length = ops.shape(token_ids)[1]
        x = self.token_embedding(token_ids) + self.position_embedding(start + ops.arange(length))
        x = self.drop(x, training=training)  # (B, T, C)
        update = None if state is None else cache_update(
            ops.shape(token_ids)[0], self.num_heads, self.seq_len, start, length, x.dtype)
        kv = []
        for block, cache in zip(self.blocks, state or [None] * len(self.blocks)):
            x, layer_kv = block(x, cache=cache, update=update, training=training)
            kv.append(layer_kv)
        rows = self.ln_f(ops.reshape(x, (-1, self.embed_dim)))  # (B·T, C): a rank-2 head matmul
        if self.head is None:
            logits = ops.matmul(rows, ops.transpose(ops.cast(self.token_embedding.embeddings, rows.dtype)))
        else:
            logits = self.head(rows)
        return ops.cast(logits, "float32"), tuple(kv), rows

    def call(self, token_ids, training=False):
        logits, _, _ = self._forward(token_ids, training=training)
        return ops.reshape(logits, (-1, ops.shape(token_ids)[1], self.vocab_size))  # (B, T, V)

    def initial_state(self, batch_size):
        shape = (batch_size, self.num_heads, self.seq_len, self.embed_dim // self.num_heads)
        return tuple((ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype))
                     for _ in self.blocks)

    def hidden_step(self, token_ids, state, position):
        logits, cache, hidden = self._forward(token_ids[:, None], position, state)
        return logits, hidden, cache  # (B, V), (B, C), the new cache

    def prefill(self, token_ids):
        """The cache after reading `token_ids` (B, T ≤ seq_len) from position 0."""
        return self._forward(token_ids, 0, self.initial_state(ops.shape(token_ids)[0]))[1]

    def lower_layers(self):
        return [self.token_embedding, self.position_embedding], list(self.blocks)

    def get_config(self):
        return {**super().get_config(), "seq_len": self.seq_len, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "embed_dim": self.embed_dim,
                "dropout": self.dropout, "tie_weights": self.tie_weights}
