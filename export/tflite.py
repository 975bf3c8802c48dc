"""LiteRT (TFLite) files that run on the stock interpreter with built-in ops only.

A text model becomes a single-step decoder with static shapes — token id,
position and the GRU state or Transformer key/value cache in; logits and the
new state out — which an app calls in a loop (Keras' GRU layer over a
sequence would need Flex TensorList ops). An image model becomes its
generator/decoder: latent (1, latent_dim) in, images in [0, 1] out.
"""
import tempfile

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


def _step_function(model):
    """The concrete function of one decoding step at batch 1, inputs and outputs named."""
    state = model.initial_state(1)
    flat_state = tf.nest.flatten(state)
    specs = [tf.TensorSpec([1], tf.int32, name="token_id"), tf.TensorSpec([], tf.int32, name="position")]
    specs += [tf.TensorSpec(s.shape, s.dtype, name=f"state_{i}") for i, s in enumerate(flat_state)]

    @tf.function(input_signature=specs)
    def step(token_id, position, *flat):
        logits, new_state = model.step(token_id, tf.nest.pack_sequence_as(state, list(flat)), position)
        outputs = {"logits": logits}
        outputs.update({f"new_state_{i}": s for i, s in enumerate(tf.nest.flatten(new_state))})
        return outputs

    return step.get_concrete_function()


def _generator_function(model):
    @tf.function(input_signature=[tf.TensorSpec([1, model.latent_dim], tf.float32, name="latent")])
    def decode(latent):
        return {"images": model.decode(latent)}

    return decode.get_concrete_function()


def calibration_inputs(model, sample, count=64):
    """Representative inputs for int8: real states met while reading `sample` (ids or latents)."""
    if not hasattr(model, "vocabulary"):
        return [{"latent": np.asarray(z[None], np.float32)} for z in sample[:count]]
    state, inputs = model.initial_state(1), []
    limit = model.context_length or count
    for position, token in enumerate(sample[:min(count, limit)]):
        token = np.array([token], np.int32)
        inputs.append({"token_id": token, "position": np.int32(position),
                       **{f"state_{i}": np.asarray(s) for i, s in enumerate(tf.nest.flatten(state))}})
        _, state = model.step(tf.constant(token), state, position)
    return inputs


def convert(model, quantize="none", calibration=None):
    """The model's .tflite bytes (built-in ops only)."""
    function = _step_function(model) if hasattr(model, "vocabulary") else _generator_function(model)
    # Weights frozen into constants first: converted as they are, Keras 3 variables stay
    # resource variables (VAR_HANDLE/READ_VARIABLE), which int8 calibration cannot read.
    frozen = convert_variables_to_constants_v2(function)
    output_names = tf.nest.flatten({name: name for name in function.structured_outputs})

    @tf.function(input_signature=function.structured_input_signature[0])
    def named(*inputs):  # freezing returns a flat list: give the outputs their names back
        return dict(zip(output_names, tf.nest.flatten(frozen(*inputs))))

    # Saved as a SavedModel signature so the converter keeps the input and output names.
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(tf.Module(), folder, signatures={"serving_default": named})
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


def tflite_generate(runner, model, prompt_ids, max_new_tokens):
    """Greedy decoding by looping the step decoder, as a mobile app would: the reference use."""
    state = [np.asarray(s) for s in tf.nest.flatten(model.initial_state(1))]
    tokens, out = list(prompt_ids), []
    position = 0
    for t in range(len(tokens) + max_new_tokens - 1):
        if model.context_length and position >= model.context_length:
            raise ValueError("the step decoder's cache is full; re-read a window as decode_loop does")
        result = run_signature(runner, token_id=np.array([tokens[t]], np.int32),
                               position=np.array(position, np.int32),
                               **{f"state_{i}": s for i, s in enumerate(state)})
        state = [result[f"new_state_{i}"] for i in range(len(state))]
        position += 1
        if t + 1 >= len(tokens):
            logits = result["logits"][0].copy()
            logits[0] = -np.inf
            tokens.append(int(logits.argmax()))
            out.append(tokens[-1])
    return out
