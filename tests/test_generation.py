"""Samplers on hand-made logits, the compiled decode loop of every text model, and the stability metrics."""
import numpy as np
import pytest
import tensorflow as tf

from conftest import TEXT_MODELS, keras_hub_search, tiny_model
from kerasgen import registry
from kerasgen.config import model_defaults
from kerasgen.errors import ConfigError
from kerasgen.text.tokenizer import UNKNOWN_ID, CharVocab
from kerasgen.text.decoding import (BUCKET, banned_by_ngrams, compiled_decoder,
                                    compiled_search, decode_loop, decoder_state,
                                    encode_prompts, filter_min_p, filter_top_k, filter_top_p,
                                    filter_typical, generate,
                                    generate_ids, generate_uncached, gumbel_noise,
                                    penalize_repetition, row_keys, sampling_tensors,
                                    search_tensors)
from kerasgen.family import spread
from kerasgen.text.metrics import distinct_n, repetition_rate, self_bleu, text_stability
from kerasgen.text.sampling import Sampling

NEG = np.finfo(np.float32).min


def kept(filtered):
    return set(np.flatnonzero(np.asarray(filtered)[0] > NEG))


def test_top_k_keeps_the_k_largest():
    logits = tf.constant([[0.5, 3.0, -1.0, 2.0, 1.0]])
    assert kept(filter_top_k(logits, tf.constant(2))) == {1, 3}
    assert kept(filter_top_k(logits, tf.constant(0))) == {0, 1, 2, 3, 4}


def _hugging_face_min_p(logits, min_p):
    """MinPLogitsWarper as Hugging Face documents it, in NumPy: tokens below min_p × the top
    probability are removed."""
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    return np.where(probs < min_p * probs.max(-1, keepdims=True), -np.inf, logits)


def _hugging_face_typical(logits, mass):
    """TypicalLogitsWarper as Hugging Face documents it, in NumPy: sort by |surprisal − entropy|,
    keep through the first index where the cumulative probability reaches `mass`."""
    out = logits.copy()
    for row, scores in enumerate(logits):
        log_p = scores - scores.max() - np.log(np.exp(scores - scores.max()).sum())
        entropy = -(log_p * np.exp(log_p)).sum()
        shifted = np.abs(-log_p - entropy)
        order = np.argsort(shifted, kind="stable")
        probs = np.exp(scores[order] - scores.max())
        cumulative = np.cumsum(probs / probs.sum())
        last = min(int((cumulative < mass).sum()), len(scores) - 1)
        removed = shifted[order] > shifted[order][last]
        removed[0] = False  # min_tokens_to_keep=1
        out[row, order[removed]] = -np.inf
    return out


@pytest.mark.parametrize("seed", range(5))
def test_min_p_and_typical_keep_what_hugging_face_keeps(seed):
    rng = np.random.default_rng(seed)
    logits = (rng.normal(size=(4, 50)) * rng.uniform(0.5, 4)).astype(np.float32)
    for value in (0.01, 0.1, 0.5, 1.0):
        ours = filter_min_p(tf.constant(logits), tf.constant(value)).numpy()
        np.testing.assert_array_equal(ours > tf.float32.min, np.isfinite(_hugging_face_min_p(logits, value)))
    for value in (0.2, 0.5, 0.9, 0.99):
        ours = filter_typical(tf.constant(logits), tf.constant(value)).numpy()
        np.testing.assert_array_equal(ours > tf.float32.min,
                                      np.isfinite(_hugging_face_typical(logits, value)))
        assert ((ours > tf.float32.min).sum(-1) >= 1).all()


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = np.array([[0.5, 0.3, 0.15, 0.05]])
    logits = tf.constant(np.log(probs), tf.float32)
    assert kept(filter_top_p(logits, tf.constant(0.5))) == {0}
    assert kept(filter_top_p(logits, tf.constant(0.7))) == {0, 1}
    assert kept(filter_top_p(logits, tf.constant(0.81))) == {0, 1, 2}
    assert kept(filter_top_p(logits, tf.constant(1.0))) == {0, 1, 2, 3}


