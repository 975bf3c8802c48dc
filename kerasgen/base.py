"""The base of every zoo model: what the trainer may ask of any of them."""
import keras

from kerasgen.errors import ConfigError


class GenerativeModel(keras.Model):
    """A keras.Model with a family, trainable by the shared recipes.

    Family base classes (text, image) set `family`; models register with
    `kerasgen.registry.register`, which adds `zoo_name`, `tiny`,
    `description` and `train_defaults`.
    """

    family = None  # a kerasgen.family.Family
    monitor = "val_loss"  # what the best checkpoint and early stopping watch (lower is better)

    def compile_from_recipe(self, recipe, total_steps, **kwargs):
        """Compiles with the recipe's optimizer(s); `kwargs` go to compile().

        The optimizer's variables are made here: made inside the first training step,
        they make tf.function trace that step twice (seconds for a Transformer).
        """
        from kerasgen.recipes import make_optimizer

        self.compile(optimizer=make_optimizer(recipe, total_steps), **kwargs)
        self.optimizer.build(self.trainable_variables)

    def get_config(self):
        """Without the dtype policy: it is the run's training setting (--precision), so a model
        trained in mixed precision loads, evaluates and exports in float32, its weights' type."""
        config = super().get_config()
        config.pop("dtype", None)
        return config

    def sample_inputs(self, batch_size=2):
        """Inputs of `call`: to build the model, and for tests."""
        raise NotImplementedError

    def sample_fit_data(self, batch_size=2):
        """A batch `fit` accepts, for tests: a tuple of its positional arguments."""
        raise NotImplementedError

    def freeze_lower(self, count):
        """Fine-tuning: fixes the `count` lowest layers. Models that can, override this."""
        if count:
            raise ConfigError(f"{self.zoo_name} cannot freeze layers (--freeze_layers={count})")
