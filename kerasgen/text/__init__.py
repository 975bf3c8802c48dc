"""The text family: character language models (data, samples, evaluation, serving, LiteRT).

Importing this package does not import TensorFlow; the methods import what they use.
"""
import os
import shlex
import sys

from kerasgen import distribute
from kerasgen.errors import DataError, UsageError
from kerasgen.family import Family, TrainingData, final_scores, spread
from kerasgen.text.sampling import DEFAULT_PROMPT, Sampling

STREAM_BLOCK = 32  # tokens per compiled call while streaming: ~1 ms of Python per block
EMBEDDED_TEXT = "pydoc"  # CPython's own help text: on every Python, needs no download


PREPARE_THRESHOLD = 64 << 20  # a text file larger than this is prepared once and read from disk


def check_text_source(source):
    """A text --data source that names nothing usable is one DataError, before any reading; a
    prepared corpus' manifest and token files are checked here too."""
    if source in (None, EMBEDDED_TEXT) or source.startswith("tfds:"):
        return
    if os.path.isdir(source):
        from kerasgen.text.prepared import read_manifest

        read_manifest(source)  # a DataError for a folder that is not a prepared corpus
        return
    if not os.path.isfile(source):
        raise DataError(f"data file not found: {source}" if not os.path.exists(source) else
                        f"{source} is not a file; text data is a UTF-8 text file, a folder made by "
                        f"python -m kerasgen.prepare, 'pydoc' or tfds:NAME")
    if not os.access(source, os.R_OK):
        raise DataError(f"cannot read {source}: permission denied")