def test_repetition_penalty_divides_positive_and_multiplies_negative_seen_logits():
    logits = tf.constant([[2.0, -2.0, 2.0, -2.0]])
    seen = tf.constant([[True, True, False, False]])
    np.testing.assert_allclose(penalize_repetition(logits, seen, 2.0), [[1.0, -4.0, 2.0, -2.0]])


def test_no_repeat_ngram_bans_exactly_the_completing_tokens():
    # "a b c a b" (ids 1 2 3 1 2) then padding; at t=4 the tail "a b" was followed by "c" before.
    tokens = tf.constant([[1, 2, 3, 1, 2, 0, 0, 0]])
    assert set(np.flatnonzero(banned_by_ngrams(tokens, 4, 3, 5)[0])) == {3}
    # bigrams: the tail "b" (id 2) was followed by 3 before.
    assert set(np.flatnonzero(banned_by_ngrams(tokens, 4, 2, 5)[0])) == {3}
    # the tail "c a" (t=3) never occurred before: nothing banned.
    assert not np.any(banned_by_ngrams(tokens, 3, 3, 5))


@pytest.mark.parametrize("kwargs", [dict(temperature=-1), dict(temperature=float("nan")),
                                    dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1),
                                    dict(min_p=2.0), dict(min_p=-0.5), dict(typical_p=0.0),
                                    dict(typical_p=1.01), dict(stop=("",)),
                                    dict(stop=("x",) * 9), dict(stop=("é" * 17,)),
                                    dict(repetition_penalty=0), dict(no_repeat_ngram=-2),
                                    dict(max_new_tokens=0), dict(max_new_tokens=10 ** 9),
                                    dict(seed=2 ** 40), dict(num_beams=0), dict(num_beams=65),
                                    dict(penalty_alpha=2.0), dict(penalty_alpha=0.6, top_k=1),
                                    dict(penalty_alpha=0.6), dict(penalty_alpha=0.6, top_k=4,
                                                                  num_beams=2),
                                    dict(num_beams=2, top_p=0.9), dict(num_beams=2, min_p=0.1),
                                    dict(penalty_alpha=0.5, top_k=4, repetition_penalty=1.2),
                                    dict(num_beams=3, length_penalty=float("inf"))])
def test_bad_sampling_values_are_config_errors(kwargs):
    with pytest.raises(ConfigError):
        Sampling(**kwargs)


@pytest.fixture(scope="module", params=TEXT_MODELS)
def model(request):
    return tiny_model(request.param)


def test_outputs_are_next_token_logits(model):
    inputs = model.sample_inputs(2)
    assert model(inputs).shape == (2, inputs.shape[1], model.vocab_size)


def test_step_by_step_decoding_matches_the_full_pass(model):
    """The cache/state path that generation uses computes the same logits as call()."""
    inputs = model.sample_inputs(2)
    logits = model(inputs)
    state, steps = model.initial_state(2), []
    for t in range(inputs.shape[1]):
        step_logits, state = model.step(inputs[:, t], state, t)
        steps.append(step_logits)
    np.testing.assert_allclose(np.stack(steps, axis=1), logits, atol=1e-5)
    state = model.prefill(inputs[:, :5])
    step_logits, _ = model.step(inputs[:, 5], state, 5)
    np.testing.assert_allclose(step_logits, logits[:, 5], atol=1e-5)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_compiled_steps_match_the_full_pass(model, jit_compile):
    """The step as the XLA loop (CLI) and the plain graph (TF Serving) trace it: the
    Transformer picks different attention kernels for each, with the same logits."""
    inputs = model.sample_inputs(3)
    logits = model(inputs)
    step = tf.function(model.step, jit_compile=jit_compile)
    state = model.initial_state(3)
    for t in range(inputs.shape[1]):
        step_logits, state = step(inputs[:, t], state, tf.constant(t))
        np.testing.assert_allclose(step_logits, logits[:, t], atol=1e-5)


