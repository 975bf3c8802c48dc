"""What an image model exports: sampling by seed and decoding given latents (SavedModel), and its
generator/decoder (LiteRT)."""
import numpy as np
import tensorflow as tf


def _pixels(images):
    return tf.cast(tf.round(tf.clip_by_value(images, 0.0, 1.0) * 255.0), tf.uint8)


class ImageServing:
    """`serving_default`: seed (one image per row) → uint8 images and their latents;
    `decode`: latents → uint8 images. Requests of more than `max_batch` rows fail with
    INVALID_ARGUMENT."""

    def __init__(self, model, max_batch=64):
        self.model = model
        self.limits = {"max_batch": max_batch}
        self.server_flags = []

    def _bounded(self, rows, value):
        check = tf.debugging.assert_less_equal(rows, self.limits["max_batch"],
                                               f"at most {self.limits['max_batch']} rows per request")
        with tf.control_dependencies([check]):
            return tf.identity(value)

    def latents(self, seed):
        return tf.map_fn(lambda s: tf.random.stateless_normal([self.model.latent_dim], tf.stack([s, 0])),
                         seed, fn_output_signature=tf.float32)

    def endpoints(self):
        def sample(seed):
            latent = self.latents(self._bounded(tf.size(seed), seed))
            return {"images": _pixels(self.model.decode(latent)), "latent": latent}

        def decode(latent):
            latent = self._bounded(tf.shape(latent)[0], latent)
            checked = tf.debugging.assert_all_finite(latent, "latent must be finite")
            return {"images": _pixels(self.model.decode(checked))}

        return {"serving_default": (sample, [tf.TensorSpec([None], tf.int32, name="seed")]),
                "decode": (decode, [tf.TensorSpec([None, self.model.latent_dim], tf.float32,
                                                  name="latent")])}

    def trackables(self):
        return []

    def warmup_inputs(self):
        return {"serving_default": {"seed": np.array([0, 1], np.int32)},
                "decode": {"latent": np.zeros((1, self.model.latent_dim), np.float32)}}


def generator_function(model):
    """latent (1, latent_dim) → images in [0, 1]: what LiteRT runs."""
    @tf.function(input_signature=[tf.TensorSpec([1, model.latent_dim], tf.float32, name="latent")])
    def decode(latent):
        return {"images": model.decode(latent)}

    return decode.get_concrete_function()


def calibration_inputs(model, count=64, seed=0):
    """Representative latents for int8: draws from the prior the generator was trained on."""
    latents = np.random.default_rng(seed).normal(size=(count, model.latent_dim)).astype("float32")
    return [{"latent": z[None]} for z in latents]
