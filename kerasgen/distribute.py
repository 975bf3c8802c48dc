"""tf.distribute for `python -m kerasgen.train`: the strategies, who writes, and the Keras fix
that makes `fit` work across workers.

Keras 3's `fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585,
keras-team/keras#20329, tensorflow/tensorflow#72388, ray-project/ray#47464), in
two places of keras/src/backend/tensorflow/trainer.py, and clips gradients
wrongly under any strategy with more than one replica:

- `TensorFlowTrainer._maybe_symbolic_build` builds the model from the first
  distributed batch reduced eagerly with `strategy.reduce("MEAN", …, axis=None)`,
  which a multi-worker strategy cannot do outside a function ("Attempt to
  convert a value (PerReplica…)"). Any replica's batch has the shapes needed;
  the fix builds from this worker's first one.
- `reduce_per_replica` reduces the step's logs across workers with
  `strategy.reduce("MEAN", v, axis=0)`, which fails on scalars ("Invalid
  reduction dimension 0 for input with 0 dimensions"). The fix reduces
  scalars with `axis=None`.
- `BaseOptimizer._clip_gradients` (keras/src/optimizers/base_optimizer.py)
  clips each replica's share of the gradient before the replicas' shares are
  summed, so `global_clipnorm` (every recipe's `clipnorm`) clips at N times its
  value on N replicas and one worker's run is not N workers'. The fix sums the
  shares first (one more all-reduce while clipping is on), clips the sum and
  hands each replica 1/N of it for the update's own sum.

`patch_keras()` replaces exactly those three functions, only on the Keras
versions whose sources it was checked against (`PATCHED_SOURCES`), and
refuses any other: an upgraded Keras that changed them gets a one-line error,
not a silently wrong patch. tests/test_distribute.py fails if the installed
Keras no longer matches.
"""
import contextlib
import dataclasses
import hashlib
import inspect
import json
import os

from kerasgen.errors import ConfigError

STRATEGIES = ("default", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")
# sha256 of the sources of the patched Keras functions, by the Keras version they were checked on.
PATCHED_SOURCES = {
    "3.15": {"_maybe_symbolic_build": "92a504f5eba9b29f81f1bf26180bdd5bf5186b06b7bda426534b90d2d02bc1c2",
             "reduce_per_replica": "2e7d54b1e6edc29a8c6a7e6b66cd4c8be3ba7842412c93753ac3afe169fa7fb8",
             "_clip_gradients": "152b956e23c91ad9b78870b2e245dc09fe6f8f156235dadab9ffc72f07dd9b33"},
}


_originals = {}  # the Keras functions patch_keras replaced, once it has


def _source_digest(function):
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()


def keras_internals():
    """{name: function} of the Keras internals `patch_keras` replaces."""
    from keras.src.backend.tensorflow import trainer
    from keras.src.optimizers import base_optimizer

    return {"_maybe_symbolic_build": trainer.TensorFlowTrainer._maybe_symbolic_build,
            "reduce_per_replica": trainer.reduce_per_replica,
            "_clip_gradients": base_optimizer.BaseOptimizer._clip_gradients}


def unpatchable_reason():
    """Why `patch_keras` cannot apply to the installed Keras, or None when it can."""
    import keras

    version = ".".join(keras.__version__.split(".")[:2])
    expected = PATCHED_SOURCES.get(version)
    if expected is None:
        return (f"--strategy mirrored and multi_worker are tested on Keras "
                f"{', '.join(PATCHED_SOURCES)} only (this is {keras.__version__}): kerasgen "
                f"patches Keras there (keras-team/keras#20585)")
    changed = [name for name, function in (_originals or keras_internals()).items()
               if _source_digest(function) != expected[name]]
    if changed:
        return (f"Keras {keras.__version__} changed {', '.join(changed)}, which kerasgen patches "
                f"for --strategy mirrored and multi_worker (keras-team/keras#20585)")
    return None


def patch_keras():
    """Makes Keras 3's `fit` and `evaluate` work across replicas and workers (see the module
    docstring). Idempotent; a ConfigError when the installed Keras is not one it knows."""
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer
    from keras.src.optimizers import base_optimizer

    if _originals:
        return
    reason = unpatchable_reason()
    if reason:
        raise ConfigError(reason)
    _originals.update(keras_internals())
    original_reduce = trainer.reduce_per_replica
    original_clip = base_optimizer.BaseOptimizer._clip_gradients

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and trainer._collective_all_reduce_multi_worker(strategy):
            return tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0), values)
        return original_reduce(values, strategy, reduction)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        if self._distribute_strategy is None:
            return
        if iterator is not None:
            for _, _, it in iterator:
                batch = next(it)
                data_batch = tree.map_structure(
                    lambda x: self.distribute_strategy.experimental_local_results(x)[0]
                    if isinstance(x, tf.distribute.DistributedValues) else x, batch)
                break
        with self.distribute_strategy.scope():
            self._symbolic_build(data_batch=data_batch)

    def _clip_gradients(self, grads):
        context = tf.distribute.get_replica_context()
        clipping = self.clipnorm or self.global_clipnorm or self.clipvalue
        if not clipping or context is None or context.num_replicas_in_sync == 1:
            return original_clip(self, grads)
        replicas = context.num_replicas_in_sync
        summed = iter(context.all_reduce(tf.distribute.ReduceOp.SUM,
                                         [tf.convert_to_tensor(g) for g in grads if g is not None]))
        clipped = original_clip(self, [None if g is None else next(summed) for g in grads])
        return [None if g is None else g / replicas for g in clipped]

    trainer.reduce_per_replica = reduce_per_replica
    trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build
    base_optimizer.BaseOptimizer._clip_gradients = _clip_gradients


