"""GPT-style decoder-only Transformer (nanoGPT's shape) with a key/value cache for generation."""
import keras
import tensorflow as tf
from keras import ops

from kerasgen.registry import register
from kerasgen.text.model import CausalLM

MASKED = -3e4  # a score no softmax weight survives (exp underflows), yet finite in float16


def attend(q, k, v, mask):
    """Scaled dot-product attention; q (B, Tq, H, D), k/v (B, Tk, H, D), mask (Tq, Tk) or (B, 1, Tq, Tk)."""
    scores = ops.einsum("bqhd,bkhd->bhqk", q, k) * (1.0 / float(q.shape[-1]) ** 0.5)
    scores = ops.where(mask, scores, ops.full_like(scores, MASKED))
    return ops.einsum("bhqk,bkhd->bqhd", ops.softmax(scores, axis=-1), v)  # (B, Tq, H, D)


def gelu(x):
    """Exact GELU written with erf: XLA computes erf as one vectorised polynomial, 2-4x
    faster than the erfc that TF's own gelu uses (measured in training and decoding)."""
    return 0.5 * x * (1.0 + ops.erf(x * 0.7071067811865476))


def layer_norm(layer, x):
    """The LayerNormalization `layer` (last axis) on x, as the one-token step computes it: 9
    plain-graph kernels where Keras' own takes 14, and TF Serving runs 9 of them a token."""
    x32 = ops.cast(x, "float32")  # statistics in float32 under mixed precision, as Keras does
    centered = x32 - ops.mean(x32, axis=-1, keepdims=True)
    variance = ops.mean(ops.square(centered), axis=-1, keepdims=True)
    normalized = centered * ops.rsqrt(variance + layer.epsilon)
    return ops.cast(normalized * layer.gamma + layer.beta, x.dtype)


def kernel_and_bias(layer, dtype):
    """A Dense layer's kernel and bias in the compute dtype, for the one-token step.

    The step adds each bias where TF's grappler cannot take it for a BiasAdd: to the residual
    or across a reshape. Grappler would fuse the matmul and the bias into oneDNN's
    _MklNativeFusedMatMul, which is twice as slow as a plain matmul at one row: TF Serving
    took 0.76 ms a token with it and 0.64 ms without. XLA fuses either form; LiteRT runs
    the residual's bias as one more ADD a projection, no slower (measured)."""
    return ops.cast(layer.kernel, dtype), ops.cast(layer.bias, dtype)


def in_xla():
    """Whether the function being traced will be compiled by XLA (jit_compile): the
    one-token step picks its attention kernels by the runtime that will run them."""
    from tensorflow.python.ops import control_flow_util

    return control_flow_util.GraphOrParentsInXlaContext(tf.compat.v1.get_default_graph())