@pytest.mark.parametrize("xla", [False, True])
def test_the_transformer_step_attends_with_the_kernels_of_the_runtime_that_runs_it(xla):
    """The decode loop declares whether XLA compiles it: batched matmuls there, broadcasts in
    the plain graph TF Serving runs op by op. A wrong choice would only show as slowness."""
    from kerasgen.text.model import tracing_for_xla

    model = tiny_model("transformer")

    def step(ids, state, position):
        with tracing_for_xla(xla):
            return model.step(ids, state, position)

    graph = tf.function(step).get_concrete_function(
        tf.constant([1]), model.initial_state(1), tf.constant(0)).graph
    batched = [op.type for op in graph.get_operations() if op.type.startswith(("BatchMatMul", "Einsum"))]
    assert bool(batched) == xla, batched


def test_transformer_gelu_is_the_exact_gelu():
    """Written with erf for speed, it must stay the GELU that trained models were trained with."""
    import keras

    from kerasgen.zoo.transformer import gelu

    x = np.linspace(-12, 12, 2001).astype(np.float32)
    np.testing.assert_allclose(gelu(x), keras.activations.gelu(x, approximate=False), atol=1e-6)


def test_the_lean_layer_norm_is_keras_layer_norm():
    """Its fewer kernels must normalize as Keras' own layer does, also on a float16 activation
    (mixed precision), with the statistics in float32."""
    import keras

    from kerasgen.zoo.transformer import LayerNormalization as LayerNorm

    x = np.random.default_rng(0).normal(3.0, 2.0, (4, 16)).astype(np.float32)
    layers = {}
    for cls, dtype in ((keras.layers.LayerNormalization, "float32"), (LayerNorm, "float32"),
                       (LayerNorm, "mixed_float16")):
        layer = layers[cls, dtype] = cls(epsilon=1e-5, dtype=dtype)
        layer.build(x.shape)
        layer.gamma.assign(np.linspace(0.5, 1.5, 16))
        layer.beta.assign(np.linspace(-1, 1, 16))
    keras_own = layers[keras.layers.LayerNormalization, "float32"](x)
    np.testing.assert_allclose(layers[LayerNorm, "float32"](x), keras_own, atol=1e-5)
    half = layers[LayerNorm, "mixed_float16"](x.astype(np.float16))
    assert half.dtype == "float16"
    np.testing.assert_allclose(np.asarray(half, np.float32), keras_own, atol=1e-2)


def reference_greedy(model, prompt_ids, count):
    """Greedy decoding by full forward passes over the window the decode loop keeps: the whole
    prefix until a bounded context is full, then its last half, refilled each time it fills up.
    Independent of the cache, the state and the compiled loop."""
    tokens, start = list(prompt_ids), 0
    context = model.context_length
    for t in range(len(prompt_ids) - 1, len(prompt_ids) - 1 + count):
        if context and t - start >= context:
            start = t - context // 2
        logits = np.array(model(np.array([tokens[start:t + 1]], np.int32)))[0, -1]
        logits[UNKNOWN_ID] = -np.inf
        tokens.append(int(logits.argmax()))
    return tokens[len(prompt_ids):]


def test_cached_greedy_decoding_equals_full_passes_also_past_the_context(model):
    count = 3 * (model.context_length or 8)  # the window refills at least twice
    prompt = CharVocab(model.vocabulary).encode("abc")
    cached = np.concatenate(list(generate_ids(model, ["abc"], Sampling(count, temperature=0))), 1)[0]
    assert cached.tolist() == reference_greedy(model, prompt, count)


@pytest.mark.parametrize("name", [n for n in TEXT_MODELS if "seq_len" in model_defaults(registry.get(n))])
def test_a_short_request_to_a_model_with_a_long_context_generates(name):
    """XLA compiles the loop's refill branch even when a request never reaches it: a context
    over twice the token buffer (a short request) once made every such request fail."""
    model = tiny_model(name, seq_len=2 * BUCKET + 2)
    assert len(generate(model, ["ab"], Sampling(3, temperature=0), jit_compile=True)[0]) == 3


def test_uncached_baseline_equals_cached_within_the_context(model):
    count = min(5, (model.context_length or 8) - 3)
    cached = np.concatenate(list(generate_ids(model, ["abc"], Sampling(count, temperature=0))), 1)
    uncached = generate_uncached(model, CharVocab(model.vocabulary).encode("abc")[None], count)
    np.testing.assert_array_equal(cached, uncached)


