"""SavedModels in TF Serving's layout: BASE/<name>/<version>/, BASE/models.config, warmup requests.

What the signatures do is the model family's serving module; this module
writes it so that TF Serving never sees half a version and never loses one.
"""
import os
import re
import shutil

import keras
import tensorflow as tf

from kerasgen.errors import RunError
from kerasgen.rundir import atomic_write

WARMUP_FILE = "tf_serving_warmup_requests"
MODEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a folder name, never a path


def check_model_name(name):
    if not MODEL_NAME.match(name) or ".." in name:
        raise RunError(f"model name {name!r} is not usable as a folder name (letters, digits, "
                       f"'_', '-' and '.', no '..')")
    return name


def write_warmup(path, model_name, requests):
    """TF Serving's warmup file: one PredictionLog per signature (replayed at load)."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in requests.items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature))
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())


def versions(model_dir):
    return sorted(int(d) for d in os.listdir(model_dir) if d.isdigit()) if os.path.isdir(model_dir) else []


def next_version(model_dir):
    return max(versions(model_dir), default=0) + 1


def write_models_config(base):
    """BASE/models.config: every model under BASE, at the path the Docker image mounts (/models)."""
    names = sorted(d for d in os.listdir(base) if versions(os.path.join(base, d)))
    entries = "".join(f"  config {{\n    name: '{n}'\n    base_path: '/models/{n}'\n"
                      f"    model_platform: 'tensorflow'\n  }}\n" for n in names)
    path = os.path.join(base, "models.config")
    atomic_write(path, f"model_config_list {{\n{entries}}}\n")
    return path


def call_every_signature(path, requests):
    """Loads the SavedModel and runs each signature once on `requests`: the export's self-check."""
    loaded = tf.saved_model.load(path)
    return {name: {k: v.numpy() for k, v in loaded.signatures[name](
        **{key: tf.constant(value) for key, value in inputs.items()}).items()}
        for name, inputs in requests.items()}


def remove_stale_temporaries(model_dir):
    """Deletes tmp-<version>-<pid> directories whose exporting process is gone (a kill or a
    crash), never one a live process is still writing."""
    for name in os.listdir(model_dir) if os.path.isdir(model_dir) else []:
        match = re.fullmatch(r"tmp-\d+-(\d+)", name)
        if match and not _alive(int(match.group(1))):
            shutil.rmtree(os.path.join(model_dir, name), ignore_errors=True)


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def export_saved_model(model, serving, model_name, base, version=None):
    """Writes `serving`'s signatures as BASE/model_name/<version>/ atomically; returns its path.

    The SavedModel is written to a non-numeric temporary sibling, loaded and
    called once, then renamed to its version number, so TF Serving (which
    watches numeric directories) never sees a half-written version; a failed
    export removes its temporary directory.
    """
    model_dir = os.path.join(base, check_model_name(model_name))
    remove_stale_temporaries(model_dir)
    version = version or next_version(model_dir)
    final = os.path.join(model_dir, str(version))
    if os.path.exists(final):
        raise RunError(f"{final} exists; versions are never overwritten "
                       f"(choose another --version, or leave it out for {next_version(model_dir)})")
    temporary = os.path.join(model_dir, f"tmp-{version}-{os.getpid()}")
    try:
        archive = keras.export.ExportArchive()
        archive.track(model)
        for resource in serving.trackables():
            archive.track(resource)
        for name, (fn, signature) in serving.endpoints().items():
            archive.add_endpoint(name, fn, input_signature=signature)
        archive.write_out(temporary, verbose=False)
        extra = os.path.join(temporary, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        os.makedirs(os.path.join(temporary, "assets"), exist_ok=True)
        write_warmup(os.path.join(extra, WARMUP_FILE), model_name, serving.warmup_inputs())
        call_every_signature(temporary, serving.warmup_inputs())
        os.rename(temporary, final)
    except OSError as e:
        raise RunError(f"cannot write {final}: {e.strerror or e}") from None
    except tf.errors.OpError as e:  # TensorFlow's own writers: a full disk is ResourceExhausted
        reason = e.message.strip().splitlines()[0] if e.message.strip() else type(e).__name__
        reason = "No space left on device" if "No space left on device" in e.message else reason
        raise RunError(f"cannot write {final}: {reason}") from None
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    write_models_config(base)
    return final
