"""The classic fully-connected GAN."""
import keras

from kerasgen.image.model import GAN
from kerasgen.registry import register


# An MLP step is cheap and its samples sharpen slowly: three times the epochs.
@register("dense", tiny=dict(image_size=8, latent_dim=4, units=16),
          description="fully-connected GAN (noise → MLP → image; MLP discriminator)",
          train=dict(epochs=30))
class DenseGAN(GAN):
    """Generator and discriminator are two-layer MLPs, as in Goodfellow et al.'s GAN.

    Args:
        units: width of the hidden layers (the generator's second is twice as wide).
        d_dropout: dropout after each hidden layer of the discriminator.
        image_size, channels, latent_dim: see `ImageGenerator`.
    """

    def __init__(self, image_size=16, channels=1, latent_dim=32, units=256, d_dropout=0.3,
                 **kwargs):
        super().__init__(image_size=image_size, channels=channels, latent_dim=latent_dim, **kwargs)
        self.units, self.d_dropout = units, d_dropout
        pixels = image_size * image_size * channels
        self.generator = keras.Sequential([
            keras.Input((latent_dim,)),
            keras.layers.Dense(units), keras.layers.LeakyReLU(0.2),
            keras.layers.Dense(2 * units), keras.layers.LeakyReLU(0.2),
            keras.layers.Dense(pixels, activation="tanh", dtype="float32"),  # float32 when mixed
            keras.layers.Reshape(self.image_shape, dtype="float32"),
        ], name="generator")
        self.discriminator = keras.Sequential([
            keras.Input(self.image_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(2 * units), keras.layers.LeakyReLU(0.2), keras.layers.Dropout(d_dropout),
            keras.layers.Dense(units), keras.layers.LeakyReLU(0.2), keras.layers.Dropout(d_dropout),
            keras.layers.Dense(1, dtype="float32"),
        ], name="discriminator")

    def get_config(self):
        return {**super().get_config(), "units": self.units, "d_dropout": self.d_dropout}
