"""python -m kerasgen.evaluate --run DIR: validation loss and stability metrics over seeds, as JSON."""
import dataclasses
import json
import math
import os
import sys

import numpy as np

from kerasgen.cli import Parser, UsageError, command, load_run
from kerasgen.generate import add_sampling_flags, sampling_from


def _parser():
    p = Parser(prog="python -m kerasgen.evaluate",
               description="Score a run: text models get validation loss, perplexity, bits per "
                           "character, and for --num_samples samples per seed the repetition "
                           "rate, distinct-1/2/3 and self-BLEU; image models the classifier's "
                           "Fréchet distance, class entropy and confidence. Sample metrics are "
                           "reported as mean and std over --seeds seeds.")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory")
    p.add_argument("--prompt", default="The ", help="text models: prompt of every sample")
    p.add_argument("--num_samples", type=int, default=8, help="samples per seed (images: 500)")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (spread = std over them)")
    add_sampling_flags(p)
    return p


def evaluate_text(model, config, args, sampling):
    from kerasgen.data import CharVocab, load_text, text_datasets
    from kerasgen.generation import generate
    from kerasgen.metrics import spread, text_stability

    train = config["train"]
    vocab = CharVocab(model.vocabulary)
    _, val = text_datasets(vocab.encode(load_text(train["data"] or type(model).default_data)),
                           train["seq_len"], train["batch_size"], train["validation_steps"],
                           train["seed"])
    model.compile()
    val_loss = model.evaluate(val, verbose=0, return_dict=True)["loss"]
    per_seed = [text_stability(generate(model, [args.prompt] * args.num_samples,
                                        args.max_new_tokens,
                                        dataclasses.replace(sampling, seed=sampling.seed + i)))
                for i in range(args.seeds)]
    return {"val_loss": val_loss, "perplexity": math.exp(val_loss),
            "bits_per_char": val_loss / math.log(2.0), "samples": spread(per_seed)}


def evaluate_images(model, config, args):
    import keras

    from kerasgen.images import load_images
    from kerasgen.metrics import spread
    from kerasgen.quality import ImageJudge

    path = os.path.join(args.run, "classifier.keras")
    if not os.path.isfile(path):
        raise UsageError(f"{path} is missing: the run's data had no labels to train a classifier on")
    images, _ = load_images(config["train"]["data"] or type(model).default_data, model.image_size,
                            model.channels)
    judge = ImageJudge(keras.saving.load_model(path), images[:2000])
    count = args.num_samples if args.num_samples > 8 else 500
    per_seed = [judge.score(np.asarray(model.generate(count, args.seed + i)))
                for i in range(args.seeds)]
    return {"samples": spread(per_seed)}


@command("kerasgen.evaluate")
def main(argv):
    args = _parser().parse_args(argv)
    sampling = sampling_from(args)
    if args.num_samples < 1 or args.seeds < 1:
        raise UsageError("--num_samples and --seeds must be ≥ 1")
    model, config = load_run(args.run, args.checkpoint)
    result = {"run": args.run, "model": config["model_name"], "checkpoint": args.checkpoint,
              "seeds": args.seeds, "num_samples": args.num_samples}
    if hasattr(model, "vocabulary"):
        result["sampling"] = {**dataclasses.asdict(sampling), "max_new_tokens": args.max_new_tokens}
        result.update(evaluate_text(model, config, args, sampling))
    else:
        result.update(evaluate_images(model, config, args))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