class TextFamily(Family):
    name = "text"
    title = "text models"
    data_arguments = ("vocab_size", "vocabulary", "tokenizer")  # what the tokenizer decides
    train_defaults = dict(data="pydoc", recipe="default")
    generate_num_samples = 1
    evaluate_num_samples = 8
    log_parts = ("samples",)

    def add_generate_arguments(self, group):
        group.add_argument("--prompt", default=DEFAULT_PROMPT,
                           help="text to continue (default: empty, which starts a new line)")
        Sampling.add_arguments(group, skip=("seed",))

    def add_evaluate_arguments(self, group):
        self.add_generate_arguments(group)
        group.add_argument("--data", metavar="SOURCE",
                           help="score the validation part of this corpus (a text file or a folder "
                                "made by kerasgen.prepare) instead of the run's own")

    # -- training ------------------------------------------------------------------------
    def check_data(self, train):
        check_text_source(train.data)

    def data_settings(self, train):
        if train.data and os.path.isdir(train.data):  # a prepared corpus: its tokenizer
            from kerasgen.text.prepared import read_manifest

            manifest = read_manifest(train.data)
            return {"tokenizer": manifest["tokenizer"],
                    "vocab_size": manifest["vocab_size"] - 1 if manifest["tokenizer"] == "bpe" else None}
        return {}

    def training_data(self, cls, train, model_kwargs, pretrained=None, first_step=0):
        from kerasgen.text.tokenizer import DEFAULT_BPE_VOCAB, BytePairTokenizer, CharVocab

        tokenizer = _pretrained_tokenizer(pretrained) if pretrained is not None else None
        corpus = open_corpus(train, tokenizer)
        if corpus.tokenizer is not None:  # prepared: its ids are the tokenizer's
            if tokenizer is not None and not corpus.fits(tokenizer):
                raise DataError(f"{corpus.name} was prepared with another vocabulary than "
                                f"{pretrained}'s; prepare it with python -m kerasgen.prepare "
                                f"--tokenizer_from {pretrained} …")
            tokenizer = corpus.tokenizer
        elif pretrained is not None:
            unknown = tokenizer.unknown(corpus.text)
            if unknown:
                raise DataError(f"the new data has {len(unknown)} characters outside the pretrained "
                                f"vocabulary: {unknown[:40]!r}; clean them out, train from scratch, "
                                f"or use --tokenizer=bpe (bytes: no unknown characters)")
        elif train.tokenizer == "bpe":  # learned from the training split only, like the weights
            tokenizer = BytePairTokenizer.train(corpus.train_text, train.vocab_size or DEFAULT_BPE_VOCAB)
        else:
            tokenizer = CharVocab.from_text(corpus.text)
        task = distribute.task(train.strategy)  # each worker reads its own rows only
        train_ds, val_ds = corpus.datasets(tokenizer, train, first_step, (task.index, task.workers))
        # Real passages as long as the samples: `sample_chars` tokens' worth of characters.
        length = max(1, round(train.sample_chars * corpus.chars_per_token(tokenizer)))
        return tokenizer.model_config(), TrainingData(train_ds, val_ds, monitor="val_loss",
                                                      real_texts=corpus.passages(length),
                                                      per_worker=task.workers > 1)

    def run_files(self, model):
        return {"tokenizer.json": model.tokenizer} if model.tokenizer else {}

    def callbacks(self, model, data, train, run):
        from kerasgen.text.callbacks import STABILITY_SAMPLES, TextSampleLogger

        return [TextSampleLogger(run.log_dir("samples"), train.sample_chars, train.seed,
                                 data.real_texts[:STABILITY_SAMPLES])]

    def summarize(self, model, data, train, run, last):
        from kerasgen.text.decoding import COLD_XLA, generate

        scores = _scores(final_scores(last, ("loss", "bits_per_byte"),
                                      lambda: _evaluate(model, data.validation)), model)
        sample = generate(model, [DEFAULT_PROMPT],
                          Sampling(max_new_tokens=train.sample_chars, seed=train.seed),
                          jit_compile=COLD_XLA)[0]
        unit = _unit(model)
        return {**scores, "sample": sample}, [
            f"validation loss {scores['val_loss']:.4f}  ({scores[f'bits_per_{unit}']:.3f} bits per "
            f"{unit}, {scores['bits_per_byte']:.3f} bits per byte; final model, whole validation "
            f"split)", f"sample:\n{sample}\n"]

    # -- using a trained run -------------------------------------------------------------
    def generate(self, model, run, args):
        import numpy as np

        from kerasgen.text.decoding import COLD_XLA, generate_ids

        sampling = Sampling.from_args(args)
        tokenizer = model.text_tokenizer
        unknown = tokenizer.unknown(args.prompt)
        if unknown:
            raise UsageError(f"the prompt has characters outside the model's vocabulary: {unknown!r}")
        count = args.num_samples or self.generate_num_samples
        ids = []
        if count == 1:
            sys.stdout.write(args.prompt)
            stream = tokenizer.stream()  # holds back a character's bytes until it is whole
        streamed = STREAM_BLOCK if count == 1 else None
        # What could still become a stop string is held back until the next block settles it.
        held = max((len(s) for s in sampling.stop), default=1) - 1
        text = shown = ""
        for block in generate_ids(model, [args.prompt] * count, sampling, block=streamed,
                                  jit_compile=COLD_XLA):
            ids.append(block)
            if count == 1:
                text += stream(block[0])
                ready = sampling.cut(text)
                ready = ready if len(ready) < len(text) else text[:len(text) - held]
                sys.stdout.write(ready[len(shown):])
                sys.stdout.flush()
                shown = ready
        if count == 1:
            sys.stdout.write(sampling.cut(text)[len(shown):])
        texts = [sampling.cut(tokenizer.decode(row)) for row in np.concatenate(ids, axis=1)]
        if count > 1:
            for i, text in enumerate(texts):
                sys.stdout.write(f"--- sample {i + 1} ---\n{args.prompt}{text}\n")
        print()

    def evaluate(self, model, run, args):
        import dataclasses

        from kerasgen.text.decoding import COLD_XLA, generate
        from kerasgen.text.metrics import text_stability

        sampling = Sampling.from_args(args)
        train = run.train_config()
        if args.data:
            check_text_source(args.data)
            train = dataclasses.replace(train, data=args.data)
        scores = run_validation_scores(model, train)
        count = args.num_samples or self.evaluate_num_samples
        per_seed = [text_stability(generate(model, [args.prompt] * count,
                                            dataclasses.replace(sampling, seed=sampling.seed + i),
                                            jit_compile=COLD_XLA))
                    for i in range(args.seeds)]
        return {"data": train.data or EMBEDDED_TEXT, "num_samples": count,
                "sampling": dataclasses.asdict(sampling), **scores,
                "samples": spread(per_seed)}

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
        from kerasgen.text.serving import calibration_inputs

        corpus = open_corpus(run.train_config(), model.text_tokenizer)
        return calibration_inputs(model, corpus.training_head(2000), count)


