"""The text family: character language models (data, samples, evaluation, serving, LiteRT).

Importing this package does not import TensorFlow; the methods import what they use.
"""
import shlex
import sys

from kerasgen.errors import DataError, UsageError
from kerasgen.family import Family, TrainingData, spread
from kerasgen.text.sampling import DEFAULT_PROMPT, Sampling

STREAM_BLOCK = 32  # tokens per compiled call while streaming: ~1 ms of Python per block


class TextFamily(Family):
    name = "text"
    title = "text models"
    train_defaults = dict(data="pydoc", recipe="default")
    generate_num_samples = 1
    evaluate_num_samples = 8
    log_parts = ("samples",)

    def add_generate_arguments(self, group):
        group.add_argument("--prompt", default=DEFAULT_PROMPT,
                           help="text to continue (default: empty, which starts a new line)")
        Sampling.add_arguments(group, skip=("seed",))

    add_evaluate_arguments = add_generate_arguments

    # -- training ------------------------------------------------------------------------
    def training_data(self, cls, train, model_kwargs, pretrained=None, first_step=0):
        from kerasgen.config import model_defaults
        from kerasgen.errors import RunError
        from kerasgen.text.data import CharVocab, load_text, text_datasets

        text = load_text(train.data)
        if pretrained is not None:
            chars = pretrained.read_config()["model"].get("vocabulary")
            if not isinstance(chars, str) or not chars:
                raise RunError(f"{pretrained.config_path} is corrupted (no vocabulary in 'model')")
            vocab = CharVocab(chars)
            unknown = vocab.unknown(text)
            if unknown:
                raise DataError(f"the new data has {len(unknown)} characters outside the pretrained "
                                f"vocabulary: {unknown[:40]!r}; clean them out or train from scratch")
        else:
            vocab = CharVocab.from_text(text)
        train_ds, val_ds = text_datasets(vocab.encode(text), train.seq_len, train.batch_size,
                                         train.seed, train.validation_steps, first_step)
        model_kwargs = {**model_kwargs, "vocab_size": vocab.size, "vocabulary": vocab.chars}
        if "seq_len" in model_defaults(cls):  # a bounded context is the training window
            model_kwargs["seq_len"] = train.seq_len
        return model_kwargs, TrainingData(train_ds, val_ds, monitor="val_loss",
                                          real_texts=_passages(text, train.sample_chars))

    def callbacks(self, model, data, train, run):
        from kerasgen.text.callbacks import STABILITY_SAMPLES, TextSampleLogger

        return [TextSampleLogger(run.log_dir("samples"), train.sample_chars, train.seed,
                                 data.real_texts[:STABILITY_SAMPLES], train.jit_compile)]

    def summarize(self, model, data, train, run):
        import math

        from kerasgen.text.decoding import generate

        val_loss = model.evaluate(data.validation, verbose=0, return_dict=True)["loss"]
        sample = generate(model, [DEFAULT_PROMPT],
                          Sampling(max_new_tokens=train.sample_chars, seed=train.seed),
                          train.jit_compile)[0]
        summary = {"val_loss": val_loss, "bpc": val_loss / math.log(2.0), "sample": sample}
        return summary, [f"validation loss {val_loss:.4f}  ({summary['bpc']:.3f} bits per character, "
                         f"final model, whole validation split)", f"sample:\n{sample}\n"]

    # -- using a trained run -------------------------------------------------------------
    def generate(self, model, run, args):
        from kerasgen.text.data import CharVocab
        from kerasgen.text.decoding import generate_ids

        sampling = Sampling.from_args(args)
        vocab = CharVocab(model.vocabulary)
        unknown = vocab.unknown(args.prompt)
        if unknown:
            raise UsageError(f"the prompt has characters outside the model's vocabulary: {unknown!r}")
        count = args.num_samples or self.generate_num_samples
        texts = [""] * count
        if count == 1:
            sys.stdout.write(args.prompt)
        for ids in generate_ids(model, [args.prompt] * count, sampling,
                                block=STREAM_BLOCK if count == 1 else None):
            for i, row in enumerate(ids):
                texts[i] += vocab.decode(row)
            if count == 1:
                sys.stdout.write(vocab.decode(ids[0]))
                sys.stdout.flush()
        if count > 1:
            for i, text in enumerate(texts):
                sys.stdout.write(f"--- sample {i + 1} ---\n{args.prompt}{text}\n")
        print()

    def evaluate(self, model, run, args):
        import dataclasses
        import math

        from kerasgen.text.data import CharVocab, load_text, text_datasets
        from kerasgen.text.decoding import generate
        from kerasgen.text.metrics import text_stability

        train = run.train_config()
        sampling = Sampling.from_args(args)
        vocab = CharVocab(model.vocabulary)
        _, val = text_datasets(vocab.encode(load_text(train.data)), train.seq_len, train.batch_size,
                               train.seed, train.validation_steps)
        model.compile()
        val_loss = model.evaluate(val, verbose=0, return_dict=True)["loss"]
        count = args.num_samples or self.evaluate_num_samples
        per_seed = [text_stability(generate(model, [args.prompt] * count,
                                            dataclasses.replace(sampling, seed=sampling.seed + i)))
                    for i in range(args.seeds)]
        return {"num_samples": count, "sampling": dataclasses.asdict(sampling),
                "val_loss": val_loss, "perplexity": math.exp(val_loss),
                "bits_per_char": val_loss / math.log(2.0), "samples": spread(per_seed)}

    def example_commands(self, run):
        path = shlex.quote(run.path)
        return [f"python -m kerasgen.generate --run {path} --top_p 0.9",
                f"python -m kerasgen.evaluate --run {path}"]

    # -- export --------------------------------------------------------------------------
    def add_export_arguments(self, group):
        group.add_argument("--xla", action="store_true",
                           help="compile the generate loop with XLA: several times faster, but "
                                "tensorflow_model_server then needs --xla_cpu_compilation_enabled=true")
        group.add_argument("--max_new_tokens_limit", type=int, default=4096,
                           help="the served generate's largest max_new_tokens (default: 4096)")
        group.add_argument("--max_prompt_chars", type=int, default=4096,
                           help="the served generate's longest prompt, in characters (default: 4096)")

    def serving(self, model, args):
        from kerasgen.text.serving import TextServing

        return TextServing(model, jit_compile=args.xla, max_new_tokens=args.max_new_tokens_limit,
                           max_prompt_chars=args.max_prompt_chars, max_batch=args.max_batch)

    def serving_example(self):
        return {"instances": [{"prompt": "The "}]}

    def tflite_function(self, model):
        from kerasgen.text.serving import step_function

        return step_function(model)

    def calibration_inputs(self, model, run, count=64):
        from kerasgen.text.data import load_text
        from kerasgen.text.serving import calibration_inputs

        return calibration_inputs(model, load_text(run.train_config().data)[:2000], count)


def _passages(text, length, count=8):
    """`count` evenly spaced passages of the validation part (the last 10%) of `text`."""
    held_out = text[int(len(text) * 0.9):]
    step = max(1, (len(held_out) - length) // count)
    return [held_out[i:i + length] for i in range(0, step * count, step)][:count]


FAMILY = TextFamily()
