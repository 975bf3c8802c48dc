"""DCGAN: a transposed-convolution generator against a convolutional discriminator."""
import keras

from kerasgen.image.model import GAN
from kerasgen.registry import register


@register("conv", tiny=dict(image_size=8, latent_dim=4, filters=4),
          description="DCGAN (transposed-conv generator, conv discriminator, batch norm, leaky ReLU)")
class DCGAN(GAN):
    """Radford et al.'s DCGAN at small scale: two ×2 upsamplings from image_size/4.

    Batch norm in the generator only, leaky ReLU in the discriminator, strided
    convolutions instead of pooling, tanh output.

    Args:
        filters: channels of the widest convolution (halved at each upsampling).
        d_dropout: dropout before the discriminator's logit.
        image_size (divisible by 4), channels, latent_dim: see `ImageGenerator`.
    """

    def __init__(self, image_size=16, channels=1, latent_dim=32, filters=64, d_dropout=0.3,
                 **kwargs):
        super().__init__(image_size=image_size, channels=channels, latent_dim=latent_dim, **kwargs)
        self.filters, self.d_dropout = filters, d_dropout
        # Synchronized: across replicas the statistics are the global batch's, as on one worker.
        batch_norm = dict(synchronized=True)
        start = self.quarter_size()
        self.generator = keras.Sequential([
            keras.Input((latent_dim,)),
            keras.layers.Dense(start * start * 2 * filters, use_bias=False),
            keras.layers.BatchNormalization(**batch_norm), keras.layers.ReLU(),
            keras.layers.Reshape((start, start, 2 * filters)),
            keras.layers.Conv2DTranspose(filters, 4, strides=2, padding="same", use_bias=False),
            keras.layers.BatchNormalization(**batch_norm), keras.layers.ReLU(),
            keras.layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh",
                                         dtype="float32"),  # float32 outputs when mixed
        ], name="generator")
        self.discriminator = keras.Sequential([
            keras.Input(self.image_shape),
            keras.layers.Conv2D(filters, 4, strides=2, padding="same"), keras.layers.LeakyReLU(0.2),
            keras.layers.Conv2D(2 * filters, 4, strides=2, padding="same"), keras.layers.LeakyReLU(0.2),
            keras.layers.Flatten(), keras.layers.Dropout(d_dropout),
            keras.layers.Dense(1, dtype="float32"),
        ], name="discriminator")

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "d_dropout": self.d_dropout}
