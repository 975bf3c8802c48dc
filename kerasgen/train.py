"""python -m kerasgen.train --model gru: train a zoo model and write a self-contained run directory."""
import dataclasses
import datetime
import json
import math
import os
import sys

import numpy as np

from kerasgen.cli import Parser, UsageError, command, load_run
from kerasgen.config import ConfigError, TrainConfig, apply_overrides, model_defaults
from kerasgen.data import DataError


def _parser():
    p = Parser(
        prog="python -m kerasgen.train",
        description="Train a kerasgen zoo model. Any training field or model hyperparameter "
                    "can be set as --key=value (e.g. --batch_size=12 --units=512); see --list "
                    "for models and their sizes.",
        epilog="The run directory gets config.json, model.keras, checkpoints/ and logs/ "
               "(open with: tensorboard --logdir RUN/logs).")
    p.add_argument("--model", help="zoo model name (default: gru)")
    p.add_argument("--list", action="store_true", help="list the zoo's models and exit")
    p.add_argument("--data", help="'pydoc' (embedded, default), a UTF-8 text file, or tfds:NAME "
                                  "read from the local tfds data_dir")
    p.add_argument("--epochs", help="number of epochs")
    p.add_argument("--recipe", help="training recipe: default, stable or finetune")
    p.add_argument("--seed", help="random seed for weights and data order")
    p.add_argument("--out", help="run directory (default: runs/<model>/<timestamp>)")
    p.add_argument("--resume", metavar="DIR", help="continue an interrupted run from its last finished epoch")
    p.add_argument("--init_from", metavar="DIR",
                   help="fine-tune: start from this run's model, weights and vocabulary with the "
                        "finetune recipe (add --freeze_layers=N to fix the N lowest layers)")
    p.add_argument("--strategy", choices=["default", "mirrored"],
                   help="tf.distribute strategy to build and train under")
    return p


def parse_args(argv):
    """Returns (argparse namespace, {key: raw value}) with every --key=value override."""
    args, rest = _parser().parse_known_args(argv)
    overrides = {k: getattr(args, k) for k in ("data", "epochs", "recipe", "seed", "out", "strategy",
                                               "init_from")
                 if getattr(args, k) is not None}
    i = 0
    while i < len(rest):
        item = rest[i]
        if not item.startswith("--") or len(item) == 2:
            raise UsageError(f"unexpected argument {item!r}; options look like --key=value")
        key, eq, value = item[2:].partition("=")
        if not eq:
            if i + 1 >= len(rest):
                raise UsageError(f"--{key} needs a value")
            i, value = i + 1, rest[i + 1]
        overrides[key] = value
        i += 1
    return args, overrides


def list_models():
    from kerasgen import registry

    rows = []
    for name in registry.names():
        cls = registry.get(name)
        size = ", ".join(f"{k}={v}" for k, v in model_defaults(cls).items()
                         if k not in ("vocabulary", "vocab_size"))
        rows.append(f"{name:12s} {cls.description}\n{'':12s} defaults: {size}")
    return "\n".join(rows)


def _read_run_config(run_dir, flag):
    path = os.path.join(run_dir, "config.json")
    if not os.path.isfile(path):
        raise UsageError(f"{flag} {run_dir}: no config.json there (not a run directory)")
    with open(path) as f:
        return json.load(f)


