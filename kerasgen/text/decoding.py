"""Text generation for the zoo's language models: one compiled loop over fixed-size buffers.

The CLI, the training-time sample callback and the exported serving signature
all call `decode_loop`, so they generate the same text for the same seed.
"""
import numpy as np
import tensorflow as tf

from kerasgen.text.model import tracing_for_xla
from kerasgen.text.sampling import EMPTY_PROMPT, Sampling
from kerasgen.text.tokenizer import UNKNOWN_ID

BUCKET = 128  # token buffers are padded to a multiple of this, so XLA compiles few shapes
# Callers that decode once in a process (the generate command, the per-epoch samples) run the
# plain graph: it is traced in a fraction of the seconds XLA takes to compile the loop, which a
# few thousand tokens never win back (python -m kerasgen.bench decode: cold and warm).
COLD_XLA = False


def sampling_tensors(sampling):
    """The loop's control inputs (temperature … seed) from a Sampling."""
    return (np.float32(sampling.temperature), np.int32(sampling.top_k), np.float32(sampling.top_p),
            np.float32(sampling.min_p), np.float32(sampling.typical_p),
            np.float32(sampling.repetition_penalty), np.int32(sampling.no_repeat_ngram),
            np.int32(sampling.seed))


def penalize_repetition(logits, seen, penalty):
    """Tokens already in the row (`seen` (B, V) bool): positive logits ÷ penalty, negative × penalty."""
    penalized = tf.where(logits > 0, logits / penalty, logits * penalty)
    return tf.where(seen, penalized, logits)


def banned_by_ngrams(tokens, t, n, vocab_size):
    """(B, V) bool: tokens that would repeat an n-gram already in tokens[:, :t + 1].

    The candidate after position t completes the n-gram (tokens[t-n+2..t], next);
    every earlier start j whose first n-1 tokens equal that tail bans tokens[j+n-1].
    """
    length = tf.shape(tokens)[1]
    starts = tf.range(length)
    ends = starts + n - 1  # where the banned token sits
    matches = (ends <= t)[None, :] & tf.fill(tf.shape(tokens), True)

    def compare(k, matches):
        earlier = tf.roll(tokens, -k, axis=1)  # earlier[:, j] = tokens[:, j + k]
        tail = tokens[:, t - n + 2 + k][:, None]
        return k + 1, matches & tf.equal(earlier, tail)

    _, matches = tf.while_loop(lambda k, _: k < n - 1, compare, (tf.constant(0), matches))
    banned_ids = tf.roll(tokens, -(n - 1), axis=1)
    hits = tf.one_hot(banned_ids, vocab_size, on_value=True, off_value=False) & matches[:, :, None]
    return tf.reduce_any(hits, axis=1) & (t - n + 2 >= 0)


def filter_top_k(logits, k):
    """Keeps the k largest logits of each row (all when k is 0)."""
    vocab = tf.shape(logits)[-1]
    k = tf.where(k > 0, tf.minimum(k, vocab), vocab)
    kth = tf.gather(tf.sort(logits, direction="DESCENDING"), k - 1, axis=-1)
    return tf.where(logits < kth[:, None], tf.float32.min, logits)


def filter_top_p(logits, p):
    """Keeps the smallest set of most likely tokens whose probability reaches p (nucleus)."""
    ordered = tf.sort(logits, direction="DESCENDING")
    probs = tf.nn.softmax(ordered)
    before = tf.cumsum(probs, axis=-1, exclusive=True)  # mass of the more likely tokens
    kept = tf.reduce_sum(tf.cast(before < p, tf.int32), axis=-1)  # ≥ 1: the first has 0 before
    threshold = tf.gather(ordered, kept - 1, axis=-1, batch_dims=1)
    return tf.where(logits < threshold[:, None], tf.float32.min, logits)


def filter_min_p(logits, min_p):
    """Keeps the tokens at least `min_p` times as likely as the row's likeliest (Hugging Face's
    MinPLogitsWarper; the likeliest always stays)."""
    probs = tf.nn.softmax(logits)
    return tf.where(probs < min_p * tf.reduce_max(probs, axis=-1, keepdims=True), tf.float32.min,
                    logits)


