"""ms per training step: graph vs XLA, tf.data vs a batch in memory."""
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
    return common.median_step_ms(model, dataset, steps, steps_per_execution), model.count_params()


def run(args, overrides):
    print(f"{'model':12s} {'params':>9s} {'settings':40s} {'ms/step':>8s} {'steps/s':>8s}")
    for name in args.models:
        for label, jit, spe, pipeline in SETTINGS:
            if args.quick and not jit:
                continue
            ms, params = train_step_ms(name, overrides, args.batch_size, args.seq_len, args.steps,
                                       spe, jit, pipeline)
            print(f"{name:12s} {params:9,d} {label:40s} {ms:8.1f} {1000 / ms:8.1f}", flush=True)
