"""python -m kerasgen.evaluate --run DIR: validation loss and stability metrics over seeds, as JSON."""
import json
import sys

from kerasgen.cli import Parser, add_run_arguments, command, find_run, start_tensorflow
from kerasgen.errors import UsageError
from kerasgen.family import add_family_arguments, check_family_flags


def _parser():
    p = Parser(prog="python -m kerasgen.evaluate",
               description="Score a run: text models get validation loss, perplexity, bits per "
                           "character, and for --num_samples samples per seed the repetition "
                           "rate, distinct-1/2/3 and self-BLEU; image models the classifier's "
                           "Fréchet distance, class entropy and confidence. Sample metrics are "
                           "reported as mean and std over --seeds seeds.")
    add_run_arguments(p)
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (spread = std over them)")
    p.add_argument("--seed", type=int, default=0, help="the first seed (default: 0)")
    return p, add_family_arguments(p, "evaluate", "samples per seed")


@command("kerasgen.evaluate")
def main(argv):
    parser, family_options = _parser()
    args = parser.parse_args(argv)
    if (args.num_samples is not None and args.num_samples < 1) or args.seeds < 1:
        raise UsageError("--num_samples and --seeds must be ≥ 1")
    run, config = find_run(args.run, "kerasgen.evaluate")
    check_family_flags(argv, config, family_options)
    start_tensorflow()
    model = run.load_model(args.checkpoint)
    result = {"run": run.path, "model": config["model_name"], "checkpoint": args.checkpoint,
              "seeds": args.seeds, **model.family.evaluate(model, run, args)}
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
