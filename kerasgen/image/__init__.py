"""The image family: generators of images from noise, or of a requested class (data, sample grids,
quality scores, serving, LiteRT).

Importing this package does not import TensorFlow; the methods import what they use.
"""
import os
import shlex

from kerasgen.errors import UsageError
from kerasgen.family import Family, TrainingData, final_scores, spread

EMBEDDED_IMAGES = "digits"  # scikit-learn's 8×8 handwritten digits: installed, no download
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
SAMPLES_PNG = "samples.png"  # in the run directory: a grid of 64 samples of the final model
CLASSIFIER = "classifier.keras"  # in the run directory: the quality judge, when data has labels
JUDGED_REAL_IMAGES = 2000  # real images whose classifier features the generated ones are compared with
# `generate` flags passed to models that declare them in `sampling_controls` (a model without
# one refuses it); listed here because the flags exist before any model is imported.
SAMPLING_FLAGS = ("steps", "eta", "guidance")


def image_source_kind(source):
    """'digits', 'tfds', 'folder' or 'npz': what an image --data source names; anything else is
    one DataError, before any reading."""
    from kerasgen.errors import DataError

    if source in (None, EMBEDDED_IMAGES):
        return "digits"
    if source.startswith("tfds:"):
        return "tfds"
    if os.path.isdir(source):
        return "folder"
    if source.endswith(".npz"):
        if not os.path.isfile(source):
            raise DataError(f"data file not found: {source}")
        return "npz"
    raise DataError(f"image data must be 'digits', tfds:NAME, an .npz file or a folder of images; "
                    f"got {source!r}")


class ImageFamily(Family):
    name = "image"
    title = "image models"
    # Small images train fast: more, larger batches.
    train_defaults = dict(data="digits", recipe="gan", batch_size=64, epochs=10, steps_per_epoch=200,
                          steps_per_execution=20)
    generate_num_samples = 64
    evaluate_num_samples = 500
    log_parts = ("images",)

    def add_generate_arguments(self, group):
        group.add_argument("--out", metavar="FILE.png", help="where to write the grid of samples")
        group.add_argument("--labels", metavar="7,7,3",
                           help="conditional models: the class of each sample (default: every class "
                                "in turn); sets --num_samples")
        group.add_argument("--steps", type=int, help="diffusion: DDIM steps (default: 20)")
        group.add_argument("--eta", type=float,
                           help="diffusion: 0 = deterministic DDIM (default), 1 = DDPM's noise")
        group.add_argument("--guidance", type=float,
                           help="diffusion, conditional: classifier-free guidance scale (default: 1.5; "
                                "1 = none)")

    # -- training ------------------------------------------------------------------------
    def check_data(self, train):
        if train.tokenizer != "char" or train.vocab_size is not None:
            raise UsageError("--tokenizer and --vocab_size are for text models")
        image_source_kind(train.data)

    def training_data(self, cls, train, model_kwargs, pretrained=None, first_step=0):
        from kerasgen.config import model_defaults
        from kerasgen.image import metrics
        from kerasgen.image.data import (image_datasets, image_files, load_images, split_images,
                                         streamed_image_datasets, streams)

        self.check_data(train)
        hyper = {**model_defaults(cls), **model_kwargs}
        size, channels = hyper["image_size"], hyper["channels"]
        streamed = streams(train.data, size, channels)  # a folder larger than memory should hold
        if streamed:
            files, labels = image_files(train.data), None
            print(f"kerasgen: {train.data}: {len(files):,} images, read from disk batch by batch")
            split = split_images(len(files), train.seed)
            train_ds, val_ds, images = streamed_image_datasets(
                files, split, train.batch_size, train.seed, size, channels, first_step)
        else:
            images, labels = load_images(train.data, size, channels)
            split = split_images(len(images), train.seed)
        decided = {"num_classes": _num_classes(model_kwargs, labels, train)} if "num_classes" in hyper else {}
        if not streamed:
            train_ds, val_ds = image_datasets(images, split, train.batch_size, train.seed, first_step,
                                              labels if decided.get("num_classes") else None)
        judge = None
        if labels is not None:
            classifier, accuracy = metrics.train_classifier(images, labels, split, seed=train.seed)
            print(f"quality classifier: {accuracy:.1%} held-out accuracy on the real images")
            judge = metrics.ImageJudge(classifier, images[:JUDGED_REAL_IMAGES])
        # Only models with a validation loss of their own (the VAE) are validated on held-out images.
        validates = cls.monitor == "val_loss"
        monitor = cls.monitor if validates or judge is not None else None
        return decided, TrainingData(train_ds, val_ds if validates else None, monitor=monitor,
                                     judge=judge, images=images)

    def callbacks(self, model, data, train, run):
        from kerasgen.image.callbacks import ImageLogger

        return [ImageLogger(run.log_dir("images"), data.judge, data.images[:32], seed=train.seed)]

    def summarize(self, model, data, train, run, last):
        import math

        from kerasgen.image.callbacks import JUDGED, SCORED_SAMPLES
        from kerasgen.image.data import save_png
        from kerasgen.rundir import atomic_save_model

        summary, report = {}, []
        if data.validation is not None:
            summary["val_loss"] = final_scores(last, ("loss",), lambda: model.evaluate(
                data.validation, verbose=0, return_dict=True))["loss"]
            report.append(f"validation loss {summary['val_loss']:.4f} (final model)")
        if data.judge is not None:
            atomic_save_model(data.judge.classifier, run.join(CLASSIFIER))
            judged = JUDGED + (("label_accuracy",) if model.conditional else ())
            scores = final_scores(last, judged, lambda: judge_samples(
                model, data.judge, SCORED_SAMPLES, train.seed + 1))
            scores["max_class_entropy"] = math.log2(data.judge.num_classes)
            summary.update(scores)
            report.append(f"generated images (final model): Fréchet distance {scores['fid']:.3f}, "
                          f"classifier confidence {scores['confidence']:.1%}, class entropy "
                          f"{scores['class_entropy']:.2f} of {scores['max_class_entropy']:.2f} bits"
                          + (f", requested class drawn {scores['label_accuracy']:.1%}"
                             if "label_accuracy" in scores else ""))
        path = run.join(SAMPLES_PNG)
        save_png(path, sample_grid(model, 64, train.seed))
        summary["samples"] = path
        report.append(f"samples: {path}")
        return summary, report

    # -- using a trained run -------------------------------------------------------------
    def generate(self, model, run, args):
        import numpy as np

        from kerasgen.image.data import image_grid, save_png

        if not args.out:
            raise UsageError("image models write a picture: give --out FILE.png")
        labels = _parse_labels(args.labels)
        count = args.num_samples or (len(labels) if labels is not None else self.generate_num_samples)
        if labels is not None and len(labels) != count:
            raise UsageError(f"--labels gives {len(labels)} classes for --num_samples={count}; "
                             f"give one per sample (or leave --num_samples out)")
        controls = {k: getattr(args, k) for k in SAMPLING_FLAGS if getattr(args, k) is not None}
        images = np.asarray(model.generate(count, args.seed, labels, **controls))
        save_png(args.out, image_grid(images, columns=_columns(model)))
        print(f"wrote {len(images)} samples to {args.out}")

    def evaluate(self, model, run, args):
        from kerasgen.image.data import load_images
        from kerasgen.image.metrics import ImageJudge

        path = run.join(CLASSIFIER)
        if not os.path.isfile(path):
            raise UsageError(f"{path} is missing: the run's data had no labels to train a classifier on")
        images, _ = load_images(run.train_config().data, model.image_size, model.channels)
        judge = ImageJudge(run.load_keras(path), images[:JUDGED_REAL_IMAGES])
        count = args.num_samples or self.evaluate_num_samples
        per_seed = [judge_samples(model, judge, count, args.seed + i) for i in range(args.seeds)]
        return {"num_samples": count, "samples": spread(per_seed)}

    def example_commands(self, run):
        path = shlex.quote(run.path)
        return [f"python -m kerasgen.generate --run {path} --out grid.png",
                f"python -m kerasgen.evaluate --run {path}"]

    # -- export --------------------------------------------------------------------------
    def serving(self, model, args):
        from kerasgen.image.serving import ImageServing

        return ImageServing(model, max_batch=args.max_batch)

    def serving_example(self):
        return {"instances": [{"seed": 1}]}

    def tflite_function(self, model):
        return model.litert_function()

    def calibration_inputs(self, model, run, count=64):
        return model.litert_calibration(count)


