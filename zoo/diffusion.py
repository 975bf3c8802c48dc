"""A denoising diffusion model: a small U-Net trained to predict noise, sampled with DDIM."""
import math

import keras
import numpy as np
import tensorflow as tf
from keras import ops

from kerasgen.image.model import ImageGenerator
from kerasgen.registry import register

# keras-io's DDIM schedule: diffusion time t ∈ [0, 1] runs the signal rate from 0.95 down to 0.02
# along a cosine, so noise² + signal² = 1 everywhere and neither end is degenerate.
MAX_SIGNAL_RATE, MIN_SIGNAL_RATE = 0.95, 0.02
MAX_STEPS = 1000  # the most DDIM steps one request may ask for


def diffusion_rates(t):
    """(noise rates, signal rates) at diffusion times `t` (tensors or numpy arrays)."""
    start, end = math.acos(MAX_SIGNAL_RATE), math.acos(MIN_SIGNAL_RATE)
    angles = start + ops.convert_to_tensor(t, "float32") * (end - start)
    return ops.sin(angles), ops.cos(angles)


def ddim_update(x, predicted_noise, t, t_next, eta, fresh_noise):
    """One DDIM step from time t to t_next < t (Song et al., eq. 12): (x at t_next, the predicted
    clean image). eta = 0 is deterministic; 1 is DDPM's ancestral noise level. The prediction
    is clipped to the data range [-1, 1] and the noise re-derived from it, which keeps few-step
    samples from overshooting. Plain arithmetic, so the served graph and LiteRT's Python loop
    share it."""
    noise_rate, signal_rate = diffusion_rates(t)
    next_noise_rate, next_signal_rate = diffusion_rates(t_next)
    clean = ops.clip((x - noise_rate * predicted_noise) / signal_rate, -1.0, 1.0)
    predicted_noise = (x - signal_rate * clean) / noise_rate
    sigma = eta * next_noise_rate / noise_rate * ops.sqrt(
        ops.maximum(1.0 - ops.square(signal_rate / next_signal_rate), 0.0))
    direction = ops.sqrt(ops.maximum(ops.square(next_noise_rate) - ops.square(sigma), 0.0))
    return next_signal_rate * clean + direction * predicted_noise + sigma * fresh_noise, clean