class Block(keras.layers.Layer):
    """Pre-LayerNorm block: x + attention(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, num_heads, embed_dim, dropout, **kwargs):
        super().__init__(**kwargs)
        self.num_heads, self.head_dim = num_heads, embed_dim // num_heads
        self.ln1 = keras.layers.LayerNormalization(epsilon=1e-5)
        self.qkv = keras.layers.Dense(3 * embed_dim)  # one fused matmul for q, k and v
        self.proj = keras.layers.Dense(embed_dim)
        self.ln2 = keras.layers.LayerNormalization(epsilon=1e-5)
        self.fc = keras.layers.Dense(4 * embed_dim, activation=gelu)
        self.fc_out = keras.layers.Dense(embed_dim)
        self.drop = keras.layers.Dropout(dropout)

    def call(self, x, training=False):
        """x (B, T, C) → (B, T, C), with this layer's keys and values (B, T, H, D)."""
        b, t = ops.shape(x)[0], ops.shape(x)[1]
        qkv = ops.reshape(self.qkv(self.ln1(x)), (b, t, 3, self.num_heads, self.head_dim))
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # each (B, T, H, D)
        causal = ops.arange(t)[:, None] >= ops.arange(t)[None, :]
        y = ops.reshape(attend(q, k, v, causal), (b, t, self.num_heads * self.head_dim))
        x = x + self.drop(self.proj(y), training=training)
        x = x + self.drop(self.fc_out(self.fc(self.ln2(x))), training=training)
        return x, (k, v)

    def step(self, x, cache, slot, hidden):
        """x (B, C); cache = (keys, values), each (B, H, S, D); `slot` (B, H, 3) indexes this
        position in the cache, `hidden` (S,) is MASKED on the slots not yet written.

        Rank-2 activations around the projections: a Dense on (B, 1, C) becomes a dozen
        shape ops around its matmul in a plain graph, and TF Serving runs each of them
        for every token. The heads lead the cache, so that each head's keys are one
        contiguous block for either form of the one-query attention below.
        """
        heads = self.num_heads  # -1 for the batch below: no shape ops in the plain graph
        kernel, bias = kernel_and_bias(self.qkv, x.dtype)
        qkv = (ops.reshape(ops.matmul(layer_norm(self.ln1, x), kernel), (-1, 3, heads, self.head_dim))
               + ops.reshape(bias, (3, heads, self.head_dim)))
        q, k, v = ops.unstack(qkv, axis=1)
        # A scatter of one position: under XLA it updates the loop's buffer in place, and the
        # plain graph (TF Serving) and LiteRT run it as stock ops (TensorScatterUpdate, SCATTER_ND).
        keys = ops.scatter_update(cache[0], slot, ops.cast(k, cache[0].dtype))
        values = ops.scatter_update(cache[1], slot, ops.cast(v, cache[1].dtype))
        scale = 1.0 / float(self.head_dim) ** 0.5
        if in_xla():
            # Batched matmuls: ~4 µs a layer at batch 8 under XLA, where the multiply-and-sum
            # below costs ~15 µs; TF's plain-graph executor takes ~60 µs for each of them.
            scores = ops.einsum("bhd,bhkd->bhk", q, keys) * scale + hidden  # (B, H, S)
            weights = ops.softmax(scores, axis=-1)
            y = ops.einsum("bhk,bhkd->bhd", weights, values)
        else:
            scores = ops.sum(q[:, :, None] * keys, axis=-1) * scale + hidden
            # Softmax written out: fewer kernel calls than TF's oneDNN Softmax in a plain graph.
            weights = ops.exp(scores - ops.max(scores, axis=-1, keepdims=True))
            weights = weights / ops.sum(weights, axis=-1, keepdims=True)
            y = ops.sum(weights[..., None] * values, axis=2)  # (B, H, D)
        y = ops.reshape(y, (-1, heads * self.head_dim))
        kernel, bias = kernel_and_bias(self.proj, x.dtype)
        x = x + bias + ops.matmul(y, kernel)
        kernel, bias = kernel_and_bias(self.fc, x.dtype)
        h = ops.reshape(ops.matmul(layer_norm(self.ln2, x), kernel), (-1, 1, kernel.shape[1]))
        h = self.fc.activation(ops.reshape(h + bias, (-1, kernel.shape[1])))
        kernel, bias = kernel_and_bias(self.fc_out, x.dtype)
        x = x + bias + ops.matmul(h, kernel)
        return x, (keys, values)


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
        self.ln_f = keras.layers.LayerNormalization(epsilon=1e-5)
        self.head = None if tie_weights else keras.layers.Dense(vocab_size, use_bias=False,
                                                                 dtype="float32")  # when mixed

    def _logits(self, x, step=False):
        x = layer_norm(self.ln_f, x) if step else self.ln_f(x)
        if self.head is None:
            return ops.cast(ops.matmul(x, ops.transpose(ops.cast(self.token_embedding.embeddings,
                                                                  x.dtype))), "float32")
        return self.head(x)

    def _forward(self, token_ids, training):
        t = ops.shape(token_ids)[1]
        x = self.token_embedding(token_ids) + self.position_embedding(ops.arange(t))
        x = self.drop(x, training=training)  # (B, T, C)
        kv = []
        for block in self.blocks:
            x, layer_kv = block(x, training=training)
            kv.append(layer_kv)
        return self._logits(x), kv

    def call(self, token_ids, training=False):
        return self._forward(token_ids, training)[0]  # (B, T, V)

    def initial_state(self, batch_size):
        shape = (batch_size, self.num_heads, self.seq_len, self.embed_dim // self.num_heads)
        return tuple((ops.zeros(shape, self.compute_dtype), ops.zeros(shape, self.compute_dtype))
                     for _ in self.blocks)

    def step(self, token_ids, state, position):
        x = self.token_embedding(token_ids) + self.position_embedding(ops.convert_to_tensor(position))
        b, heads = ops.shape(x)[0], self.num_heads
        # Where every block writes this position's key and value, and the slots it may see.
        slot = ops.stack([ops.broadcast_to(ops.arange(b)[:, None], (b, heads)),
                          ops.broadcast_to(ops.arange(heads)[None, :], (b, heads)),
                          ops.full((b, heads), position, "int32")], axis=-1)  # (B, H, 3)
        hidden = ops.cast(ops.where(ops.arange(self.seq_len) <= position, 0.0, MASKED), x.dtype)
        new_state = []
        for block, cache in zip(self.blocks, state):
            x, cache = block.step(x, cache, slot, hidden)
            new_state.append(cache)
        return self._logits(x, step=True), tuple(new_state)  # (B, V)

    def prefill(self, token_ids):
        """The cache after reading `token_ids` (B, T ≤ seq_len) in one pass, padded to seq_len."""
        pad = self.seq_len - ops.shape(token_ids)[1]
        _, kv = self._forward(token_ids, False)
        widen = lambda t: ops.pad(ops.transpose(t, (0, 2, 1, 3)),  # noqa: E731
                                  ((0, 0), (0, 0), (0, pad), (0, 0)))
        return tuple((widen(k), widen(v)) for k, v in kv)

    def lower_layers(self):
        return [self.token_embedding, self.position_embedding], list(self.blocks)

    def get_config(self):
        return {**super().get_config(), "seq_len": self.seq_len, "num_layers": self.num_layers,
                "num_heads": self.num_heads, "embed_dim": self.embed_dim,
                "dropout": self.dropout, "tie_weights": self.tie_weights}
