"""Base classes of the image zoo: one sampling API, and a GAN training step shared by both GANs."""
import keras
from keras import ops

from kerasgen.base import GenerativeModel
from kerasgen.image import FAMILY


class ImageGenerator(GenerativeModel):
    """A model that turns latent noise into images in [0, 1].

    Subclasses build `self.generator` (latent (B, latent_dim) → images) and
    train however they like; `generate` is the one way to sample. Training
    noise comes from `self.noise`, seeded by `keras.utils.set_random_seed`
    (the trainer's --seed) when the model is built.

    Args:
        image_size: height and width of the square images.
        channels: 1 (gray) or 3 (RGB).
        latent_dim: size of the noise vector.
    """

    family = FAMILY
    monitor = "val_fid"  # see kerasgen.image.callbacks.ImageLogger
    reconstructs = False  # True: call(images) returns reconstructions (shown in TensorBoard)

    def __init__(self, image_size=16, channels=1, latent_dim=32, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        self.image_shape = (image_size, image_size, channels)
        self.noise = keras.random.SeedGenerator()

    def quarter_size(self):
        """The side of the first feature map of a generator that upsamples twice by 2."""
        if self.image_size % 4:
            raise ValueError(f"{self.zoo_name} needs image_size divisible by 4, got {self.image_size}")
        return self.image_size // 4

    def latents(self, num_images, seed):
        """The same `seed` gives the same latent vectors, so sample grids are comparable."""
        return keras.random.normal((num_images, self.latent_dim), seed=seed)

    def generate(self, num_images, seed):
        """`num_images` images (N, H, W, C) in [0, 1], the same for the same seed."""
        return self.decode(self.latents(num_images, seed))

    def decode(self, latent):
        return self.generator(latent, training=False)

    def call(self, latent, training=False):
        return self.decode(latent)

    def sample_inputs(self, batch_size=2):
        return keras.random.normal((batch_size, self.latent_dim), seed=1)

    def sample_fit_data(self, batch_size=2):
        pixels = ops.arange(batch_size * self.image_size * self.image_size * self.channels)
        return (ops.reshape(ops.cast(pixels % 7, "float32") / 6.0, (batch_size, *self.image_shape)),)

    def get_config(self):
        return {**super().get_config(), "image_size": self.image_size, "channels": self.channels,
                "latent_dim": self.latent_dim}


class GAN(ImageGenerator):
    """Generator vs discriminator with the non-saturating loss (Goodfellow et al.).

    Both networks get the recipe's optimizer, the discriminator at the
    recipe's `d_learning_rate` when set, so a GAN trains from the same shared
    recipes as every other model. Subclasses build `generator` and
    `discriminator` (images → one logit).
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        # One-sided label smoothing keeps the discriminator from overpowering the generator.
        self.bce = keras.losses.BinaryCrossentropy(from_logits=True, label_smoothing=0.1)

    def compile_from_recipe(self, recipe, total_steps, **kwargs):
        from kerasgen.recipes import make_optimizer

        self.compile(optimizer=make_optimizer(recipe, total_steps),
                     d_optimizer=make_optimizer(recipe, total_steps, recipe.d_learning_rate), **kwargs)

    def compile(self, optimizer="adam", d_optimizer=None, **kwargs):
        kwargs.pop("loss", None)
        super().compile(optimizer=optimizer, **kwargs)
        self.d_optimizer = d_optimizer or self.optimizer.__class__.from_config(self.optimizer.get_config())
        if isinstance(self.optimizer, keras.optimizers.LossScaleOptimizer):  # mixed_float16
            self.d_optimizer = keras.optimizers.LossScaleOptimizer(self.d_optimizer)
        # Built now, each for the variables it steps: before any tracing, and so that restoring
        # a backup finds them shaped as they were saved.
        self.optimizer.build(self.generator.trainable_variables)
        self.d_optimizer.build(self.discriminator.trainable_variables)

    @property
    def metrics(self):
        return [self.g_loss_tracker, self.d_loss_tracker]

    def train_step(self, images):
        """One discriminator and one generator step. Across replicas each loss is this
        replica's mean over the global batch's count, so the summed gradients are the global
        mean's; under float16 the optimizers scale the losses."""
        import tensorflow as tf

        from kerasgen.distribute import replica_rows, replicas_in_sync

        replicas = replicas_in_sync()
        noise_shape = (ops.shape(images)[0] * replicas, self.latent_dim)
        real_images = images * 2.0 - 1.0  # the generator's tanh range
        noise = replica_rows(keras.random.normal(noise_shape, seed=self.noise))
        with tf.GradientTape() as tape:
            fake = self.generator(noise, training=True)
            real_logits = self.discriminator(real_images, training=True)
            fake_logits = self.discriminator(fake, training=True)
            d_loss = self.bce(ops.ones_like(real_logits), real_logits) + \
                self.bce(ops.zeros_like(fake_logits), fake_logits)
            scaled = self.d_optimizer.scale_loss(d_loss / replicas)
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))

        noise = replica_rows(keras.random.normal(noise_shape, seed=self.noise))
        with tf.GradientTape() as tape:
            fake_logits = self.discriminator(self.generator(noise, training=True), training=True)
            g_loss = ops.mean(keras.losses.binary_crossentropy(ops.ones_like(fake_logits),
                                                               fake_logits, from_logits=True))
            scaled = self.optimizer.scale_loss(g_loss / replicas)
        g_vars = self.generator.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, g_vars), g_vars))
        self.g_loss_tracker.update_state(g_loss)
        self.d_loss_tracker.update_state(d_loss)
        return {"g_loss": self.g_loss_tracker.result(), "d_loss": self.d_loss_tracker.result()}

    def decode(self, latent):
        return (self.generator(latent, training=False) + 1.0) / 2.0  # tanh → [0, 1]