def filter_typical(logits, mass):
    """Locally typical sampling (Meister et al. 2022, Hugging Face's TypicalLogitsWarper): the
    tokens ordered by how far their surprisal is from the row's entropy, kept until their
    probability reaches `mass` (the closest always stays)."""
    log_probs = tf.nn.log_softmax(logits)
    entropy = -tf.reduce_sum(log_probs * tf.exp(log_probs), axis=-1, keepdims=True)
    distance = tf.abs(-log_probs - entropy)
    order = tf.argsort(distance, axis=-1)
    ordered = tf.gather(distance, order, batch_dims=1)
    cumulative = tf.cumsum(tf.nn.softmax(tf.gather(logits, order, batch_dims=1)), axis=-1)
    last = tf.minimum(tf.reduce_sum(tf.cast(cumulative < mass, tf.int32), axis=-1),
                      tf.shape(logits)[-1] - 1)
    bound = tf.gather(ordered, last, axis=-1, batch_dims=1)
    return tf.where(distance > bound[:, None], tf.float32.min, logits)


def sample_next(logits, temperature, noise, top_k=None, top_p=None, min_p=None, typical_p=None):
    """Next ids (B,) from logits (B, V) and Gumbel `noise` (B, V): greedy at temperature 0, else
    a draw from softmax(logits / temperature), restricted by top-k, top-p, min-p and typical-p
    (Hugging Face's order) when they are given."""
    never = tf.one_hot(UNKNOWN_ID, tf.shape(logits)[-1], on_value=True, off_value=False)[None, :]
    logits = tf.where(never, tf.float32.min, logits)  # the unknown id is never generated
    greedy = tf.argmax(logits, axis=-1, output_type=tf.int32)
    scaled = logits / tf.maximum(temperature, 1e-6)
    if top_k is not None:  # both filters sort the vocabulary: skip them when they are off
        scaled = tf.cond(top_k > 0, lambda: filter_top_k(scaled, top_k), lambda: scaled)
        scaled = tf.cond(top_p < 1.0, lambda: filter_top_p(scaled, top_p), lambda: scaled)
        scaled = tf.cond(min_p > 0.0, lambda: filter_min_p(scaled, min_p), lambda: scaled)
        scaled = tf.cond(typical_p < 1.0, lambda: filter_typical(scaled, typical_p), lambda: scaled)
    sampled = tf.argmax(scaled + noise, axis=-1, output_type=tf.int32)
    return tf.where(temperature > 0, sampled, greedy)


def _uint32(x):
    return tf.cast(x, tf.uint32)


def _mix32(x):
    """A 32-bit integer hash (lowbias32) in uint32 arithmetic, whose wrap-around it relies on."""
    xor, shift = tf.bitwise.bitwise_xor, tf.bitwise.right_shift
    x = xor(x, shift(x, _uint32(16))) * _uint32(0x7FEB352D)
    x = xor(x, shift(x, _uint32(15))) * _uint32(0x846CA68B)
    return xor(x, shift(x, _uint32(16)))


def row_keys(batch, seed):
    """(B, 1) uint32: each row's hash of the request's seed, the part of the noise's key that
    stays fixed for a whole request (hashed once, outside the loop)."""
    rows = _uint32(tf.range(batch))[:, None]
    return _mix32(tf.bitwise.bitwise_xor(_uint32(seed), rows * _uint32(0x9E3779B9)))


def gumbel_noise(keys, step, vocab_size):
    """Gumbel(0, 1) noise (B, V) from a counter-based hash of (row key, step, column).

    argmax(logits + noise) samples from softmax(logits) (the Gumbel-max trick).
    TF's own stateless generators give different numbers under XLA and in plain
    graphs, so the XLA-compiled CLI loop and the exported graph that TF Serving
    runs would disagree for one seed; the integer hash is identical in both, and
    the logs that shape it into Gumbel noise differ at most in the last bit.
    """
    xor = tf.bitwise.bitwise_xor
    x = _mix32(xor(_mix32(xor(keys, _uint32(step))), _uint32(tf.range(vocab_size))[None, :]))
    uniform = (tf.cast(tf.bitwise.right_shift(x, _uint32(8)), tf.float32) + 0.5) / float(1 << 24)
    return -tf.math.log(-tf.math.log(uniform))  # uniform is in (0, 1): finite noise


def seen_before(tokens, start, vocab_size):
    """(B, V) bool: the ids in each row's first `start` tokens, without a (B, L, V) one-hot.
    Every shape is the buffer's: under XLA a slice to `start` would make each new start (each
    streamed block) a program of its own, compiled again."""
    batch, length = tf.shape(tokens)[0], tf.shape(tokens)[1]
    rows = tf.repeat(tf.range(batch), length)
    indices = tf.stack([rows, tf.reshape(tokens, [-1])], axis=1)
    before = tf.tile(tf.cast(tf.range(length) < start, tf.int32)[None], [batch, 1])  # (B, L)
    counts = tf.scatter_nd(indices, tf.reshape(before, [-1]), tf.stack([batch, vocab_size]))
    return counts > 0