def _unit(model):
    return "token" if model.tokenizer else "char"


def _evaluate(model, validation):
    return model.evaluate(validation, verbose=0, return_dict=True)


def _scores(evaluated, model):
    """Loss, perplexity and bits per token (or character) and per byte, from `evaluate`'s loss
    and bits_per_byte on the validation split."""
    import math

    loss = evaluated["loss"]
    return {"val_loss": loss, "perplexity": math.exp(loss),
            f"bits_per_{_unit(model)}": loss / math.log(2.0),
            "bits_per_byte": evaluated["bits_per_byte"]}


def run_validation_scores(model, train):
    """`_validation_scores` on the validation split of a run's data (`train`: its TrainConfig)."""
    from kerasgen.data import without_autotune_thread

    _, val = open_corpus(train, model.text_tokenizer).datasets(model.text_tokenizer, train)
    model.compile()
    return _scores(_evaluate(model, without_autotune_thread(val)), model)


def _pretrained_tokenizer(run):
    """The tokenizer of the run being fine-tuned or resumed, from its config."""
    from kerasgen.errors import RunError
    from kerasgen.text.tokenizer import tokenizer_from_config

    model = run.read_config()["model"]
    vocabulary, tokenizer = model.get("vocabulary"), model.get("tokenizer")
    if not any(isinstance(v, str) and v for v in (vocabulary, tokenizer)):
        raise RunError(f"{run.config_path} is corrupted (no vocabulary or tokenizer in 'model')")
    try:
        return tokenizer_from_config(vocabulary, tokenizer)
    except (ValueError, KeyError, TypeError, AttributeError) as e:  # not the JSON of a BPE tokenizer
        raise RunError(f"{run.config_path} is corrupted (its tokenizer: {e})") from None


def open_corpus(train, tokenizer=None):
    """The corpus of `train.data` (a TrainConfig's): a PreparedCorpus for a prepared folder, or
    for a text file above PREPARE_THRESHOLD (prepared once into the cache, keyed by its content
    and tokenizer: `tokenizer`, a run's, else the one `train` learns), else a TextCorpus."""
    from kerasgen.text.prepared import is_prepared

    if is_prepared(train.data):
        return PreparedCorpus(train.data)
    source = train.data
    if source not in (None, EMBEDDED_TEXT) and (source.startswith("tfds:") or (
            os.path.getsize(source) > PREPARE_THRESHOLD)):
        return PreparedCorpus(_prepared_cache(source, train, tokenizer))
    return TextCorpus.load(source)