@keras.saving.register_keras_serializable(package="kerasgen")
class SinusoidalEmbedding(keras.layers.Layer):
    """Noise variance (B,) → (B, dim) sines and cosines at frequencies from 1 to 1000."""

    def __init__(self, dim, **kwargs):
        super().__init__(**kwargs)
        self.dim = dim

    def call(self, variance):
        frequencies = ops.exp(ops.linspace(0.0, math.log(1000.0), self.dim // 2))
        angles = 2.0 * math.pi * ops.cast(variance, "float32")[:, None] * frequencies[None, :]
        return ops.cast(ops.concatenate([ops.sin(angles), ops.cos(angles)], axis=-1), self.compute_dtype)

    def get_config(self):
        return {**super().get_config(), "dim": self.dim}


def _groups(width):
    return math.gcd(8, width)


def residual_block(x, embedding, width):
    """GroupNorm → swish → conv, plus the (time, label) embedding, twice, with a skip."""
    skip = x if x.shape[-1] == width else keras.layers.Conv2D(width, 1)(x)
    h = keras.layers.Activation("swish")(keras.layers.GroupNormalization(_groups(x.shape[-1]))(x))
    h = keras.layers.Conv2D(width, 3, padding="same")(h)
    h = h + keras.layers.Reshape((1, 1, width))(keras.layers.Dense(width)(embedding))
    h = keras.layers.Activation("swish")(keras.layers.GroupNormalization(_groups(width))(h))
    return skip + keras.layers.Conv2D(width, 3, padding="same")(h)


def attention_block(x, heads=4):
    """Self-attention over every position of a (small) feature map, with a skip."""
    _, height, width, channels = x.shape
    h = keras.layers.GroupNormalization(_groups(channels))(x)
    h = keras.layers.Reshape((height * width, channels))(h)
    h = keras.layers.MultiHeadAttention(heads, max(1, channels // heads))(h, h)
    return x + keras.layers.Reshape((height, width, channels))(h)


@register("diffusion", tiny=dict(image_size=8, filters=4, levels=2, ema=0.9, num_classes=2),
          description="denoising diffusion (U-Net noise predictor, cosine schedule, EMA, DDIM "
                      "sampling); class-conditional with classifier-free guidance on labelled data",
          train=dict(recipe="diffusion", batch_size=32))  # at equal time: more steps beat bigger batches
class DiffusionModel(ImageGenerator):
    """Ho et al.'s denoising diffusion, sampled with Song et al.'s DDIM, at small scale.

    The U-Net sees a noisy image and its noise variance (sinusoidally
    embedded) and predicts the noise; training draws a diffusion time per image.
    An exponential moving average of the weights (`ema_network`) does the
    sampling. Conditional: the label embedding joins the time embedding, and
    `label_dropout` of training labels become the null class, so one network
    predicts both ways and sampling mixes them with the `guidance` scale
    (Ho & Salimans' classifier-free guidance; 1 = no guidance).

    The latent of `decode` is the starting noise image, flattened
    (latent_dim = H·W·C): with eta = 0, sampling is a fixed map from it.

    Args:
        filters: channels at full resolution (doubled at each lower one, up to 4×).
        levels: resolutions (image_size must divide by 2^(levels − 1)).
        blocks: residual blocks per resolution on each side.
        attention: self-attention at the lowest resolution.
        ema: the weight average's momentum.
        label_dropout: share of training labels replaced by the null class.
        num_classes: classes to draw on request (0: unconditional; set from the data's labels).
        image_size, channels: see `ImageGenerator`.
    """

    sampling_controls = {"steps": ("int32", 20, 1, MAX_STEPS),  # DDIM steps: quality for time
                         "eta": ("float32", 0.0, 0.0, 1.0),  # 0: deterministic; 1: DDPM's noise
                         "guidance": ("float32", 1.5, 0.0, 20.0)}  # classifier-free guidance scale

    def __init__(self, image_size=16, channels=1, filters=16, levels=3, blocks=1, attention=True,
                 ema=0.995, label_dropout=0.1, num_classes=0, **kwargs):
        super().__init__(image_size=image_size, channels=channels,
                         latent_dim=image_size * image_size * channels, **kwargs)
        if image_size % 2 ** (levels - 1) or levels < 1:
            raise ValueError(f"diffusion needs image_size divisible by 2^(levels - 1) = "
                             f"{2 ** (levels - 1)}, got image_size={image_size}, levels={levels}")
        if not 0.0 <= ema < 1.0 or not 0.0 <= label_dropout < 1.0:
            raise ValueError(f"ema={ema} and label_dropout={label_dropout} must be in [0, 1)")
        self.filters, self.levels, self.blocks, self.attention = filters, levels, blocks, attention
        self.ema, self.label_dropout, self.num_classes = ema, label_dropout, num_classes
        self.network = self._unet("network")
        self.ema_network = self._unet("ema_network")
        self.ema_network.trainable = False
        self.ema_network.set_weights(self.network.get_weights())
        self.loss_tracker = keras.metrics.Mean(name="loss")

    def _unet(self, name):
        """(noisy images, noise variances[, labels]) → predicted noise."""
        widths = [self.filters * min(2 ** level, 4) for level in range(self.levels)]
        images, variance = keras.Input(self.image_shape), keras.Input(())
        inputs = [images, variance]
        embedding = SinusoidalEmbedding(self.filters)(variance)
        if self.conditional:
            labels = keras.Input((), dtype="int32")
            inputs.append(labels)
            # The extra row is the null class: "no label", for classifier-free guidance.
            # Initialized at the sinusoids' scale (±1), not Keras' ±0.05: a label 20× quieter than
            # the time is learned thousands of steps later.
            label = keras.layers.Embedding(self.num_classes + 1, self.filters, name="label_embedding",
                                           embeddings_initializer=keras.initializers.RandomNormal(
                                               stddev=1.0))(labels)
            embedding = keras.layers.Concatenate()([embedding, label])
        embedding = keras.layers.Dense(4 * self.filters, activation="swish")(embedding)
        x = keras.layers.Conv2D(widths[0], 3, padding="same")(images)
        skips = []
        for level, width in enumerate(widths):  # down: (B, S / 2^level, S / 2^level, width)
            for _ in range(self.blocks):
                x = residual_block(x, embedding, width)
                skips.append(x)
            if level < self.levels - 1:
                x = keras.layers.Conv2D(width, 3, strides=2, padding="same")(x)
        x = residual_block(x, embedding, widths[-1])
        if self.attention:
            x = attention_block(x)
        x = residual_block(x, embedding, widths[-1])
        for level, width in reversed(list(enumerate(widths))):  # up, joined with the skips
            for _ in range(self.blocks):
                x = residual_block(keras.layers.Concatenate()([x, skips.pop()]), embedding, width)
            if level:
                x = keras.layers.Conv2D(widths[level - 1], 3, padding="same")(
                    keras.layers.UpSampling2D(2)(x))
        x = keras.layers.Activation("swish")(keras.layers.GroupNormalization(_groups(widths[0]))(x))
        noise = keras.layers.Conv2D(self.channels, 3, padding="same", dtype="float32")(x)  # float32 when mixed
        return keras.Model(inputs, noise, name=name)

    @property
    def metrics(self):
        return [self.loss_tracker]

    def predict_noise(self, noisy, variance, labels=None, guidance=1.0):
        """The weight average's noise estimate; with labels, classifier-free guided:
        unconditional + guidance · (conditional − unconditional), from one doubled batch."""
        if labels is None:
            return self.ema_network([noisy, variance])
        null = ops.full_like(labels, self.num_classes)
        both = self.ema_network([ops.concatenate([noisy, noisy]), ops.concatenate([variance, variance]),
                                 ops.concatenate([labels, null])])
        conditioned, unconditioned = ops.split(both, 2)
        return unconditioned + guidance * (conditioned - unconditioned)

    def train_step(self, batch):
        """Noise prediction (mean squared error) at a uniform diffusion time per image, then one
        step of the weight average (its momentum warms up over the first steps, as
        tf.train.ExponentialMovingAverage's num_updates)."""
        from kerasgen.distribute import replica_rows, replicas_in_sync

        images, labels = self.split_batch(batch)
        replicas = replicas_in_sync()
        rows = ops.shape(images)[0] * replicas  # drawn for the global batch, sliced per replica
        noise = replica_rows(keras.random.normal((rows, *self.image_shape), seed=self.noise))
        times = replica_rows(keras.random.uniform((rows,), seed=self.noise))
        noise_rates, signal_rates = diffusion_rates(times)
        noisy = (signal_rates[:, None, None, None] * (images * 2.0 - 1.0) +
                 noise_rates[:, None, None, None] * noise)
        inputs = [noisy, ops.square(noise_rates)]
        if self.conditional:
            dropped = replica_rows(keras.random.uniform((rows,), seed=self.noise)) < self.label_dropout
            inputs.append(ops.where(dropped, self.num_classes, ops.cast(labels, "int32")))
        with tf.GradientTape() as tape:
            loss = ops.mean(ops.square(self.network(inputs, training=True) - noise))
            scaled = self.optimizer.scale_loss(loss / replicas)
        variables = self.network.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(scaled, variables), variables))
        step = ops.cast(self.optimizer.iterations, "float32")
        momentum = ops.minimum(self.ema, (1.0 + step) / (10.0 + step))
        for average, weight in zip(self.ema_network.weights, self.network.weights):
            average.assign(momentum * average + (1.0 - momentum) * ops.cast(weight, average.dtype))
        self.loss_tracker.update_state(loss)
        return {"loss": self.loss_tracker.result()}

    def sample(self, latent, labels, seed, **controls):
        return self.decode(latent, labels, seed=seed, **controls)

    def decode(self, latent, labels=None, seed=0, **controls):
        """Starting noise (B, latent_dim) → images in [0, 1] after `steps` DDIM steps (the
        `sampling_controls`, their defaults where not given); `seed` draws the fresh noise of
        eta > 0."""
        sampler = self.traced("ddim", lambda: tf.function(self._sample, reduce_retracing=True))
        controls = {name: tf.cast(controls.get(name, default), dtype)
                    for name, (dtype, default, _, _) in self.sampling_controls.items()}
        if self.conditional and labels is None:
            labels = self.default_labels(ops.shape(latent)[0])
        labels = tf.zeros([0], tf.int32) if labels is None else tf.cast(labels, tf.int32)
        return sampler(tf.cast(latent, tf.float32), labels, tf.cast(seed, tf.int32), **controls)

    def _sample(self, latent, labels, seed, steps, eta, guidance):
        """keras-io's reverse diffusion with DDIM steps from t = 1 down to t = 1/steps; the last
        clean-image prediction is the sample."""
        x = tf.reshape(latent, [-1, *self.image_shape])
        labels = labels if self.conditional else None
        variance_shape = tf.shape(x)[:1]

        def step(i, x, clean):
            t = 1.0 - tf.cast(i, tf.float32) / tf.cast(steps, tf.float32)
            t_next = t - 1.0 / tf.cast(steps, tf.float32)
            noise_rate, _ = diffusion_rates(t)
            predicted = self.predict_noise(x, tf.fill(variance_shape, noise_rate ** 2), labels, guidance)
            fresh = tf.random.stateless_normal(tf.shape(x), tf.stack([seed, i]))
            x, clean = ddim_update(x, predicted, t, t_next, eta, fresh)
            return i + 1, x, clean

        _, _, clean = tf.while_loop(lambda i, *_: i < steps, step, (0, x, tf.zeros_like(x)))
        return (clean + 1.0) / 2.0

    def litert_function(self):
        return denoiser_function(self)

    def litert_calibration(self, count=64):
        return denoiser_calibration(self, count)

    def get_config(self):
        config = super().get_config()
        config.pop("latent_dim")
        return {**config, "filters": self.filters, "levels": self.levels, "blocks": self.blocks,
                "attention": self.attention, "ema": self.ema, "label_dropout": self.label_dropout,
                "num_classes": self.num_classes}


def denoiser_function(model):
    """A diffusion model's noise predictor at batch 1: noisy image (1, H, W, C) and its noise
    variance (1,) [, label (1,), the null class num_classes for none] → predicted noise. The
    sampling loop stays outside, as in `litert_sample`."""
    specs = [tf.TensorSpec([1, *model.image_shape], tf.float32, name="noisy_images"),
             tf.TensorSpec([1], tf.float32, name="noise_variance")]
    if model.conditional:
        specs.append(tf.TensorSpec([1], tf.int32, name="label"))

    @tf.function(input_signature=specs)
    def denoise(*inputs):
        return {"noise": model.ema_network(list(inputs), training=False)}

    return denoise.get_concrete_function()


def denoiser_calibration(model, count=64, seed=0):
    """Representative denoiser inputs: noise at diffusion times spread over the whole schedule."""
    rng = np.random.default_rng(seed)
    inputs = []
    for i in range(count):
        noise_rate, _ = diffusion_rates(np.float32((i + 0.5) / count))
        row = {"noisy_images": rng.normal(size=(1, *model.image_shape)).astype("float32"),
               "noise_variance": np.array([float(noise_rate) ** 2], np.float32)}
        if model.conditional:
            row["label"] = np.array([i % (model.num_classes + 1)], np.int32)
        inputs.append(row)
    return inputs


def litert_sample(runner, model, latent, label=None, steps=20, guidance=None):
    """Deterministic DDIM (eta = 0) by looping the LiteRT denoiser, as a mobile app would: the
    reference use of a diffusion model's .tflite. latent: the starting noise (latent_dim,);
    guidance: the model's default when None."""
    if guidance is None:
        guidance = model.sampling_controls["guidance"][1]
    denoise = runner.get_signature_runner()
    x = np.asarray(latent, np.float32).reshape(1, *model.image_shape)
    clean = x
    for i in range(steps):
        t, t_next = 1.0 - i / steps, 1.0 - (i + 1) / steps
        variance = np.array([float(diffusion_rates(np.float32(t))[0]) ** 2], np.float32)
        if label is None:
            extra = {"label": np.array([model.num_classes], np.int32)} if model.conditional else {}
            noise = denoise(noisy_images=x, noise_variance=variance, **extra)["noise"]
        else:
            conditioned, unconditioned = (
                denoise(noisy_images=x, noise_variance=variance, label=np.array([c], np.int32))["noise"]
                for c in (label, model.num_classes))
            noise = unconditioned + guidance * (conditioned - unconditioned)
        x, clean = (np.asarray(v) for v in ddim_update(x, noise, np.float32(t), np.float32(t_next),
                                                       0.0, np.zeros_like(x)))
    return (clean[0] + 1.0) / 2.0