def test_same_seed_same_text_other_seed_other_text_and_blocks_change_nothing(model):
    sampling = Sampling(40, temperature=1.5, top_p=0.95, repetition_penalty=1.3, seed=5)
    first = generate(model, ["ab", "h"], sampling)
    assert first == generate(model, ["ab", "h"], sampling)
    assert first != generate(model, ["ab", "h"], Sampling(40, temperature=1.5, seed=6))
    blocks = np.concatenate(list(generate_ids(model, ["ab", "h"], sampling, block=7)), 1)
    assert [CharVocab(model.vocabulary).decode(row) for row in blocks] == first


def test_requests_with_the_controls_off_draw_what_the_full_sampler_draws(model):
    """They take a shorter loop (no penalty, bans or filters); top_k = the vocabulary size sends a
    request through the full one without changing its distribution, so the draws must agree."""
    for temperature in (0.0, 1.3):
        plain = generate(model, ["ab", "h"], Sampling(30, temperature=temperature, seed=4))
        full = generate(model, ["ab", "h"], Sampling(30, temperature=temperature, seed=4,
                                                     top_k=model.vocab_size))
        assert plain == full


def test_no_retracing_across_prompt_lengths_and_settings(model):
    generate(model, ["a"], Sampling(5, temperature=0))
    generate(model, ["abcdefg abcdefg"], Sampling(9, top_k=3, top_p=0.5, no_repeat_ngram=2))
    generate(model, ["ab", "abcd"], Sampling(5, temperature=0.7, seed=3))
    generate(model, ["abc"], Sampling(7, repetition_penalty=1.2, seed=1))
    traced = [compiled_decoder(model, filtered=f).experimental_get_tracing_count()
              for f in (False, True)]
    assert traced == [1, 1]


@pytest.mark.parametrize("controls", [dict(temperature=0.9), dict(top_k=3, repetition_penalty=1.3)])
def test_the_served_loop_writes_what_the_loop_of_one_kind_of_request_writes(model, controls):
    """The command line traces only the loop its controls need; a served graph holds both and
    picks per request. Both must write the same tokens."""
    sampling = Sampling(20, seed=2, **controls)
    tokens, lengths, stop = encode_prompts(model.text_tokenizer, ["ab", "h"], 20)
    written = []
    served, cli = decode_loop(model, jit_compile=False), compiled_decoder(model, False, sampling.filters())
    for loop in (served, cli):
        out = loop(tokens, lengths, np.int32(0), stop, np.int32(0), decoder_state(model, 2),
                   *sampling_tensors(sampling))
        written.append(out[0].numpy())
    np.testing.assert_array_equal(*written)


def test_no_repeat_ngram_output_has_no_repeated_ngrams(model):
    text = generate(model, ["a"], Sampling(25, temperature=0, no_repeat_ngram=2))[0]
    full = "a" + text
    bigrams = [full[i:i + 2] for i in range(len(full) - 1)]
    assert len(bigrams) == len(set(bigrams))


def test_metrics_on_hand_made_texts():
    assert repetition_rate("a b c a b c") == pytest.approx(1 / 4)  # abc, bca, cab, abc
    assert repetition_rate("a b c d e") == 0.0
    assert distinct_n(["a b a b"], 1) == pytest.approx(2 / 4)
    assert distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert self_bleu(["the cat sat on the mat"] * 3) == pytest.approx(1.0)
    # Nothing shared: every order's precision is the smoothing epsilon 0.1 over its n-gram count.
    disjoint = (0.1 / 5 * 0.1 / 4 * 0.1 / 3 * 0.1 / 2) ** 0.25
    assert self_bleu(["a b c d e", "f g h i j", "k l m n o"]) == pytest.approx(disjoint)
    stats = text_stability(["a b c a b c", "d e f g h i"])
    assert {"repetition_rate", "distinct_1", "distinct_2", "distinct_3", "self_bleu"} <= set(stats)
    assert spread([{"x": 1.0}, {"x": 3.0}]) == {"x": {"mean": 2.0, "std": 1.0}}


