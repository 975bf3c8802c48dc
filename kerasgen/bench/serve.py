"""A run's generate: in-process Keras vs its exported SavedModel vs the LiteRT step decoder."""
from kerasgen.bench import common


def add_arguments(p):
    p.add_argument("--run", required=True, metavar="DIR")
    p.add_argument("--max_new_tokens", type=int, default=200)


def run(args, overrides):
    import tempfile

    import tensorflow as tf

    from kerasgen.export import tflite
    from kerasgen.export.saved_model import export_saved_model
    from kerasgen.rundir import RunDir
    from kerasgen.text.decoding import generate
    from kerasgen.text.sampling import Sampling
    from kerasgen.text.serving import TextServing, tflite_generate

    run_dir = RunDir.find(args.run)
    model, name = run_dir.load_model(), run_dir.read_config()["model_name"]
    n = args.max_new_tokens
    sampling = Sampling(max_new_tokens=n)
    inputs = dict(prompt=tf.constant(["\n"]), max_new_tokens=tf.constant([n]),
                  temperature=tf.constant([sampling.temperature]), top_k=tf.constant([0]),
                  top_p=tf.constant([1.0]), min_p=tf.constant([0.0]), typical_p=tf.constant([1.0]),
                  repetition_penalty=tf.constant([1.0]), stop=tf.constant([[]], tf.string),
                  penalty_alpha=tf.constant([0.0]), num_beams=tf.constant([1]),
                  length_penalty=tf.constant([1.0]),
                  seed=tf.constant([0]))
    keras_rate = common.tokens_per_second(lambda: generate(model, ["\n"], sampling), n)
    served_rates = {}
    for xla in (False, True):
        with tempfile.TemporaryDirectory() as base:
            path = export_saved_model(model, TextServing(model, jit_compile=xla), name, base)
            signature = tf.saved_model.load(path).signatures["generate"]
            served_rates[xla] = common.tokens_per_second(
                lambda: signature(**inputs)["text"].numpy(), n)
    runner = tflite.interpreter(tflite.convert(model))
    steps = min(n, model.context_length or n)
    lite_rate = common.tokens_per_second(lambda: tflite_generate(runner, model, "\n", steps), steps)
    print(f"{name}: {n} new tokens at batch 1")
    print(f"  in-process Keras decode (XLA loop)               {keras_rate:9.0f} tokens/s  "
          f"{1000 / keras_rate:7.3f} ms/token")
    for xla, label in ((False, "graph, stock TF Serving"), (True, "export --xla")):
        rate = served_rates[xla]
        print(f"  SavedModel 'generate' ({label:23s}) {rate:9.0f} tokens/s  {1000 / rate:7.3f} "
              f"ms/token   {keras_rate / rate:.2f}x the in-process time")
    print(f"  LiteRT step decoder, Python loop per token       {lite_rate:9.0f} tokens/s  "
          f"{1000 / lite_rate:7.3f} ms/token")
