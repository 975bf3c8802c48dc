"""SavedModels in TF Serving's layout, with signatures that do the whole job.

Text models: `serving_default` (prompt string → text), `generate` (every
sampling control as an input) and `logits` (token ids → next-token logits).
Characters ↔ ids happen inside the graph, so a client sends and receives
strings; a prompt character outside the vocabulary becomes the reserved
unknown id 0 (the model reads it as "some other character" and never
generates it) instead of failing the request. Image models:
`serving_default` (seed → uint8 images) and `decode` (latent → images).

Every input has a leading batch dimension, so TF Serving's REST row
(`instances`) and columnar (`inputs`) formats both work; per-request
settings such as `temperature` are read from the first row.
"""
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from kerasgen.data import UNKNOWN_ID
from kerasgen.generation import BUCKET, decode_loop
from kerasgen.serving import GENERATE_DEFAULTS

WARMUP_FILE = "tf_serving_warmup_requests"


def _vector(dtype, name):
    return tf.TensorSpec([None], dtype, name=name)


class TextServing:
    """The graph functions of a text model's signatures; the decode loop is the CLI's own."""

    def __init__(self, model, jit_compile=False):
        self.model = model
        chars = model.vocabulary
        self.table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant([ord(c) for c in chars], tf.int32),
                tf.range(1, len(chars) + 1, dtype=tf.int32)),
            default_value=UNKNOWN_ID)
        self.id_to_char = tf.constant([""] + list(chars))
        # Plain graph by default: stock tensorflow_model_server runs it with no flags. With XLA
        # it is several times faster, but TF Serving then needs --xla_cpu_compilation_enabled.
        self.loop = decode_loop(model, jit_compile=jit_compile)

    def generate(self, prompt, max_new_tokens, temperature, top_k, top_p, repetition_penalty, seed):
        prompt = tf.where(prompt == "", "\n", prompt)  # an empty prompt starts a new line
        ids = tf.ragged.map_flat_values(self.table.lookup, tf.strings.unicode_decode(prompt, "UTF-8"))
        lengths = tf.cast(ids.row_lengths(), tf.int32)
        batch, new = tf.shape(prompt)[0], max_new_tokens[0]
        stop = tf.reduce_max(lengths) + new
        size = (stop + BUCKET - 1) // BUCKET * BUCKET
        tokens = ids.to_tensor(default_value=0, shape=tf.stack([batch, size]))
        tokens, _, _ = self.loop(tokens, lengths, 0, stop, 0, self.model.initial_state(batch),
                                 temperature[0], top_k[0], top_p[0], repetition_penalty[0], 0,
                                 tf.stack([seed[0], 0]))
        token_ids = tf.gather(tokens, lengths[:, None] + tf.range(new)[None, :], batch_dims=1)
        text = tf.strings.reduce_join(tf.gather(self.id_to_char, token_ids), axis=-1)
        return {"text": text, "token_ids": token_ids}

    def endpoints(self):
        def serving_default(prompt):
            rows = tf.shape(prompt)[0:1]
            return self.generate(prompt, **{key: tf.fill(rows, value)
                                            for key, value in GENERATE_DEFAULTS.items()})

        def logits(token_ids):
            return {"logits": self.model(token_ids, training=False)[:, -1]}

        return {
            "serving_default": (serving_default, [_vector(tf.string, "prompt")]),
            "generate": (self.generate, [
                _vector(tf.string, "prompt"), _vector(tf.int32, "max_new_tokens"),
                _vector(tf.float32, "temperature"), _vector(tf.int32, "top_k"),
                _vector(tf.float32, "top_p"), _vector(tf.float32, "repetition_penalty"),
                _vector(tf.int32, "seed")]),
            "logits": (logits, [tf.TensorSpec([None, None], tf.int32, name="token_ids")]),
        }

    def warmup_inputs(self):
        row = {"prompt": np.array(["The "]), "max_new_tokens": np.array([8], np.int32),
               "temperature": np.array([0.8], np.float32), "top_k": np.array([0], np.int32),
               "top_p": np.array([0.9], np.float32),
               "repetition_penalty": np.array([1.1], np.float32), "seed": np.array([1], np.int32)}
        return {"serving_default": {"prompt": row["prompt"]}, "generate": row,
                "logits": {"token_ids": np.ones((1, 8), np.int32)}}


