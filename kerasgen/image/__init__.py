"""The image family: generators of images from noise (data, sample grids, quality scores, serving, LiteRT).

Importing this package does not import TensorFlow; the methods import what they use.
"""
import os
import shlex

from kerasgen.errors import UsageError
from kerasgen.family import Family, TrainingData, spread

SAMPLES_PNG = "samples.png"  # in the run directory: a grid of 64 samples of the final model
CLASSIFIER = "classifier.keras"  # in the run directory: the quality judge, when data has labels
JUDGED_REAL_IMAGES = 2000  # real images whose classifier features the generated ones are compared with


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

    # -- training ------------------------------------------------------------------------
    def training_data(self, cls, train, model_kwargs, pretrained=None, first_step=0):
        from kerasgen.config import model_defaults
        from kerasgen.image import metrics
        from kerasgen.image.data import image_datasets, load_images

        hyper = {**model_defaults(cls), **model_kwargs}
        images, labels = load_images(train.data, hyper["image_size"], hyper["channels"])
        train_ds, val_ds = image_datasets(images, train.batch_size, train.seed, first_step)
        judge = None
        if labels is not None:
            classifier, accuracy = metrics.train_classifier(images, labels, seed=train.seed)
            print(f"quality classifier: {accuracy:.1%} held-out accuracy on the real images")
            judge = metrics.ImageJudge(classifier, images[:JUDGED_REAL_IMAGES])
        # Only models with a validation loss of their own (the VAE) are validated on held-out images.
        validates = cls.monitor == "val_loss"
        monitor = cls.monitor if validates or judge is not None else None
        return model_kwargs, TrainingData(train_ds, val_ds if validates else None, monitor=monitor,
                                          judge=judge, images=images)

    def callbacks(self, model, data, train, run):
        from kerasgen.image.callbacks import ImageLogger

        return [ImageLogger(run.log_dir("images"), data.judge, data.images[:32], seed=train.seed)]

    def summarize(self, model, data, train, run):
        import numpy as np

        from kerasgen.image.callbacks import SCORED_SAMPLES
        from kerasgen.image.data import image_grid, save_png
        from kerasgen.rundir import atomic_save_model

        summary, report = {}, []
        if data.validation is not None:
            summary["val_loss"] = model.evaluate(data.validation, verbose=0, return_dict=True)["loss"]
            report.append(f"validation loss {summary['val_loss']:.4f} (final model)")
        if data.judge is not None:
            atomic_save_model(data.judge.classifier, run.join(CLASSIFIER))
            scores = data.judge.score(np.asarray(model.generate(SCORED_SAMPLES, train.seed + 1)))
            summary.update(scores)
            report.append(f"generated images (final model): Fréchet distance {scores['fid']:.3f}, "
                          f"classifier confidence {scores['confidence']:.1%}, class entropy "
                          f"{scores['class_entropy']:.2f} of {scores['max_class_entropy']:.2f} bits")
        path = run.join(SAMPLES_PNG)
        save_png(path, image_grid(np.asarray(model.generate(64, train.seed))))
        summary["samples"] = path
        report.append(f"samples: {path}")
        return summary, report

    # -- using a trained run -------------------------------------------------------------
    def generate(self, model, run, args):
        import numpy as np

        from kerasgen.image.data import image_grid, save_png

        if not args.out:
            raise UsageError("image models write a picture: give --out FILE.png")
        images = np.asarray(model.generate(args.num_samples or self.generate_num_samples, args.seed))
        save_png(args.out, image_grid(images))
        print(f"wrote {len(images)} samples to {args.out}")

    def evaluate(self, model, run, args):
        import numpy as np

        from kerasgen.image.data import load_images
        from kerasgen.image.metrics import ImageJudge

        path = run.join(CLASSIFIER)
        if not os.path.isfile(path):
            raise UsageError(f"{path} is missing: the run's data had no labels to train a classifier on")
        images, _ = load_images(run.train_config().data, model.image_size, model.channels)
        judge = ImageJudge(run.load_keras(path), images[:JUDGED_REAL_IMAGES])
        count = args.num_samples or self.evaluate_num_samples
        per_seed = [judge.score(np.asarray(model.generate(count, args.seed + i)))
                    for i in range(args.seeds)]
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
        from kerasgen.image.serving import generator_function

        return generator_function(model)

    def calibration_inputs(self, model, run, count=64):
        from kerasgen.image.serving import calibration_inputs

        return calibration_inputs(model, count)


FAMILY = ImageFamily()