def _resolve(args, overrides):
    """The run's TrainConfig, model class, model kwargs and run directory, from flags,
    --resume (the saved run's settings) or --init_from (the pretrained run's model)."""
    from kerasgen import registry

    if args.model:
        overrides["model"] = args.model
    base = None  # the run whose model settings this one starts from
    if args.resume:
        base = _read_run_config(args.resume, "--resume")
        overrides.setdefault("model", base["train"]["model"])
        if overrides["model"] != base["train"]["model"]:
            raise UsageError(f"--resume {args.resume} is a {base['train']['model']!r} run, "
                             f"not {overrides['model']!r}")
    elif "init_from" in overrides:
        base = _read_run_config(overrides["init_from"], "--init_from")
        overrides.setdefault("model", base["model_name"])
        if overrides["model"] != base["model_name"]:
            raise UsageError(f"--init_from {overrides['init_from']} is a {base['model_name']!r} "
                             f"run, not {overrides['model']!r}")
    cls = registry.get(overrides.get("model", TrainConfig.model))
    train = TrainConfig(**base["train"]) if args.resume else TrainConfig(**cls.train_defaults)
    train, model_kwargs = apply_overrides(train, cls, overrides)
    if base is not None:
        model_kwargs = {**base["model"], **model_kwargs}
        model_kwargs = {k: v for k, v in model_kwargs.items() if k in model_defaults(cls)}
    if base is not None and not args.resume and "seq_len" not in overrides:
        train = dataclasses.replace(train, seq_len=base["train"]["seq_len"])  # the model's context
    if args.resume:
        train = dataclasses.replace(train, out=args.resume)
    elif train.out is None:
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        train = dataclasses.replace(train, out=os.path.join("runs", train.model, stamp))
    return train, cls, model_kwargs


def _text_setup(train, cls, model_kwargs):
    """Data, model kwargs, callbacks and the final report of a character language model."""
    from kerasgen.data import CharVocab, load_text, text_datasets
    from kerasgen.generation import Sampling, generate
    from kerasgen.sampling_callback import TextSampleLogger

    text = load_text(train.data or cls.default_data)
    vocab = CharVocab(model_kwargs["vocabulary"]) if model_kwargs.get("vocabulary") \
        else CharVocab.from_text(text)
    unknown = vocab.unknown(text)
    if unknown and train.init_from:
        raise DataError(f"the new data has {len(unknown)} characters outside the pretrained "
                        f"vocabulary: {unknown[:40]!r}; clean them out or train from scratch")
    train_ds, val_ds = text_datasets(vocab.encode(text), train.seq_len, train.batch_size,
                                     train.validation_steps, train.seed)
    hyper = model_defaults(cls)
    model_kwargs = {**model_kwargs, "vocab_size": vocab.size, "vocabulary": vocab.chars}
    if "seq_len" in hyper:
        model_kwargs["seq_len"] = train.seq_len

    def make_callbacks(model):
        return [TextSampleLogger(os.path.join(train.out, "logs", "samples"), train.sample_chars,
                                 train.seed)]

    def finish(model):
        val_loss = model.evaluate(val_ds, verbose=0, return_dict=True)["loss"]
        sample = generate(model, ["\n"], train.sample_chars, Sampling(temperature=0.8, seed=train.seed))[0]
        summary = {"val_loss": val_loss, "bpc": val_loss / math.log(2.0), "sample": sample}
        report = [f"validation loss {val_loss:.4f}  ({summary['bpc']:.3f} bits per character)",
                  f"sample:\n{sample}\n"]
        return summary, report

    return model_kwargs, train_ds, val_ds, make_callbacks, finish


