"""The base of every zoo model: what the trainer may ask of any of them."""
import keras

from kerasgen.errors import ConfigError


class _Traced:
    """The model's traced functions, in a plain object: Keras and TensorFlow track a model's
    attributes for saving, and a traced function saved with the model would weigh on every
    .keras file and SavedModel."""

    def __init__(self):
        self.functions = {}


class GenerativeModel(keras.Model):
    """A keras.Model with a family, trainable by the shared recipes.

    Family base classes (text, image) set `family`; models register with
    `kerasgen.registry.register`, which adds `zoo_name`, `tiny`,
    `description` and `train_defaults`.
    """

    family = None  # a kerasgen.family.Family
    monitor = "val_loss"  # what the best checkpoint and early stopping watch (lower is better)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self._traced = _Traced()

    def traced(self, key, make):
        """The function `make()` returns, made once for this model and kept on it (as keras-hub
        keeps `generate_function`): a decode loop or a sampler, traced on its first call.
        `compile()` starts afresh, as the model may have changed (frozen layers, LoRA)."""
        functions = self._traced.functions
        if key not in functions:
            if not self.built:  # variables must exist before anything is traced
                self(self.sample_inputs(1))
            functions[key] = make()
        return functions[key]

    def compile(self, *args, **kwargs):
        self._traced = _Traced()
        super().compile(*args, **kwargs)

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