class ImageServing:
    """Sampling by seed (one image per seed row) and decoding given latents, as uint8 pixels."""

    def __init__(self, model):
        self.model = model

    def _pixels(self, images):
        return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)

    def latents(self, seed):
        return tf.map_fn(lambda s: tf.random.stateless_normal([self.model.latent_dim], tf.stack([s, 0])),
                         seed, fn_output_signature=tf.float32)

    def endpoints(self):
        def sample(seed):
            latent = self.latents(seed)
            return {"images": self._pixels(self.model.decode(latent)), "latent": latent}

        def decode(latent):
            return {"images": self._pixels(self.model.decode(latent))}

        return {"serving_default": (sample, [_vector(tf.int32, "seed")]),
                "decode": (decode, [tf.TensorSpec([None, self.model.latent_dim], tf.float32,
                                                  name="latent")])}

    def warmup_inputs(self):
        return {"serving_default": {"seed": np.array([0, 1], np.int32)},
                "decode": {"latent": np.zeros((1, self.model.latent_dim), np.float32)}}


def serving_for(model, jit_compile=False):
    return TextServing(model, jit_compile) if hasattr(model, "vocabulary") else ImageServing(model)


def write_warmup(path, model_name, requests):
    """TF Serving's warmup file: one PredictionLog per signature (replayed at load)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def next_version(model_dir):
    versions = [int(d) for d in os.listdir(model_dir) if d.isdigit()] if os.path.isdir(model_dir) else []
    return max(versions, default=0) + 1


def write_models_config(base):
    """BASE/models.config: every model under BASE, at the path the Docker image mounts (/models)."""
    names = sorted(d for d in os.listdir(base)
                   if os.path.isdir(os.path.join(base, d))
                   and any(v.isdigit() for v in os.listdir(os.path.join(base, d))))
    entries = "".join(f"  config {{\n    name: '{n}'\n    base_path: '/models/{n}'\n"
                      f"    model_platform: 'tensorflow'\n  }}\n" for n in names)
    path = os.path.join(base, "models.config")
    with open(path + ".tmp", "w") as f:
        f.write(f"model_config_list {{\n{entries}}}\n")
    os.replace(path + ".tmp", path)
    return path


def call_every_signature(path, requests):
    """Loads the SavedModel and runs each signature once on `requests`: the export's self-check."""
    loaded = tf.saved_model.load(path)
    return {name: {k: v.numpy() for k, v in loaded.signatures[name](
        **{key: tf.constant(value) for key, value in inputs.items()}).items()}
        for name, inputs in requests.items()}


def export_saved_model(model, model_name, base, version=None, jit_compile=False):
    """Writes BASE/model_name/<version>/ atomically; returns its path.

    The SavedModel is written to a non-numeric temporary sibling, loaded and
    called once, then renamed to its version number, so TF Serving (which
    watches numeric directories) never sees a half-written version.
    """
    model_dir = os.path.join(base, model_name)
    version = version or next_version(model_dir)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} exists; versions are never overwritten "
                              f"(choose another --version, or leave it out for {next_version(model_dir)})")
    temporary = os.path.join(model_dir, f"tmp-{version}-{os.getpid()}")
    shutil.rmtree(temporary, ignore_errors=True)
    serving = serving_for(model, jit_compile)
    archive = keras.export.ExportArchive()
    archive.track(model)
    if isinstance(serving, TextServing):
        archive.track(serving.table)
    for name, (fn, signature) in serving.endpoints().items():
        archive.add_endpoint(name, fn, input_signature=signature)
    archive.write_out(temporary, verbose=False)
    extra = os.path.join(temporary, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    os.makedirs(os.path.join(temporary, "assets"), exist_ok=True)
    write_warmup(os.path.join(extra, WARMUP_FILE), model_name, serving.warmup_inputs())
    call_every_signature(temporary, serving.warmup_inputs())
    os.rename(temporary, final)
    write_models_config(base)
    return final