@dataclasses.dataclass(frozen=True)
class Task:
    """This process's place in a run: which worker of how many, and whether it is the chief,
    the one process that writes the run directory."""

    type: str = "worker"
    index: int = 0
    workers: int = 1
    chief: bool = True

    def __str__(self):
        return f"{self.type} {self.index} of {self.workers}"


def check_cluster(strategy):
    """For multi_worker, TF_CONFIG present and JSON, checked without TensorFlow; returns it."""
    raw = os.environ.get("TF_CONFIG")
    if strategy != "multi_worker":
        return raw
    if not raw:
        raise ConfigError("--strategy multi_worker needs TF_CONFIG (the cluster's workers and this "
                          "one's index); see README, 'Scale out'")
    try:
        json.loads(raw)
    except ValueError as e:
        raise ConfigError(f"TF_CONFIG is not a valid cluster spec ({e}): {raw[:200]}") from None
    return raw


def task(strategy):
    """The Task of this process under `strategy`: for multi_worker, as TensorFlow's own
    TFConfigClusterResolver reads TF_CONFIG (the chief: the `chief` task, else worker 0)."""
    if strategy != "multi_worker":
        return Task()
    raw = check_cluster(strategy)
    import tensorflow as tf

    try:
        resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
        cluster = resolver.cluster_spec()
        kind, index = resolver.task_type, resolver.task_id
        if kind not in ("chief", "worker") or kind not in cluster.jobs or not (
                0 <= index < cluster.num_tasks(kind)):
            raise ValueError(f"task {kind} {index} is not in the cluster")
    except (ValueError, KeyError, TypeError) as e:
        raise ConfigError(f"TF_CONFIG is not a valid cluster spec ({e}): {raw[:200]}") from None
    workers = sum(cluster.num_tasks(job) for job in ("chief", "worker") if job in cluster.jobs)
    return Task(kind, index, workers, chief=kind == "chief" or ("chief" not in cluster.jobs and index == 0))


def step_options(train):
    """compile()'s jit_compile and steps_per_execution for `train` (a TrainConfig).

    Across workers each step is its own call, without XLA: TensorFlow cannot
    compile collectives for CPUs with XLA ("not yet implemented", b/194942685),
    and a distributed iterator's `get_next_as_optional` inside Keras' multi-step
    loop fails ("You must feed a value for placeholder …").
    """
    if train.strategy == "multi_worker":
        return {"jit_compile": False, "steps_per_execution": 1}
    return {"jit_compile": train.jit_compile,
            "steps_per_execution": steps_per_call(train.steps_per_execution, train.steps_per_epoch)}


