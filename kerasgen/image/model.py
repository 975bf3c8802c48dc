"""Base classes of the image zoo: one sampling API, and a GAN training step shared by both GANs."""
import keras
from keras import ops

from kerasgen.base import GenerativeModel
from kerasgen.errors import UsageError
from kerasgen.image import FAMILY


class ImageGenerator(GenerativeModel):
    """A model that turns latent noise (and, when conditional, a class label) into images in [0, 1].

    Subclasses build `self.generator` (latent (B, latent_dim) → images) and
    train however they like; `generate` is the one way to sample. Training
    noise comes from `self.noise`, seeded by `keras.utils.set_random_seed`
    (the trainer's --seed) when the model is built.

    Models that can draw a requested class take `num_classes` (0: unconditional);
    the image family sets it from the data's labels. A conditional model's
    `call` takes (latent, labels) and trains on (images, labels) batches.

    Args:
        image_size: height and width of the square images.
        channels: 1 (gray) or 3 (RGB).
        latent_dim: size of the noise vector.
    """

    family = FAMILY
    monitor = "val_fid"  # see kerasgen.image.callbacks.ImageLogger
    reconstructs = False  # True: call(images) returns reconstructions (shown in TensorBoard)
    num_classes = 0  # conditional models set it in __init__
    # Sampling controls beyond seed and label: {name: (dtype, default, lowest, highest)}, so the
    # CLI and the served signatures offer, check and bound them without knowing the model.
    sampling_controls = {}

    def __init__(self, image_size=16, channels=1, latent_dim=32, **kwargs):
        super().__init__(**kwargs)
        self.image_size, self.channels, self.latent_dim = image_size, channels, latent_dim
        self.image_shape = (image_size, image_size, channels)
        self.noise = keras.random.SeedGenerator()

    @property
    def conditional(self):
        return self.num_classes > 0

    def quarter_size(self):
        """The side of the first feature map of a generator that upsamples twice by 2."""
        if self.image_size % 4:
            raise ValueError(f"{self.zoo_name} needs image_size divisible by 4, got {self.image_size}")
        return self.image_size // 4

    def latents(self, num_images, seed):
        """The same `seed` gives the same latent vectors, so sample grids are comparable."""
        return keras.random.normal((num_images, self.latent_dim), seed=seed)

    def default_labels(self, num_images):
        """Classes 0, 1, …, num_classes − 1, 0, 1, …: every class as often, in a fixed order."""
        return ops.arange(num_images, dtype="int32") % max(self.num_classes, 1)

    def check_labels(self, labels, num_images):
        """`labels` as an int32 array of `num_images` valid classes (None: the default ones); a
        wrong count, an out-of-range class or labels for an unconditional model is a UsageError."""
        import numpy as np

        if labels is None:
            return self.default_labels(num_images) if self.conditional else None
        if not self.conditional:
            raise UsageError(f"this {self.zoo_name} model is unconditional (trained without labels, "
                             f"or with --num_classes=0): it takes no labels")
        labels = np.asarray(labels)
        if labels.shape != (num_images,) or labels.dtype.kind not in "iu":
            raise UsageError(f"expected {num_images} integer labels (one per sample), got "
                             f"{labels.size} of {labels.dtype}")
        if labels.min() < 0 or labels.max() >= self.num_classes:
            raise UsageError(f"labels must be classes 0..{self.num_classes - 1}, got "
                             f"{labels.min()}..{labels.max()}")
        return ops.convert_to_tensor(labels.astype("int32"))

    def check_controls(self, controls):
        """The given sampling controls within their bounds (UsageError names the first that is not)."""
        for name, value in controls.items():
            if name not in self.sampling_controls:
                known = ", ".join(self.sampling_controls) or "none"
                raise UsageError(f"{self.zoo_name} has no sampling control {name!r} (it has: {known})")
            _, _, low, high = self.sampling_controls[name]
            if not low <= value <= high:
                raise UsageError(f"{name} must be in [{low}, {high}], got {value}")
        return controls

    def generate(self, num_images, seed, labels=None, **controls):
        """`num_images` images (N, H, W, C) in [0, 1], the same for the same seed and labels.
        `labels`: one class per image for conditional models (default: `default_labels`);
        `controls`: the model's `sampling_controls`."""
        labels = self.check_labels(labels, num_images)
        return self.sample(self.latents(num_images, seed), labels, seed, **self.check_controls(controls))

    def sample(self, latent, labels, seed, **controls):
        """Latents (and labels) → images in [0, 1], given the sampling controls; `seed` draws any
        noise sampling itself needs (none in one-pass models). What generate and serving call."""
        return self.decode(latent, labels, **controls)

    def decode(self, latent, labels=None):
        return self.generator(self._inputs(latent, labels), training=False)

    def _inputs(self, latent, labels):
        """What a conditional network takes: (latent, labels), the default labels when none."""
        if not self.conditional:
            return latent
        latent = ops.convert_to_tensor(latent, "float32")
        labels = self.default_labels(ops.shape(latent)[0]) if labels is None else labels
        return [latent, ops.convert_to_tensor(labels, "int32")]

    def call(self, inputs, training=False):
        return self.decode(*inputs) if self.conditional else self.decode(inputs)

    def sample_inputs(self, batch_size=2):
        latent = keras.random.normal((batch_size, self.latent_dim), seed=1)
        return (latent, self.default_labels(batch_size)) if self.conditional else latent

    def sample_fit_data(self, batch_size=2):
        pixels = ops.arange(batch_size * self.image_size * self.image_size * self.channels)
        images = ops.reshape(ops.cast(pixels % 7, "float32") / 6.0, (batch_size, *self.image_shape))
        return (images, self.default_labels(batch_size)) if self.conditional else (images,)

    def split_batch(self, batch):
        """A training batch → (images, labels or None)."""
        return tuple(batch) if self.conditional else (batch, None)

    def litert_function(self):
        """The concrete function that becomes the .tflite file (see kerasgen.image.serving)."""
        from kerasgen.image.serving import generator_function

        return generator_function(self)

    def litert_calibration(self, count=64):
        from kerasgen.image.serving import calibration_inputs

        return calibration_inputs(self, count)

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

    def _judge(self, images, labels):
        return self.discriminator([images, labels] if self.conditional else images, training=True)

    def train_step(self, batch):
        """One discriminator and one generator step (the fakes drawn for the real batch's labels,
        when conditional). Across replicas each loss is this
        replica's mean over the global batch's count, so the summed gradients are the global
        mean's; under float16 the optimizers scale the losses."""
        import tensorflow as tf

        from kerasgen.distribute import replica_rows, replicas_in_sync

        images, labels = self.split_batch(batch)
        replicas = replicas_in_sync()
        noise_shape = (ops.shape(images)[0] * replicas, self.latent_dim)
        real_images = images * 2.0 - 1.0  # the generator's tanh range
        noise = replica_rows(keras.random.normal(noise_shape, seed=self.noise))
        with tf.GradientTape() as tape:
            fake = self.generator(self._inputs(noise, labels), training=True)
            real_logits = self._judge(real_images, labels)
            fake_logits = self._judge(fake, labels)
            d_loss = self.bce(ops.ones_like(real_logits), real_logits) + \
                self.bce(ops.zeros_like(fake_logits), fake_logits)
            scaled = self.d_optimizer.scale_loss(d_loss / replicas)
        d_vars = self.discriminator.trainable_variables
        self.d_optimizer.apply_gradients(zip(tape.gradient(scaled, d_vars), d_vars))

        noise = replica_rows(keras.random.normal(noise_shape, seed=self.noise))
        with tf.GradientTape() as tape:
            fake_logits = self._judge(self.generator(self._inputs(noise, labels), training=True), labels)
            g_loss = ops.mean(keras.losses.binary_crossentropy(ops.ones_like(fake_logits),
                                                               fake_logits, from_logits=True))
            scaled = self.optimizer.scale_loss(g_loss / replicas)
        g_vars = self.generator.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, g_vars), g_vars))
        self.g_loss_tracker.update_state(g_loss)
        self.d_loss_tracker.update_state(d_loss)
        return {"g_loss": self.g_loss_tracker.result(), "d_loss": self.d_loss_tracker.result()}

    def decode(self, latent, labels=None):
        return (super().decode(latent, labels) + 1.0) / 2.0  # tanh → [0, 1]