def decode_loop(model, jit_compile=True, filtered=None):
    """A tf.function that fills a token buffer, resumable so callers can stream.

    loop(tokens (B, L) holding the prompts, prompt_lengths (B,), start, stop,
    position, state, *sampling_tensors*) feeds tokens start..stop-2 to the
    model's one-token `step` (the GRU's state or the Transformer's key/value
    cache carries the past) and writes tokens start+1..stop-1: a row's own
    prompt token while its prompt lasts, a sampled one after. It returns
    (tokens, position, state) to continue from; start=0 with position 0 and
    `model.initial_state(B)` begins. Step t's random draw depends only on
    (seed, t), so one call or many give the same text. A model with a bounded
    context re-reads its last half window when the cache is full. Every input
    has a fixed signature, so it is traced once.

    `filtered` None (a served graph) holds two loops, one without the controls
    that filter or penalize and one with them, and picks per request; True or
    False (a caller that knows its controls) traces only that one, half the
    tracing and compiling on the user's clock.
    """
    context = model.context_length
    vocab_size = model.vocab_size
    state_spec = tf.nest.map_structure(lambda s: tf.TensorSpec([None, *s.shape[1:]], s.dtype),
                                       model.initial_state(1))
    scalar = lambda dtype: tf.TensorSpec([], dtype)  # noqa: E731

    # Without autograph: the loops are written with tf.while_loop and tf.cond, and converting
    # the model's code for nothing doubled the tracing time.
    @tf.function(jit_compile=jit_compile, autograph=False, input_signature=[
        tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None], tf.int32),
        scalar(tf.int32), scalar(tf.int32), scalar(tf.int32), state_spec,
        scalar(tf.float32), scalar(tf.int32), scalar(tf.float32), scalar(tf.float32),
        scalar(tf.float32), scalar(tf.float32), scalar(tf.int32), scalar(tf.int32)])
    def loop(*inputs):
        with tracing_for_xla(jit_compile):  # the model's step picks its kernels by it
            return body(*inputs)

    def body(tokens, prompt_lengths, start, stop, position, state, temperature, top_k, top_p,
             min_p, typical_p, repetition_penalty, no_repeat_ngram, seed):
        batch = tf.shape(tokens)[0]
        rows = tf.range(batch)
        keys = row_keys(batch, seed)

        def step(t, position, tokens, state, *seen):
            """One token; `seen` (B, V), the ids so far, only in the loop for requests that
            penalize repetition, ban n-grams or filter."""
            logits, state = model.step(tokens[:, t], state, position)
            logits, filters = tf.cast(logits, tf.float32), {}
            if seen:
                new = tf.one_hot(tokens[:, t], vocab_size, on_value=True, off_value=False)
                seen = (seen[0] | new,)
                banned = tf.cond(no_repeat_ngram > 0,
                                 lambda: banned_by_ngrams(tokens, t, no_repeat_ngram, vocab_size),
                                 lambda: tf.zeros([batch, vocab_size], tf.bool))
                # Hugging Face's order: the penalty, the bans, then temperature and the filters.
                logits = tf.where(banned, tf.float32.min,
                                  penalize_repetition(logits, seen[0], repetition_penalty))
                filters = dict(top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p)
            sampled = sample_next(logits, temperature, gumbel_noise(keys, t, vocab_size),
                                  **filters)
            nxt = tf.where(t + 1 < prompt_lengths, tokens[:, t + 1], sampled)
            # One column written per step: the step's cost does not grow with the buffer.
            column = tf.stack([rows, tf.fill([batch], t + 1)], axis=1)
            tokens = tf.tensor_scatter_nd_update(tokens, column, nxt)
            return (t + 1, position + 1, tokens, state, *seen)

        def steps(until, t, position, tokens, state, *seen):
            return tf.while_loop(lambda t, *_: t < until, step, (t, position, tokens, state, *seen))

        def window(t, position, tokens, state, *seen):
            """Re-reads the last half window if the cache is full, then steps until it is full
            again: the steps carry the cache through no branch, which would copy it each step."""
            keep = context // 2
            # Padded so the slice fits the buffer's static width even when the buffer is
            # shorter than the context (a short request): XLA checks untaken branches too.
            state, position = tf.cond(
                position >= context,
                lambda: (model.prefill(tf.slice(tf.pad(tokens, [[0, 0], [0, keep]]),
                                                [0, t - keep], [batch, keep])), keep),
                lambda: (state, position))
            until = tf.minimum(stop - 1, t + context - position)
            return steps(until, t, position, tokens, state, *seen)

        def decode(filtered):
            """The loop that carries `seen` for the penalty and the filters, or the shorter one."""
            carried = (start, position, tokens, state)
            if filtered:
                carried += (seen_before(tokens, start, vocab_size),)
            if context is None:
                carried = steps(stop - 1, *carried)
            else:
                carried = tf.while_loop(lambda t, *_: t < stop - 1, window, carried)
            return carried[2], carried[1], carried[3]  # tokens, position, state

        # Each op costs TF Serving's executor a kernel launch a token, so a request that
        # switches the controls off (the defaults) runs a loop without them.
        if filtered is not None:
            return decode(filtered)
        controls_off = ((top_k == 0) & (top_p >= 1.0) & (min_p <= 0.0) & (typical_p >= 1.0)
                        & (repetition_penalty == 1.0) & (no_repeat_ngram == 0))
        return tf.cond(controls_off, lambda: decode(False), lambda: decode(True))

    return loop