def steps_per_call(steps_per_execution, steps_per_epoch):
    """The most steps, at most `steps_per_execution`, that divide an epoch: Keras runs whole
    executions, so 150 steps at 20 a call would train 160 an epoch, and a resumed run, which
    restarts the data at epochs × steps_per_epoch, would not continue where the run was."""
    return max(n for n in range(1, min(steps_per_execution, steps_per_epoch) + 1)
               if steps_per_epoch % n == 0)


@contextlib.contextmanager
def dtype_policy(name):
    """Keras' global dtype policy set to `name` for the block (models built in it compute in
    it), and put back after: a CLI called in-process leaves no policy behind."""
    import keras

    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def replicas_in_sync():
    """How many replicas share this training step (1 outside a strategy)."""
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    return 1 if context is None else context.num_replicas_in_sync


def replica_rows(values):
    """This replica's rows of `values`, which were drawn for the whole global batch.

    Random draws in a custom train step (GAN noise, VAE sampling) are made for
    the global batch and sliced, so one worker and N draw the same numbers for
    a step; drawn per replica, every replica would draw the same ones.
    """
    import tensorflow as tf

    replicas = replicas_in_sync()
    if replicas == 1:
        return values
    rows = tf.shape(values)[0] // replicas
    return values[tf.distribute.get_replica_context().replica_id_in_sync_group * rows:][:rows]


def check_same_settings(strategy, settings):
    """A ConfigError on every worker unless all of them were started with the same `settings`
    (a JSON-able dict): gradients of any shape-compatible runs would sum without complaint,
    so workers given another --batch_size, --seed or recipe would train a silent mix."""
    import tensorflow as tf

    if strategy.num_replicas_in_sync == 1 or not isinstance(
            strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).digest()
    # 16-bit pieces: exact in float32, the dtype every collective implementation takes.
    mine = tf.constant([[int.from_bytes(digest[i:i + 2], "big") for i in range(0, 16, 2)]],
                       tf.float32)

    @tf.function
    def gather():
        return strategy.run(lambda: tf.distribute.get_replica_context().all_gather(mine, axis=0))

    everyone = strategy.experimental_local_results(gather())[0].numpy()
    differing = sorted({i for i, row in enumerate(everyone) if (row != everyone[0]).any()})
    if differing:
        raise ConfigError(f"the workers were started with different settings (those of replica "
                          f"{', '.join(map(str, differing))} differ from replica 0's): run the same "
                          f"command on every worker, only TF_CONFIG's task changing")


def worker_errors(task):
    """What a collective raises when a peer worker died (its connections close: at once) or
    stopped answering (TensorFlow's health check: within about a minute); none on one worker."""
    import tensorflow as tf

    if task.workers == 1:
        return ()
    return (tf.errors.UnavailableError, tf.errors.DeadlineExceededError, tf.errors.CancelledError,
            tf.errors.AbortedError, tf.errors.InternalError)


def make_strategy(name):
    """The tf.distribute strategy `name` (one of STRATEGIES), Keras patched for it. Made before
    any TensorFlow op runs: a multi-worker strategy configures collectives at start-up."""
    import tensorflow as tf

    if name == "default":
        return tf.distribute.get_strategy()
    patch_keras()
    return {"mirrored": tf.distribute.MirroredStrategy,
            "multi_worker": tf.distribute.MultiWorkerMirroredStrategy}[name]()


def release_aborted(error):
    """Frees what an aborted collective left behind, now rather than at exit: TensorFlow's eager
    all-reduce leaves a ThreadPool open when a peer dies, and its __del__ fails with a
    traceback ("Bad file descriptor") if it runs during interpreter shutdown."""
    import gc
    import traceback

    traceback.clear_frames(error.__traceback__)
    gc.collect()


def local_cluster(workers):
    """TF_CONFIG values for `workers` processes on this host, on ports free right now (for the
    scale benchmark and the tests; a real cluster's launcher writes its own)."""
    import socket

    sockets = [socket.socket() for _ in range(workers)]
    try:
        for s in sockets:
            s.bind(("localhost", 0))
        addresses = [f"localhost:{s.getsockname()[1]}" for s in sockets]
    finally:
        for s in sockets:
            s.close()
    return [json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}})
            for i in range(workers)]