def _image_setup(train, cls, model_kwargs):
    """Data, model kwargs, callbacks and the final report of an image generator."""
    from kerasgen import quality
    from kerasgen.images import image_datasets, image_grid, load_images, save_png

    hyper = {**model_defaults(cls), **model_kwargs}
    images, labels = load_images(train.data or cls.default_data, hyper["image_size"], hyper["channels"])
    train_ds, val_ds = image_datasets(images, train.batch_size, train.seed)
    judge = None
    if labels is not None:
        classifier, accuracy = quality.train_classifier(images, labels, seed=train.seed)
        print(f"quality classifier: {accuracy:.1%} held-out accuracy on the real images")
        judge = quality.ImageJudge(classifier, images[:2000])
    uses_validation = cls.monitor == "val_loss"

    def make_callbacks(model):
        return [quality.ImageLogger(os.path.join(train.out, "logs", "images"), judge,
                                    images[:32], seed=train.seed)]

    def finish(model):
        summary, report = {}, []
        if uses_validation:
            summary["val_loss"] = model.evaluate(val_ds, verbose=0, return_dict=True)["loss"]
            report.append(f"validation loss {summary['val_loss']:.4f}")
        if judge is not None:
            quality.save_classifier(judge.classifier, train.out)
            scores = judge.score(np.asarray(model.generate(500, train.seed + 1)))
            summary.update(scores)
            report.append(f"generated images: Fréchet distance {scores['fid']:.3f}, classifier "
                          f"confidence {scores['confidence']:.1%}, class entropy "
                          f"{scores['class_entropy']:.2f} of {scores['max_class_entropy']:.2f} bits")
        path = os.path.join(train.out, "samples.png")
        save_png(path, image_grid(np.asarray(model.generate(64, train.seed))))
        summary["samples"] = path
        report.append(f"samples: {path}")
        return summary, report

    return model_kwargs, train_ds, val_ds if uses_validation else None, make_callbacks, finish


def run(train, cls, model_kwargs):
    """Trains and saves; returns (summary dict, lines to tell the user)."""
    import keras
    import tensorflow as tf

    from kerasgen import recipes
    from kerasgen.text import CausalLM

    recipe = recipes.get_recipe(train.recipe or ("finetune" if train.init_from else cls.default_recipe))
    setup = _text_setup if issubclass(cls, CausalLM) else _image_setup
    model_kwargs, train_ds, val_ds, make_callbacks, finish = setup(train, cls, model_kwargs)
    if "dropout" in model_defaults(cls):
        model_kwargs.setdefault("dropout", recipe.dropout)

    keras.utils.set_random_seed(train.seed)
    strategy = tf.distribute.MirroredStrategy() if train.strategy == "mirrored" \
        else tf.distribute.get_strategy()
    with strategy.scope():
        try:
            model = cls(**model_kwargs)
        except ValueError as e:  # hyperparameters that do not fit together
            raise ConfigError(str(e)) from None
        model(model.sample_inputs(1))
        if train.init_from:
            model.set_weights(load_run(train.init_from)[0].get_weights())
            model.freeze_lower(train.freeze_layers)
        recipes.compile_model(model, recipe, train.epochs * train.steps_per_epoch, train.learning_rate,
                              jit_compile=train.jit_compile,
                              steps_per_execution=min(train.steps_per_execution, train.steps_per_epoch))

    os.makedirs(train.out, exist_ok=True)
    with open(os.path.join(train.out, "config.json"), "w") as f:
        json.dump({"model_name": cls.zoo_name, "train": dataclasses.asdict(train),
                   "recipe": dataclasses.asdict(recipe), "model": model.get_config()}, f, indent=1)

    monitor = cls.monitor if val_ds is not None or cls.monitor != "val_loss" else None
    callbacks = recipes.callbacks(train.out, recipe, monitor, first=make_callbacks(model))
    model.fit(train_ds, epochs=train.epochs, steps_per_epoch=train.steps_per_epoch,
              validation_data=val_ds, callbacks=callbacks, shuffle=False,  # tf.data shuffles
              verbose=2 if os.environ.get("CI") else "auto")
    model.save(os.path.join(train.out, "model.keras"))
    summary, report = finish(model)
    with open(os.path.join(train.out, "summary.json"), "w") as f:
        json.dump(summary, f, indent=1)
    return summary, report


@command("kerasgen.train")
def main(argv):
    args, overrides = parse_args(argv)
    import zoo  # noqa: F401  registers the models

    if args.list:
        print(list_models())
        return 0
    train, cls, model_kwargs = _resolve(args, overrides)
    _, report = run(train, cls, model_kwargs)
    logdir = os.path.join(train.out, "logs")
    print("\n" + "\n".join(report))
    print(f"run directory: {train.out}")
    print(f"TensorBoard:   tensorboard --logdir {logdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
