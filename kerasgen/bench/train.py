"""ms per training step: graph vs XLA, tf.data vs a batch in memory; GFLOP/s against this machine's matmul peak."""
import string

from kerasgen.bench import common

SETTINGS = [("graph, 1 step/exec", False, 1, "text"),
            ("XLA, 10 steps/exec, memory batch", True, 10, "memory"),
            ("XLA, 10 steps/exec, tf.data", True, 10, "text")]


def add_arguments(p):
    p.add_argument("--models", nargs="+", default=["gru", "transformer"])
    p.add_argument("--batch_size", type=int, default=12)
    p.add_argument("--seq_len", type=int, default=64)
    p.add_argument("--steps", type=int, default=200, help="timed steps per setting")
    p.add_argument("--quick", action="store_true", help="skip the slow graph-mode baseline")


def peak_gflops(dtype, n=4096, repeats=5):
    """This machine's dense-matmul rate: the best of `repeats` n×n matmuls in `dtype`."""
    import tensorflow as tf

    a = tf.random.normal([n, n], dtype=tf.float32)
    a = tf.cast(a, dtype)
    matmul = tf.function(lambda a: tf.reduce_sum(tf.cast(a @ a, tf.float32)))
    matmul(a).numpy()
    return 2 * n ** 3 / min(common.timed(lambda: matmul(a).numpy()) for _ in range(repeats)) / 1e9


def _einsum_flops(op):
    """2 × the product of every index's size: a multiply and an add per point of the index space."""
    inputs, _ = op.get_attr("equation").decode().split("->")
    sizes = {}
    for letters, tensor in zip(inputs.split(","), op.inputs):
        for letter, size in zip(letters, tensor.shape):
            if letter in string.ascii_letters:
                sizes[letter] = size
    total = 2
    for size in sizes.values():
        total *= size
    return total


def step_flops(model, batch):
    """Floating-point operations of one training step: TensorFlow's per-op count (matmuls,
    convolutions and their gradients, elementwise ops) over the step's plain graph, recurrent
    layers unrolled so each time step counts, plus the einsums it has no count for."""
    import tensorflow as tf

    for layer in model._flatten_layers():
        if hasattr(layer, "unroll"):
            layer.unroll = True
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), batch)
    graph = tf.function(model.train_step, autograph=False).get_concrete_function(spec).graph
    options = tf.compat.v1.profiler.ProfileOptionBuilder.float_operation()
    options["output"] = "none"
    counted = tf.compat.v1.profiler.profile(graph, options=options).total_float_ops
    return counted + sum(_einsum_flops(op) for op in graph.get_operations() if op.type == "Einsum")


def train_step_ms(name, overrides, batch_size, seq_len, steps, steps_per_execution, jit_compile,
                  pipeline):
    """Median milliseconds per training step, and the model's parameter count.

    `pipeline` = "text" feeds the real tf.data pipeline (the model's default data);
    "memory" feeds one fixed batch, so the two show whether input starves the step.
    """
    import tensorflow as tf

    changes = dict(batch_size=batch_size, seq_len=seq_len, validation_steps=1,
                   jit_compile=jit_compile, steps_per_execution=steps_per_execution,
                   epochs=10, steps_per_epoch=steps)
    decided, data, _ = common.family_data(name, overrides, **changes)
    dataset = data.train
    if pipeline == "memory":
        dataset = tf.data.Dataset.from_tensors(next(iter(dataset))).repeat()
    model, _ = common.training_model(name, overrides, decided, **changes)
    ms = common.median_step_ms(model, dataset, steps, steps_per_execution)
    flops = step_flops(common.training_model(name, overrides, decided, **changes)[0],
                       next(iter(data.train)))
    return ms, model.count_params(), flops


def run(args, overrides):
    import tensorflow as tf

    peaks = {dtype: peak_gflops(dtype) for dtype in (tf.float32, tf.bfloat16)}
    print(f"this machine's 4096² matmul: {peaks[tf.float32]:.0f} GFLOP/s float32, "
          f"{peaks[tf.bfloat16]:.0f} GFLOP/s bfloat16")
    print(f"{'model':12s} {'params':>9s} {'settings':40s} {'ms/step':>8s} {'steps/s':>8s} "
          f"{'GFLOP/s':>8s} {'of f32 peak':>11s}")
    for name in args.models:
        for label, jit, spe, pipeline in SETTINGS:
            if args.quick and not jit:
                continue
            ms, params, flops = train_step_ms(name, overrides, args.batch_size, args.seq_len,
                                              args.steps, spe, jit, pipeline)
            rate = flops / ms / 1e6
            print(f"{name:12s} {params:9,d} {label:40s} {ms:8.1f} {1000 / ms:8.1f} {rate:8.1f} "
                  f"{rate / peaks[tf.float32]:11.0%}", flush=True)
