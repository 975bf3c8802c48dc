"""LiteRT (TFLite) files that run on the stock interpreter with built-in ops only.

The family says what becomes the file (a text model's single-step decoder
with static shapes, an image model's generator); this module freezes it,
converts it, quantizes it and checks that the stock interpreter loads it.
"""
import contextlib
import logging
import tempfile
import warnings

import keras
import numpy as np
import tensorflow as tf


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


def frozen_function(model):
    """The family's LiteRT function of `model`, traced with the weights as constants: converted
    with its variables, Keras 3's resource variables would stay VAR_HANDLE/READ_VARIABLE ops,
    which int8 calibration cannot read."""
    weights = [(variable, tf.constant(np.asarray(variable))) for variable in model.variables]
    with keras.StatelessScope(state_mapping=weights):  # variables read as these constants
        return model.family.tflite_function(model)


def convert(model, quantize="none", calibration=None):
    """The .tflite bytes of `model`'s LiteRT function (built-in ops only)."""
    function = frozen_function(model)
    # Saved as a SavedModel signature so the converter keeps the input and output names.
    with tempfile.TemporaryDirectory() as folder, _quiet_converter():
        # Without custom gradients: inference needs none, and Keras' swish's would not save frozen.
        tf.saved_model.save(tf.Module(), folder, signatures={"serving_default": function},
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