def _num_classes(model_kwargs, labels, train):
    """A conditional-capable model's classes: the data's, unless set (by --num_classes, or by the
    run being fine-tuned or resumed), which the labels must then fit."""
    from kerasgen.errors import DataError

    wanted = model_kwargs.get("num_classes")
    if wanted is None:
        return 0 if labels is None else int(labels.max()) + 1
    if wanted > 0 and labels is None:
        raise DataError(f"a model with num_classes={wanted} trains on labelled images, and "
                        f"{train.data or 'the data'} has no labels (--num_classes=0: unconditional)")
    if wanted > 0 and labels.max() >= wanted:
        raise DataError(f"the data's labels go up to {labels.max()}, beyond the model's "
                        f"num_classes={wanted}")
    return wanted


def _parse_labels(text):
    if text is None:
        return None
    try:
        return [int(part) for part in text.split(",")]
    except ValueError:
        raise UsageError(f"--labels={text}: expected class numbers separated by commas, e.g. 7,7,3") from None


def _columns(model):
    """Grid columns: one per class for conditional models (each column one class), else 8."""
    return model.num_classes if 0 < model.num_classes <= 16 else 8


def sample_grid(model, count, seed):
    """A uint8 grid picture of `count` samples (conditional: every class in turn, one per column)."""
    import numpy as np

    from kerasgen.image.data import image_grid

    return image_grid(np.asarray(model.generate(count, seed)), columns=_columns(model))


def judge_samples(model, judge, count, seed):
    """The judge's scores of `count` samples; for a conditional model, of every class in turn, with
    the share the classifier assigns to the requested class (`label_accuracy`)."""
    import numpy as np

    labels = np.asarray(model.default_labels(count)) if model.conditional else None
    return judge.score(np.asarray(model.generate(count, seed)), labels)


FAMILY = ImageFamily()
