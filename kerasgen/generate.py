"""python -m kerasgen.generate --run DIR: text that streams to the terminal, or a PNG grid of images."""
import sys

from kerasgen.cli import Parser, add_run_arguments, command, find_run, start_tensorflow
from kerasgen.errors import UsageError
from kerasgen.family import add_family_arguments, check_family_flags


def _parser():
    p = Parser(prog="python -m kerasgen.generate",
               description="Generate from a trained run: text models continue --prompt (streamed "
                           "as it is produced), image models write a grid of samples to --out.")
    add_run_arguments(p)
    p.add_argument("--seed", type=int, default=0, help="same seed, same output (default: 0)")
    return p, add_family_arguments(p, "generate", "samples, generated as one batch")


@command("kerasgen.generate")
def main(argv):
    parser, family_options = _parser()
    args = parser.parse_args(argv)
    if args.num_samples is not None and args.num_samples < 1:
        raise UsageError(f"--num_samples must be ≥ 1, got {args.num_samples}")
    run, config = find_run(args.run, "kerasgen.generate")
    check_family_flags(argv, config, family_options)
    start_tensorflow()
    model = run.load_model(args.checkpoint)
    model.family.generate(model, run, args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
