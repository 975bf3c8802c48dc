"""What a language model exports: SavedModel signatures that do the whole job, and LiteRT step decoders.

Signatures: `serving_default` (prompt → text), `generate` (every control as an
input, each with a default, so only `prompt` is required) and `logits` (token
ids → next-token logits). Characters ↔ ids happen inside the graph with plain
ops (a dense code-point table, no lookup-table resource), so a client sends
and receives strings; a prompt character outside the vocabulary becomes the
reserved unknown id 0 (read as "some other character", never generated)
instead of failing the request.

Every input is validated in the graph before any work: a request outside the
limits chosen at export fails with INVALID_ARGUMENT, never with unbounded
work. Every input has a leading batch dimension, so TF Serving's REST row
(`instances`) and columnar (`inputs`) formats both work; per-request settings
are read from their first row.
"""
import numpy as np
import tensorflow as tf

from kerasgen.text.decoding import BUCKET, decode_loop, decoder_state, search_loop
from kerasgen.text.sampling import (EMPTY_PROMPT, MAX_STOP_BYTES, MAX_STOPS, SAMPLING_ONLY,
                                    SERVED_CONTROLS, Sampling)
from kerasgen.text.tokenizer import UNKNOWN_ID


def _dtype(value):
    return tf.string if isinstance(value, tuple) else tf.float32 if isinstance(value, float) else tf.int32


CONTROLS = {key: _dtype(getattr(Sampling(), key)) for key in SERVED_CONTROLS}


def _vector(dtype, name):
    """A served input: one value a row, or (`stop`) one row of strings a prompt."""
    return tf.TensorSpec([None, None] if name == "stop" else [None], dtype, name=name)


def _stop_tensors(stops):
    """`decoding.stop_tensors` in the graph: (S,) strings → their bytes (S, MAX_STOP_BYTES)
    padded with -1, and their lengths."""
    data = tf.strings.bytes_split(stops)
    codes = data.with_flat_values(tf.cast(tf.io.decode_raw(data.flat_values, tf.uint8,
                                                           fixed_length=1)[:, 0], tf.int32))
    table = codes.to_tensor(default_value=-1, shape=tf.stack([tf.size(stops), MAX_STOP_BYTES]))
    return table, tf.strings.length(stops)


def _cut(text, stops):
    """Each text up to the first occurrence of any of `stops` (Sampling.cut, in the graph)."""
    def cut_at(i, text):
        parts = tf.strings.split(text, sep=stops[i], maxsplit=1)
        return i + 1, parts[:, :1].to_tensor(default_value="", shape=tf.stack([tf.size(text), 1]))[:, 0]

    return tf.while_loop(lambda i, _: i < tf.size(stops), cut_at, (0, text))[1]