def _prepared_cache(source, train, tokenizer):
    """The cache folder of a large text file or of tfds:NAME (streamed, one example at a time),
    prepared there first if it is not yet; a tfds dataset that changed is prepared again."""
    import hashlib

    from kerasgen.text.prepared import Settings, Source, prepare, tokenizer_digest

    digest = hashlib.sha256()
    if source.startswith("tfds:"):  # its content is hashed (and checked) by prepare
        digest.update(source.encode())
        what = f"{source} is streamed, not read into memory"
    else:
        with open(source, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
        what = (f"{source} is {os.path.getsize(source) / 2 ** 20:,.0f} MB, more than is read into "
                f"memory")
    root = os.path.join(os.environ.get("KERASGEN_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "kerasgen"), "corpora")
    learned = Settings(train.tokenizer, train.vocab_size)
    out = os.path.join(root, f"{digest.hexdigest()[:20]}-{train.tokenizer}-{train.vocab_size or 0}")
    if tokenizer is not None and not (os.path.isdir(out) and PreparedCorpus(out).fits(tokenizer)):
        learned = Settings(tokenizer.kind, tokenizer_from=tokenizer_digest(tokenizer))
        out = os.path.join(root, f"{digest.hexdigest()[:20]}-{learned.tokenizer_from[:20]}")
    print(f"kerasgen: {what}: its tokens are in {out} (prepared once; read from disk)",
          file=sys.stderr)
    prepare([Source(source)], out, learned, tokenizer=tokenizer if learned.tokenizer_from else None,
            replace=True)
    return out


class TextCorpus:
    """A corpus in memory, cut once into its training and validation text (`split_text`), and
    what is made from the two parts: their datasets, and real passages of the validation text."""

    tokenizer = None  # the data does not fix one: training learns it

    def __init__(self, text):
        from kerasgen.text.data import split_text

        self.text = text
        self.train_text, self.validation_text = split_text(text)

    @classmethod
    def load(cls, source):
        from kerasgen.text.data import load_text

        return cls(load_text(source))

    def datasets(self, tokenizer, train, first_step=0, worker=(0, 1)):
        """(train, validation) tf.data windows of the two parts' tokens, as `train` (a
        TrainConfig) says; the training stream starts at step `first_step` and holds the rows
        of each global batch that `worker` (index, count) reads."""
        from kerasgen.text.data import text_datasets

        return text_datasets(tokenizer.encode(self.train_text), tokenizer.encode(self.validation_text),
                             train.seq_len, train.batch_size, train.seed, train.validation_steps,
                             first_step, tokenizer.size, worker)

    def chars_per_token(self, tokenizer):
        sample = self.validation_text[:100_000]
        return len(sample) / max(1, len(tokenizer.encode(sample)))

    def training_head(self, chars):
        return self.train_text[:chars]

    def passages(self, length, count=8):
        """`count` evenly spaced passages of the validation text."""
        held_out = self.validation_text
        step = max(1, (len(held_out) - length) // count)
        return [held_out[i:i + length] for i in range(0, step * count, step)][:count]


class PreparedCorpus:
    """A corpus prepared by kerasgen.prepare: the same interface as TextCorpus, read from its
    token files (never whole) with the tokenizer it was encoded with."""

    def __init__(self, directory):
        from kerasgen.text.prepared import open_prepared

        self.name = directory
        self.manifest, self.tokenizer, self.files = open_prepared(directory)

    def fits(self, tokenizer):
        return tokenizer.model_config() == self.tokenizer.model_config()

    def datasets(self, tokenizer, train, first_step=0, worker=(0, 1)):
        """As TextCorpus', read from the token files."""
        from kerasgen.text.data import text_datasets

        if not self.fits(tokenizer):
            raise DataError(f"{self.name} was prepared with another vocabulary than the model's "
                            f"({self.tokenizer.size} tokens, the model's {tokenizer.size}): prepare "
                            f"it with python -m kerasgen.prepare --tokenizer_from RUN")
        return text_datasets(self.files["train"], self.files["validation"], train.seq_len,
                             train.batch_size, train.seed, train.validation_steps, first_step,
                             self.tokenizer.size, worker)

    def _text(self, part, start, tokens):
        file = self.files[part]
        start = max(0, min(start, len(file) - tokens))
        return self.tokenizer.decode(file.windows([start], min(tokens, len(file)))[0])

    def chars_per_token(self, tokenizer):
        tokens = min(len(self.files["validation"]), 100_000)
        return len(self._text("validation", 0, tokens)) / tokens

    def training_head(self, chars):
        return self._text("train", 0, chars)[:chars]

    def passages(self, length, count=8):
        tokens = max(1, round(length / self.chars_per_token(self.tokenizer))) + 2
        step = max(1, (len(self.files["validation"]) - tokens) // count)
        return [self._text("validation", i * step, tokens)[:length] for i in range(count)]


FAMILY = TextFamily()
