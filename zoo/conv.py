"""DCGAN: a transposed-convolution generator against a convolutional discriminator."""
import keras

from kerasgen.image.model import GAN
from kerasgen.registry import register


@register("conv", tiny=dict(image_size=8, latent_dim=4, filters=4, num_classes=2),
          description="DCGAN (transposed-conv generator, conv discriminator, batch norm, leaky ReLU); "
                      "class-conditional on labelled data")
class DCGAN(GAN):
    """Radford et al.'s DCGAN at small scale: two ×2 upsamplings from image_size/4.

    Batch norm in the generator only, leaky ReLU in the discriminator, strided
    convolutions instead of pooling, tanh output.

    Args:
        filters: channels of the widest convolution (halved at each upsampling).
        d_dropout: dropout before the discriminator's logit.
        num_classes: classes to draw on request (0: unconditional; set from the data's labels).
        image_size (divisible by 4), channels, latent_dim: see `ImageGenerator`.
    """

    def __init__(self, image_size=16, channels=1, latent_dim=32, filters=64, d_dropout=0.3,
                 num_classes=0, **kwargs):
        super().__init__(image_size=image_size, channels=channels, latent_dim=latent_dim, **kwargs)
        self.filters, self.d_dropout, self.num_classes = filters, d_dropout, num_classes
        # Synchronized: across replicas the statistics are the global batch's, as on one worker.
        batch_norm = dict(synchronized=True)
        start = self.quarter_size()
        self.generator = self._conditioned(keras.Sequential([
            keras.Input((2 * latent_dim if num_classes else latent_dim,)),
            keras.layers.Dense(start * start * 2 * filters, use_bias=False),
            keras.layers.BatchNormalization(**batch_norm), keras.layers.ReLU(),
            keras.layers.Reshape((start, start, 2 * filters)),
            keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(**batch_norm), keras.layers.ReLU(),
            keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh",
                                         dtype="float32"),  # float32 outputs when mixed
        ], name="upsampler" if num_classes else "generator"), "generator", (latent_dim,), latent_dim)
        pixels = image_size * image_size
        self.discriminator = self._conditioned(keras.Sequential([
            keras.Input((*self.image_shape[:2], channels + 1 if num_classes else channels)),
            keras.layers.Conv2D(filters, 4, strides=2, padding="same"), keras.layers.LeakyReLU(0.2),
            keras.layers.Conv2D(2 * filters, 4, strides=2, padding="same"), keras.layers.LeakyReLU(0.2),
            keras.layers.Flatten(), keras.layers.Dropout(d_dropout),
            keras.layers.Dense(1, dtype="float32"),
        ], name="critic" if num_classes else "discriminator"), "discriminator", self.image_shape, pixels, self.image_shape[:2] + (1,))

    def _conditioned(self, network, name, input_shape, label_size, label_shape=None):
        """`network` itself (as unconditional runs have always saved it), or, when conditional, a
        model `name` of (input, label) that feeds it the input concatenated (on the last axis)
        with the label's embedding."""
        if not self.num_classes:
            return network
        inputs, labels = keras.Input(input_shape), keras.Input((), dtype="int32")
        embedded = keras.layers.Embedding(self.num_classes, label_size, name="label_embedding")(labels)
        if label_shape:
            embedded = keras.layers.Reshape(label_shape)(embedded)
        return keras.Model([inputs, labels], network(keras.layers.Concatenate()([inputs, embedded])),
                           name=name)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "d_dropout": self.d_dropout,
                "num_classes": self.num_classes}