class TextServing:
    """The graph functions of a language model's signatures; the decode loop is the CLI's own."""

    def __init__(self, model, jit_compile=False, max_new_tokens=4096, max_prompt_chars=4096,
                 max_batch=64):
        self.model = model
        self.limits = {"max_new_tokens": max_new_tokens, "max_prompt_chars": max_prompt_chars,
                       "max_batch": max_batch}
        self.defaults = Sampling(max_new_tokens=min(Sampling().max_new_tokens, max_new_tokens))
        self.server_flags = ["--xla_cpu_compilation_enabled=true"] if jit_compile else []
        self.tokenizer = model.text_tokenizer
        # Plain graph by default: stock tensorflow_model_server runs it with no flags. With XLA
        # it is several times faster, but TF Serving then needs --xla_cpu_compilation_enabled.
        self.loop = decode_loop(model, jit_compile=jit_compile)
        self.search = search_loop(model, jit_compile=jit_compile)

    def _checked(self, prompt, settings):
        """The inputs, passed only once every limit holds (else InvalidArgumentError)."""
        limits = self.limits
        checks = [tf.debugging.assert_positive(tf.size(prompt), "prompt must hold at least one row"),
                  tf.debugging.assert_less_equal(tf.size(prompt), limits["max_batch"],
                                                 f"at most {limits['max_batch']} prompts per request")]
        checks += [tf.debugging.assert_positive(tf.shape(value)[0], f"{key} must hold at least one row")
                   for key, value in settings.items()]
        with tf.control_dependencies(checks):  # [0] below needs a row
            first = {key: tf.identity(value[0]) for key, value in settings.items()}
        checks = [
            tf.debugging.assert_less_equal(tf.strings.length(prompt, "UTF8_CHAR"),
                                           limits["max_prompt_chars"],
                                           f"prompts are limited to {limits['max_prompt_chars']} characters"),
            tf.debugging.assert_positive(first["max_new_tokens"], "max_new_tokens must be ≥ 1"),
            tf.debugging.assert_less_equal(first["max_new_tokens"], limits["max_new_tokens"],
                                           f"max_new_tokens is limited to {limits['max_new_tokens']}"),
            tf.debugging.assert_non_negative(first["temperature"], "temperature must be ≥ 0"),
            tf.debugging.assert_all_finite(first["temperature"], "temperature must be finite"),
            tf.debugging.assert_non_negative(first["top_k"], "top_k must be ≥ 0"),
            tf.debugging.assert_positive(first["top_p"], "top_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(first["top_p"], 1.0, "top_p must be in (0, 1]"),
            tf.debugging.assert_non_negative(first["min_p"], "min_p must be in [0, 1]"),
            tf.debugging.assert_less_equal(first["min_p"], 1.0, "min_p must be in [0, 1]"),
            tf.debugging.assert_positive(first["typical_p"], "typical_p must be in (0, 1]"),
            tf.debugging.assert_less_equal(first["typical_p"], 1.0, "typical_p must be in (0, 1]"),
            tf.debugging.assert_positive(first["repetition_penalty"], "repetition_penalty must be > 0"),
            tf.debugging.assert_all_finite(first["repetition_penalty"],
                                           "repetition_penalty must be finite"),
            tf.debugging.assert_less_equal(tf.size(first["stop"]), MAX_STOPS,
                                           f"stop takes at most {MAX_STOPS} strings"),
            tf.debugging.assert_positive(tf.strings.length(first["stop"]),
                                         "stop strings must not be empty"),
            tf.debugging.assert_less_equal(tf.strings.length(first["stop"]), MAX_STOP_BYTES,
                                           f"stop strings are limited to {MAX_STOP_BYTES} UTF-8 bytes"),
            tf.debugging.assert_non_negative(first["penalty_alpha"], "penalty_alpha must be in [0, 1]"),
            tf.debugging.assert_less_equal(first["penalty_alpha"], 1.0, "penalty_alpha must be in [0, 1]"),
            tf.debugging.assert_positive(first["num_beams"], "num_beams must be ≥ 1"),
            tf.debugging.assert_all_finite(first["length_penalty"], "length_penalty must be finite"),
        ]
        # The searches: each beam, or each contrastive candidate, is a row the model runs.
        beams, contrastive = first["num_beams"] > 1, first["penalty_alpha"] > 0
        rows = tf.size(prompt) * tf.where(beams, first["num_beams"], tf.where(contrastive, first["top_k"], 1))
        checks += [
            self._holds(rows <= limits["max_batch"], f"prompts × num_beams (or × top_k, in contrastive "
                                                     f"search) are limited to {limits['max_batch']}"),
            self._holds(~contrastive | (first["top_k"] >= 2),
                        "top_k must be ≥ 2 for contrastive search (penalty_alpha > 0)"),
            self._holds(~(beams & contrastive), "num_beams and penalty_alpha are two searches: choose one")]
        unchanged = {name: first[name] == getattr(Sampling, name) for name in SAMPLING_ONLY
                     if name in first}
        checks += [self._holds(~(beams | contrastive) | same, f"{name} narrows sampling and does not "
                                                              f"combine with num_beams or penalty_alpha")
                   for name, same in unchanged.items()]
        with tf.control_dependencies(checks):
            return tf.identity(prompt), {key: tf.identity(value) for key, value in first.items()}

    @staticmethod
    def _holds(condition, message):
        return tf.debugging.assert_equal(condition, True, message)

    def generate(self, prompt, controls, searches=True):
        """Continues each prompt (the `generate` signature's body); `controls`: {SERVED_CONTROLS
        name: its (B,) input}. Without `searches` (`serving_default`, which only samples) the
        graph holds no search loop: half the tracing at export."""
        prompt, s = self._checked(prompt, controls)
        prompt = tf.where(prompt == "", EMPTY_PROMPT, prompt)
        ids = self.tokenizer.graph_encode(prompt)
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        batch, new = tf.shape(prompt)[0], s["max_new_tokens"]
        stop = tf.reduce_max(lengths) + new
        size = (stop + BUCKET - 1) // BUCKET * BUCKET
        tokens = ids.to_tensor(default_value=0, shape=tf.stack([batch, size]))
        stops = _stop_tensors(s["stop"])

        def sampled():
            out, _, state = self.loop(tokens, lengths, 0, stop, 0, decoder_state(self.model, batch),
                                      s["temperature"], s["top_k"], s["top_p"], s["min_p"],
                                      s["typical_p"], s["repetition_penalty"], 0, s["seed"], *stops)
            return out, state[2]

        def searched():
            return self.search(tokens, lengths, stop, s["top_k"], s["penalty_alpha"],
                               s["num_beams"], s["length_penalty"], *stops)

        out, stopped_at = (tf.cond((s["num_beams"] > 1) | (s["penalty_alpha"] > 0), searched, sampled)
                           if searches else sampled())
        columns = lengths[:, None] + tf.range(new)[None, :]
        token_ids = tf.where(columns > stopped_at[:, None], 0,  # after a stop: no tokens
                             tf.gather(out, columns, batch_dims=1))
        text = _cut(self.tokenizer.graph_decode(token_ids), s["stop"])
        return {"text": text, "token_ids": token_ids}

    def endpoints(self):
        # The defaults, within the limits, become the SignatureDef's `defaults`: TF Serving
        # fills them in for inputs a request leaves out, so only `prompt` is required.
        defaults = {key: tf.constant([getattr(self.defaults, key)], dtype, shape=[1, 0] if key == "stop" else [1])
                    for key, dtype in CONTROLS.items()}

        def generate(prompt, max_new_tokens=defaults["max_new_tokens"],
                     temperature=defaults["temperature"], top_k=defaults["top_k"],
                     top_p=defaults["top_p"], min_p=defaults["min_p"],
                     typical_p=defaults["typical_p"],
                     repetition_penalty=defaults["repetition_penalty"], seed=defaults["seed"],
                     stop=defaults["stop"], penalty_alpha=defaults["penalty_alpha"],
                     num_beams=defaults["num_beams"], length_penalty=defaults["length_penalty"]):
            controls = dict(max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
                            top_p=top_p, min_p=min_p, typical_p=typical_p,
                            repetition_penalty=repetition_penalty, seed=seed, stop=stop,
                            penalty_alpha=penalty_alpha, num_beams=num_beams,
                            length_penalty=length_penalty)
            return self.generate(prompt, controls)

        def serving_default(prompt):
            return self.generate(prompt, dict(defaults), searches=False)

        def logits(token_ids):
            checks = [tf.debugging.assert_less_equal(tf.shape(token_ids)[0], self.limits["max_batch"],
                                                     f"at most {self.limits['max_batch']} rows"),
                      tf.debugging.assert_less_equal(tf.shape(token_ids)[1],
                                                     self.limits["max_prompt_chars"],
                                                     f"at most {self.limits['max_prompt_chars']} ids per row"),
                      tf.debugging.assert_positive(tf.shape(token_ids)[1], "at least one id per row"),
                      tf.debugging.assert_non_negative(token_ids, "ids must be ≥ 0"),
                      tf.debugging.assert_less(token_ids, self.model.vocab_size,
                                               f"ids must be < {self.model.vocab_size}")]
            with tf.control_dependencies(checks):
                token_ids = tf.identity(token_ids)
            return {"logits": self.model(token_ids, training=False)[:, -1]}

        return {
            "serving_default": (serving_default, [_vector(tf.string, "prompt")]),
            "generate": (generate, [_vector(tf.string, "prompt")] +
                         [_vector(dtype, key) for key, dtype in CONTROLS.items()]),
            "logits": (logits, [tf.TensorSpec([None, None], tf.int32, name="token_ids")]),
        }

    def trackables(self):
        return []

    def warmup_inputs(self):
        row = {"prompt": np.array(["The "[:self.limits["max_prompt_chars"]]]),
               "max_new_tokens": np.array([min(8, self.limits["max_new_tokens"])], np.int32),
               "temperature": np.array([0.8], np.float32), "top_k": np.array([0], np.int32),
               "top_p": np.array([0.9], np.float32), "min_p": np.array([0.05], np.float32),
               "typical_p": np.array([0.95], np.float32),
               "repetition_penalty": np.array([1.1], np.float32), "seed": np.array([1], np.int32),
               "stop": np.array([["\n\n"]]), "penalty_alpha": np.array([0.0], np.float32),
               "num_beams": np.array([1], np.int32), "length_penalty": np.array([1.0], np.float32)}
        return {"serving_default": {"prompt": row["prompt"]}, "generate": row,
                "logits": {"token_ids": np.ones((1, min(8, self.limits["max_prompt_chars"])), np.int32)}}


def step_function(model):
    """One decoding step at batch 1 with static shapes and named inputs and outputs: what
    LiteRT runs (Keras' GRU over a sequence would need Flex TensorList ops)."""
    state = model.initial_state(1)
    flat_state = tf.nest.flatten(state)
    specs = [tf.TensorSpec([1], tf.int32, name="token_id"), tf.TensorSpec([], tf.int32, name="position")]
    specs += [tf.TensorSpec(s.shape, s.dtype, name=f"state_{i}") for i, s in enumerate(flat_state)]

    @tf.function(input_signature=specs)
    def step(token_id, position, *flat):
        logits, new_state = model.step(token_id, tf.nest.pack_sequence_as(state, list(flat)), position)
        outputs = {"logits": logits}
        outputs.update({f"new_state_{i}": s for i, s in enumerate(tf.nest.flatten(new_state))})
        return outputs

    return step.get_concrete_function()


def calibration_inputs(model, text, count=64):
    """Representative step inputs for int8: the real states met while reading `text`."""
    sample = model.text_tokenizer.encode(text)
    state, inputs = model.initial_state(1), []
    limit = model.context_length or count
    for position, token in enumerate(sample[:min(count, limit)]):
        token = np.array([token], np.int32)
        inputs.append({"token_id": token, "position": np.int32(position),
                       **{f"state_{i}": np.asarray(s) for i, s in enumerate(tf.nest.flatten(state))}})
        _, state = model.step(tf.constant(token), state, position)
    return inputs


def tflite_generate(runner, model, prompt, max_new_tokens):
    """Greedy decoding by looping the LiteRT step decoder, as a mobile app would: the reference
    use. The model's tokenizer encodes `prompt` and decodes the new text."""
    tokenizer = model.text_tokenizer
    state = [np.asarray(s) for s in tf.nest.flatten(model.initial_state(1))]
    signature = runner.get_signature_runner()
    tokens, out = list(tokenizer.encode(prompt or EMPTY_PROMPT)), []
    for position in range(len(tokens) + max_new_tokens - 1):
        if model.context_length and position >= model.context_length:
            raise ValueError("the step decoder's cache is full; re-read a window as decode_loop does")
        result = signature(token_id=np.array([tokens[position]], np.int32),
                           position=np.array(position, np.int32),
                           **{f"state_{i}": s for i, s in enumerate(state)})
        state = [result[f"new_state_{i}"] for i in range(len(state))]
        if position + 1 >= len(tokens):
            logits = result["logits"][0].copy()
            logits[UNKNOWN_ID] = -np.inf
            tokens.append(int(logits.argmax()))
            out.append(tokens[-1])
    return tokenizer.decode(out)
