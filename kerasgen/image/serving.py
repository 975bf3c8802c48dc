"""What an image model exports: sampling by seed and decoding given latents (SavedModel), and what
LiteRT runs for a model that samples in one pass (a GAN's generator, a VAE's decoder; a model
that samples otherwise, such as the diffusion model, says what in its own module).

Signatures: `serving_default` (seed per row → uint8 images, their latents and
classes) and `decode` (latents → uint8 images). A conditional model's
signatures take an optional `label` per row (−1, the default: any class,
chosen as seed mod classes, or row mod classes for `decode`); a model's
sampling controls (a diffusion model's steps, eta, guidance) are optional
inputs read from their first row. Every input is checked in the graph before
any work: rows, classes and controls beyond the export's limits fail with
INVALID_ARGUMENT.
"""
import inspect

import numpy as np
import tensorflow as tf

ANY_CLASS = -1


def _pixels(images):
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


def _function(body, names, defaults):
    """A function with parameters `names` (those in `defaults` optional) that calls body(**inputs):
    tf.function reads the parameters, and their defaults become the SignatureDef's `defaults`,
    which TF Serving fills in for inputs a request leaves out."""
    signature = inspect.Signature([
        inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          default=defaults.get(name, inspect.Parameter.empty)) for name in names])

    def function(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        return body(**bound.arguments)

    function.__signature__ = signature
    return function


class ImageServing:
    """The graph functions of an image model's signatures; sampling is the model's own `sample`."""

    def __init__(self, model, max_batch=64):
        self.model = model
        self.controls = model.sampling_controls
        self.limits = {"max_batch": max_batch,
                       **{name: f"{low}..{high}" for name, (_, _, low, high) in self.controls.items()}}
        self.server_flags = []

    def _optional_inputs(self):
        """{name: (TensorSpec, default)} of the inputs a request may leave out."""
        inputs = {}
        if self.model.conditional:
            inputs["label"] = (tf.TensorSpec([None], tf.int32, name="label"), [ANY_CLASS])
        for name, (dtype, default, _, _) in self.controls.items():
            inputs[name] = (tf.TensorSpec([None], dtype, name=name), [default])
        return inputs

    def _checked(self, rows, label, controls):
        """(labels per row or None, controls' first rows), once every limit holds."""
        model, limit = self.model, self.limits["max_batch"]
        checks = [tf.debugging.assert_positive(rows, "at least one row per request"),
                  tf.debugging.assert_less_equal(rows, limit, f"at most {limit} rows per request")]
        checks += [tf.debugging.assert_positive(tf.size(v), f"{k} must hold at least one row")
                   for k, v in controls.items()]
        if label is not None:
            checks += [
                tf.debugging.assert_equal(tf.logical_or(tf.size(label) == 1, tf.size(label) == rows),
                                          True, "label must hold one row, or one per row"),
                tf.debugging.assert_greater_equal(label, ANY_CLASS, "label must be ≥ -1 (-1: any class)"),
                tf.debugging.assert_less(label, model.num_classes,
                                         f"label must be < {model.num_classes} (the model's classes)")]
        with tf.control_dependencies(checks):
            first = {k: tf.identity(v[0]) for k, v in controls.items()}
            label = None if label is None else tf.broadcast_to(tf.identity(label), [rows])
        checks = []
        for name, value in first.items():
            _, _, low, high = self.controls[name]
            checks += [tf.debugging.assert_greater_equal(value, tf.cast(low, value.dtype),
                                                         f"{name} must be in [{low}, {high}]"),
                       tf.debugging.assert_less_equal(value, tf.cast(high, value.dtype),
                                                      f"{name} must be in [{low}, {high}]")]
        with tf.control_dependencies(checks):
            return label, {k: tf.identity(v) for k, v in first.items()}

    def latents(self, seed):
        """One latent per row, drawn from that row's seed alone."""
        return tf.map_fn(lambda s: tf.random.stateless_normal([self.model.latent_dim], tf.stack([s, 0])),
                         seed, fn_output_signature=tf.float32)

    def _classes(self, label, fallback):
        """Labels with -1 (any class) replaced by `fallback` mod classes."""
        if label is None:
            return None
        return tf.where(label == ANY_CLASS, tf.math.floormod(fallback, self.model.num_classes), label)

    def endpoints(self):
        optional = self._optional_inputs()
        defaults = {name: tf.constant(default, spec.dtype) for name, (spec, default) in optional.items()}

        def sample(seed, label=None, **controls):
            label, controls = self._checked(tf.size(seed), label, controls)
            latent = self.latents(seed)
            classes = self._classes(label, seed)
            outputs = {"images": _pixels(self.model.sample(latent, classes, seed[0], **controls)),
                       "latent": latent}
            return outputs if classes is None else {**outputs, "label": classes}

        def decode(latent, label=None, **controls):
            rows = tf.shape(latent)[0]
            label, controls = self._checked(rows, label, controls)
            checked = tf.debugging.assert_all_finite(latent, "latent must be finite")
            classes = self._classes(label, tf.range(rows))
            return {"images": _pixels(self.model.sample(checked, classes, 0, **controls))}

        specs = [spec for spec, _ in optional.values()]
        names = list(optional)
        return {
            "serving_default": (_function(sample, ["seed", *names], defaults),
                                [tf.TensorSpec([None], tf.int32, name="seed"), *specs]),
            "decode": (_function(decode, ["latent", *names], defaults),
                       [tf.TensorSpec([None, self.model.latent_dim], tf.float32, name="latent"), *specs]),
        }

    def trackables(self):
        return []

    def warmup_inputs(self):
        optional = {name: np.array(default, spec.dtype.as_numpy_dtype)
                    for name, (spec, default) in self._optional_inputs().items()}
        return {"serving_default": {"seed": np.array([0, 1], np.int32), **optional},
                "decode": {"latent": np.zeros((1, self.model.latent_dim), np.float32), **optional}}


def generator_function(model):
    """latent (1, latent_dim) [, label (1,)] → images in [0, 1]: what LiteRT runs for models that
    sample in one pass."""
    specs = [tf.TensorSpec([1, model.latent_dim], tf.float32, name="latent")]
    if model.conditional:
        specs.append(tf.TensorSpec([1], tf.int32, name="label"))

    @tf.function(input_signature=specs)
    def decode(*latent_and_label):
        return {"images": model.decode(*latent_and_label)}

    return decode.get_concrete_function()


def calibration_inputs(model, count=64, seed=0):
    """Representative inputs for int8: latents from the prior the generator was trained on."""
    rng = np.random.default_rng(seed)
    latents = rng.normal(size=(count, model.latent_dim)).astype("float32")
    labels = [{"label": np.array([i % model.num_classes], np.int32)} if model.conditional else {}
              for i in range(count)]
    return [{"latent": z[None], **label} for z, label in zip(latents, labels)]