def compiled_decoder(model, jit_compile=True, filtered=None):
    """The model's decode loop, built (and later traced) once per model and setting."""
    return model.traced(("decode", jit_compile, filtered),
                        lambda: decode_loop(model, jit_compile, filtered))


def encode_prompts(tokenizer, prompts, max_new_tokens):
    """(tokens (B, L) with L a multiple of BUCKET, prompt lengths (B,), stop) for `decode_loop`."""
    encoded = [tokenizer.encode(p or EMPTY_PROMPT) for p in prompts]
    lengths = np.array([len(e) for e in encoded], np.int32)
    stop = int(lengths.max()) + max_new_tokens
    tokens = np.zeros((len(prompts), -(-stop // BUCKET) * BUCKET), np.int32)
    for row, ids in zip(tokens, encoded):
        row[:len(ids)] = ids
    return tokens, lengths, np.int32(stop)


def generate_ids(model, prompts, sampling=Sampling(), block=None, jit_compile=True):
    """Yields the new token ids (B, n) after each prompt, `block` tokens at a time (all at
    once by default); the ids are the same whatever the block size, and with or without XLA."""
    total = sampling.max_new_tokens
    tokens, lengths, stop = encode_prompts(model.text_tokenizer, prompts, total)
    loop = compiled_decoder(model, jit_compile, sampling.filters())
    controls = sampling_tensors(sampling)
    start, position, state = 0, np.int32(0), model.initial_state(len(prompts))
    first = int(lengths.max())  # sampled text starts here in the longest prompt's row
    done = 0
    while done < total:
        until = min(first + done + (block or total), int(stop))
        tokens, position, state = loop(tokens, lengths, np.int32(start), np.int32(until),
                                       position, state, *controls)
        new = until - first - done
        out = tokens.numpy()
        yield np.stack([row[n + done:n + done + new] for row, n in zip(out, lengths)])
        start, done = until - 1, done + new


def generate(model, prompts, sampling=Sampling(), jit_compile=True):
    """Continues each prompt by `sampling.max_new_tokens` tokens; returns the new text of each."""
    ids = np.concatenate(list(generate_ids(model, prompts, sampling, jit_compile=jit_compile)), axis=1)
    return [model.text_tokenizer.decode(row) for row in ids]


def generate_uncached(model, prompt_ids, max_new_tokens):
    """Greedy decoding that re-runs the model over the whole (context-cropped) prefix for
    every token, as a model without a cache must: the reference and the speed baseline."""
    forward = model.traced("last logits", lambda: tf.function(
        lambda ids: model(ids)[:, -1], input_signature=[tf.TensorSpec([None, None], tf.int32)]))
    tokens = np.asarray(prompt_ids, np.int32)
    for _ in range(max_new_tokens):
        window = tokens[:, -model.context_length:] if model.context_length else tokens
        logits = forward(window).numpy()
        logits[:, UNKNOWN_ID] = -np.inf
        tokens = np.concatenate([tokens, logits.argmax(-1)[:, None].astype(np.int32)], axis=1)
    return tokens[:, prompt_ids.shape[1]:]