def test_sampling_noise_is_the_same_under_xla_and_in_plain_graphs_and_follows_softmax():
    noise = [tf.function(lambda s: gumbel_noise(row_keys(2, s[0]), s[1], 50), jit_compile=jit)(
        tf.constant([7, 3])).numpy() for jit in (True, False)]
    np.testing.assert_allclose(noise[0], noise[1], rtol=1e-6)  # served graph == compiled CLI loop
    probs = np.array([0.2, 0.3, 0.5], np.float32)
    draws = tf.argmax(np.log(probs) + gumbel_noise(row_keys(4000, 5), 1, 3), -1)
    np.testing.assert_allclose(np.bincount(draws.numpy(), minlength=3) / 4000, probs, atol=0.03)



STREAMED_COMPILATIONS = r"""
import os, sys
sys.path.insert(0, sys.argv[2])
from conftest import tiny_model
from kerasgen.text.decoding import generate_ids
from kerasgen.text.sampling import Sampling
model = tiny_model(sys.argv[1])
count = lambda: len([f for f in os.listdir(sys.argv[3]) if f.endswith("before_optimizations.txt")])
blocks = generate_ids(model, ["ab"], Sampling(40, top_p=0.9), block=8)
next(blocks)
first = count()
list(blocks)
print(first, count())
"""


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_streaming_compiles_the_loop_once_not_once_a_block(name, tmp_path):
    """A slice to the block's start position inside the XLA loop once made every streamed block
    a program of its own: 1.5 s each, a CLI generation of 1000 tokens took a minute."""
    from conftest import TESTS, run_python

    result = run_python(["-c", STREAMED_COMPILATIONS, name, TESTS, str(tmp_path)],
                        env={"XLA_FLAGS": f"--xla_dump_to={tmp_path}"})
    assert result.returncode == 0, result.stderr[-3000:]
    first, after = map(int, result.stdout.split()[-2:])
    assert first > 0 and after == first


@pytest.mark.parametrize("block", [None, 4])
def test_a_stop_string_spanning_tokens_ends_the_text_before_it_and_the_loop_once_all_stopped(
        model, block):
    """The text is the unstopped text up to the stop string's first occurrence, whether the
    tokens come in one call or in blocks; once every row has stopped no more is generated."""
    prompts = ["ab", "h"]
    whole = generate(model, prompts, Sampling(40, temperature=1.0, seed=4))
    stop = whole[0][6:8]  # two characters: two tokens
    sampling = Sampling(40, temperature=1.0, seed=4, stop=(stop, "never"))
    stopped = generate(model, prompts, sampling)
    assert stopped == [sampling.cut(t) for t in whole] and stopped[0] == whole[0][:whole[0].find(stop)]
    both = Sampling(40, temperature=1.0, seed=4, stop=(whole[0][6:8], whole[1][3:5]))
    blocks = list(generate_ids(model, prompts, both, block=block, jit_compile=False))
    assert sum(b.shape[1] for b in blocks) < 40 or block is None  # no block after all stopped
    ids = np.concatenate(blocks, axis=1)
    texts = [both.cut(model.text_tokenizer.decode(row)) for row in ids]
    assert texts == [both.cut(t) for t in whole]
    assert (ids[0, whole[0].find(whole[0][6:8]) + 2:] == 0).all()  # after the stopping token: none


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_the_decoding_bench_scores_each_new_token_with_the_context_before_it(name):
    """bench decoding's own perplexity: every new token scored once, from the tokens before it,
    as one forward pass per token would (within one context, for a model with a bounded one)."""
    from kerasgen.bench.decoding import own_perplexity

    model = tiny_model(name)
    new_tokens = 13 if model.context_length is None else model.context_length - 4
    rng = np.random.default_rng(0)
    prompt, new = rng.integers(1, model.vocab_size, 3), rng.integers(1, model.vocab_size, new_tokens)
    ids = np.concatenate([prompt, new])
    losses = []
    for position in range(len(prompt), len(ids)):
        log_probs = tf.nn.log_softmax(model(ids[None, :position], training=False)[0, -1]).numpy()
        losses.append(-log_probs[ids[position]])
    assert own_perplexity(model, [prompt], [new]) == pytest.approx(np.exp(np.mean(losses)), rel=1e-5)


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_contrastive_and_beam_search_choose_what_keras_hubs_samplers_choose(name):
    """Token for token, for a batch of two prompts, within one context (KerasHub's samplers
    never refill one). Seed 3: a tiny model whose beams differ from greedy decoding."""
    keras_hub = pytest.importorskip("keras_hub")
    longer = {"seq_len": 32} if "seq_len" in model_defaults(registry.get(name)) else {}
    model = tiny_model(name, seed=3, **longer)
    prompts, new = ["ab", "hc"], 20
    for sampler, sampling in [
            (keras_hub.samplers.ContrastiveSampler(k=4, alpha=0.6),
             Sampling(new, penalty_alpha=0.6, top_k=4)),
            (keras_hub.samplers.BeamSampler(num_beams=4), Sampling(new, num_beams=4))]:
        ours = np.concatenate(list(generate_ids(model, prompts, sampling, jit_compile=False)), 1)
        np.testing.assert_array_equal(ours, keras_hub_search(model, sampler, prompts, new))
    greedy = np.concatenate(list(generate_ids(model, prompts, Sampling(new, temperature=0))), 1)
    assert (greedy != ours).any()


