"""LiteRT (TFLite) files that run on the stock interpreter with built-in ops only.

The family says what becomes the file (a text model's single-step decoder
with static shapes, an image model's generator); this module freezes it,
converts it, quantizes it and checks that the stock interpreter loads it.
"""
import contextlib
import logging
import tempfile
import warnings

import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2


@contextlib.contextmanager
def _quiet_converter():
    """The converter's own chatter (absl INFO/WARNING lines, TF's deprecated-interpreter
    warning from its int8 calibrator) is not for the user; errors still raise."""
    logger = tf.get_logger()
    level = logger.level
    logger.setLevel(logging.ERROR)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*tf.lite.Interpreter is deprecated.*")
        try:
            yield
        finally:
            logger.setLevel(level)


def convert(function, quantize="none", calibration=None):
    """The .tflite bytes of a concrete function (built-in ops only)."""
    # Weights frozen into constants first: converted as they are, Keras 3 variables stay
    # resource variables (VAR_HANDLE/READ_VARIABLE), which int8 calibration cannot read.
    frozen = convert_variables_to_constants_v2(function)
    output_names = tf.nest.flatten({name: name for name in function.structured_outputs})

    @tf.function(input_signature=function.structured_input_signature[0])
    def named(*inputs):  # freezing returns a flat list: give the outputs their names back
        return dict(zip(output_names, tf.nest.flatten(frozen(*inputs))))

    # Saved as a SavedModel signature so the converter keeps the input and output names.
    with tempfile.TemporaryDirectory() as folder, _quiet_converter():
        # Without custom gradients: inference needs none, and Keras' swish's would not save frozen.
        tf.saved_model.save(tf.Module(), folder, signatures={"serving_default": named},
                            options=tf.saved_model.SaveOptions(experimental_custom_gradients=False))
        converter = tf.lite.TFLiteConverter.from_saved_model(folder)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        if quantize != "none":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":
            if calibration is None:
                raise ValueError("int8 needs calibration inputs")
            converter.representative_dataset = lambda: iter(calibration)
        return converter.convert()


def interpreter(model_bytes):
    """The stock LiteRT interpreter (ai-edge-litert), no Flex delegate."""
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_content=model_bytes)
    runner.allocate_tensors()
    return runner


def run_signature(runner, **inputs):
    """Calls the file's one signature with named inputs; returns its outputs by name."""
    return runner.get_signature_runner()(**inputs)
