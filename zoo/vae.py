"""Convolutional variational autoencoder."""
import keras
from keras import ops

from kerasgen.image.model import ImageGenerator
from kerasgen.registry import register


@register("vae", tiny=dict(image_size=8, latent_dim=2, filters=4),
          description="convolutional VAE (encoder → mean, log-variance → sample → decoder)",
          train=dict(recipe="default"))
class ConvVAE(ImageGenerator):
    """Kingma & Welling's VAE with conv encoder and transposed-conv decoder.

    Loss = reconstruction (binary cross-entropy summed over pixels) + KL to
    N(0, I), both tracked. `call` reconstructs through the posterior mean, so
    inference is deterministic.

    Args:
        filters: channels of the first convolution (doubled in the second).
        image_size (divisible by 4), channels, latent_dim: see `ImageGenerator`.
    """

    monitor = "val_loss"
    reconstructs = True

    def __init__(self, image_size=16, channels=1, latent_dim=8, filters=32, **kwargs):
        super().__init__(image_size=image_size, channels=channels, latent_dim=latent_dim, **kwargs)
        self.filters = filters
        start = self.quarter_size()
        self.encoder = keras.Sequential([
            keras.Input(self.image_shape),
            keras.layers.Conv2D(filters, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2D(2 * filters, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Flatten(), keras.layers.Dense(4 * filters, activation="relu"),
            keras.layers.Dense(2 * latent_dim, dtype="float32"),  # mean, log-variance (float32)
        ], name="encoder")
        self.generator = keras.Sequential([
            keras.Input((latent_dim,)),
            keras.layers.Dense(start * start * 2 * filters, activation="relu"),
            keras.layers.Reshape((start, start, 2 * filters)),
            keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same", activation="relu"),
            keras.layers.Conv2DTranspose(channels, 3, strides=2, padding="same",
                                         dtype="float32"),  # logits, float32 when mixed
        ], name="decoder")
        self.trackers = {name: keras.metrics.Mean(name=name)
                         for name in ("loss", "reconstruction_loss", "kl_loss")}

    @property
    def metrics(self):
        return list(self.trackers.values())

    def encode(self, images):
        """(mean, log_variance), each (B, latent_dim)."""
        stats = self.encoder(images)
        return stats[:, :self.latent_dim], stats[:, self.latent_dim:]

    def decode(self, latent, labels=None):
        return ops.sigmoid(self.generator(latent))

    def call(self, images, training=False):
        return self.decode(self.encode(images)[0])

    def sample_inputs(self, batch_size=2):
        return self.sample_fit_data(batch_size)[0]

    def _loss_terms(self, images, training):
        from kerasgen.distribute import replica_rows, replicas_in_sync

        mean, log_var = self.encode(images)
        noise = 0.0
        if training:
            rows = ops.shape(mean)[0] * replicas_in_sync()
            noise = replica_rows(keras.random.normal((rows, self.latent_dim), seed=self.noise))
        logits = self.generator(mean + ops.exp(0.5 * log_var) * noise)
        bce = ops.sum(keras.losses.binary_crossentropy(images[..., None], logits[..., None],
                                                       from_logits=True), axis=(1, 2, 3))
        kl = -0.5 * ops.sum(1.0 + log_var - ops.square(mean) - ops.exp(log_var), axis=1)
        return {"reconstruction_loss": ops.mean(bce), "kl_loss": ops.mean(kl),
                "loss": ops.mean(bce + kl)}

    def _record(self, losses):
        for name, value in losses.items():
            self.trackers[name].update_state(value)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    def train_step(self, images):
        import tensorflow as tf

        from kerasgen.distribute import replicas_in_sync

        with tf.GradientTape() as tape:
            losses = self._loss_terms(images, training=True)
            # Summed over replicas, these gradients are the global batch's mean's.
            scaled = self.optimizer.scale_loss(losses["loss"] / replicas_in_sync())
        grads = tape.gradient(scaled, self.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.trainable_variables))
        return self._record(losses)

    def test_step(self, images):
        return self._record(self._loss_terms(images, training=False))

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