@pytest.mark.parametrize("method", ["contrastive", "beam"])
def test_a_search_without_its_penalty_or_beams_is_greedy_decoding_also_past_the_context(
        model, method):
    """Contrastive search at α = 0 and beam search with one beam choose the likeliest token;
    past a bounded context both refill it as the sampling loop does, a token ahead or not."""
    count = 3 * (model.context_length or 8)
    greedy = np.concatenate(list(generate_ids(model, ["abc", "h"], Sampling(count, temperature=0))), 1)
    tokens, lengths, stop = encode_prompts(model.text_tokenizer, ["abc", "h"], count)
    search = compiled_search(model, jit_compile=False, method=method)
    tokens, _ = search(tokens, lengths, stop, *search_tensors(Sampling(count, top_k=4)))
    columns = lengths[:, None] + np.arange(count)[None, :]
    np.testing.assert_array_equal(np.take_along_axis(tokens.numpy(), columns, axis=1), greedy)


@pytest.mark.parametrize("fields", [dict(penalty_alpha=0.6, top_k=3), dict(num_beams=3)])
def test_a_search_gives_each_prompt_what_it_gives_it_alone_and_xla_changes_nothing(model, fields):
    """Prompts of other lengths in one batch: each row's prompt is read before its search starts."""
    sampling = Sampling(12, **fields)
    together = generate(model, ["abc", "h"], sampling, jit_compile=False)
    assert together == [generate(model, [p], sampling, jit_compile=False)[0] for p in ("abc", "h")]
    assert together == generate(model, ["abc", "h"], sampling, jit_compile=True)


@pytest.mark.parametrize("fields", [dict(penalty_alpha=0.6, top_k=4), dict(num_beams=3)])
def test_a_search_ends_before_a_stop_string_spanning_tokens(model, fields):
    """Contrastive search never revises a token: its text is the unstopped text cut at the stop
    string. A beam that meets one keeps it; with a negative length penalty a finished beam
    outranks every longer one, so the returned text ends before a stop string."""
    unstopped = generate(model, ["ab"], Sampling(40, **fields), jit_compile=False)[0]
    stop = unstopped[6:8]
    stopped_fields = dict(fields, length_penalty=-20.0) if "num_beams" in fields else fields
    sampling = Sampling(40, stop=(stop,), **stopped_fields)
    ids = np.concatenate(list(generate_ids(model, ["ab"], sampling, jit_compile=False)), 1)[0]
    text = sampling.cut(model.text_tokenizer.decode(ids))
    if "num_beams" in fields:
        assert len(text) < 38 and (ids[len(text) + 2:] == 0).all()
    else:
        assert text == unstopped[:unstopped.find(stop)]
        assert (ids[len(text) + 2:] == 0).all()  # after the stopping token: none
