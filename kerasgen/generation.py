"""Text generation for the zoo's language models: one compiled loop over fixed-size buffers."""
import weakref

import numpy as np
import tensorflow as tf

from kerasgen.data import UNKNOWN_ID, CharVocab

_DECODERS = weakref.WeakKeyDictionary()  # model → its compiled loop, traced once


def sample_next(logits, temperature, top_k, seed):
    """Next ids (B,) from logits (B, V): greedy at temperature 0, else top-k sampling."""
    never = tf.one_hot(UNKNOWN_ID, tf.shape(logits)[-1], on_value=True, off_value=False)
    logits = tf.where(never, tf.float32.min, logits)  # the unknown id is never generated
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    scaled = logits / tf.maximum(temperature, 1e-6)
    vocab = tf.shape(logits)[-1]
    k = tf.where(top_k > 0, tf.minimum(top_k, vocab), vocab)
    kth = tf.gather(tf.sort(scaled, direction="DESCENDING"), k - 1, axis=-1)  # (B,)
    scaled = tf.where(scaled < kth[:, None], tf.float32.min, scaled)
    sampled = tf.random.stateless_categorical(scaled, 1, seed, dtype=tf.int32)[:, 0]
    return tf.where(temperature > 0, sampled, greedy)


def _decode_loop(model):
    """A tf.function: tokens (B, L) holding the prompts, prompt_lengths (B,) → tokens filled in.

    Step t reads token t at cache position `position`; until a row's prompt
    ends the next token is the prompt's own, after that it is sampled. A model
    with a bounded context re-reads its last half window when the cache is full.
    """
    context = model.context_length

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None], tf.int32),
                                  tf.TensorSpec([], tf.float32), tf.TensorSpec([], tf.int32),
                                  tf.TensorSpec([2], tf.int32)])
    def loop(tokens, prompt_lengths, temperature, top_k, seed):
        batch, length = tf.shape(tokens)[0], tf.shape(tokens)[1]
        columns = tf.range(length)[None, :]

        def body(t, position, tokens, state):
            if context is not None:
                keep = context // 2
                state, position = tf.cond(
                    position >= context,
                    lambda: (model.prefill(tf.slice(tokens, [0, t - keep], [batch, keep])), keep),
                    lambda: (state, position))
            logits, state = model.step(tokens[:, t], state, position)
            sampled = sample_next(logits, temperature, top_k, seed + tf.stack([0, t]))
            nxt = tf.where(t + 1 < prompt_lengths, tokens[:, t + 1], sampled)
            tokens = tf.where(columns == t + 1, nxt[:, None], tokens)
            return t + 1, position + 1, tokens, state

        _, _, tokens, _ = tf.while_loop(
            lambda t, *_: t < length - 1, body,
            (tf.constant(0), tf.constant(0), tokens, model.initial_state(batch)))
        return tokens

    return loop


def generate(model, prompts, max_new_tokens, temperature=1.0, top_k=0, seed=0):
    """Continues each prompt by `max_new_tokens` characters; returns the new text of each."""
    vocab = CharVocab(model.vocabulary)
    encoded = [vocab.encode(p or "\n") for p in prompts]  # an empty prompt starts a new line
    lengths = np.array([len(e) for e in encoded], np.int32)
    tokens = np.zeros((len(prompts), lengths.max() + max_new_tokens), np.int32)
    for row, ids in zip(tokens, encoded):
        row[:len(ids)] = ids
    if model not in _DECODERS:
        if not model.built:  # variables must exist before the loop is traced
            model(model.sample_inputs(1, 2))
        _DECODERS[model] = _decode_loop(model)
    out = _DECODERS[model](tokens, lengths, np.float32(temperature), np.int32(top_k),
                           np.array([seed, 0], np.int32)).numpy()
    return [vocab.decode(row[n:n + max_new_tokens]) for row, n in zip(out, lengths)]
