"""python -m kerasgen.bench NAME [flags] [--key=value …]: one of the benches in BENCHES."""
import importlib
import sys

from kerasgen.bench import BENCHES
from kerasgen.cli import Parser, command, parse_overrides, start_tensorflow


def _parser():
    p = Parser(prog="python -m kerasgen.bench",
               description="Benchmarks measured side by side in one run (compare rows, not runs). "
                           "Extra --key=value (or --key value) settings are training fields, recipe "
                           "fields and model hyperparameters, as python -m kerasgen.train takes them.")
    sub = p.add_subparsers(dest="bench", required=True)
    modules = {}
    for name in BENCHES:
        module = modules[name] = importlib.import_module(f"kerasgen.bench.{name}")
        module.add_arguments(sub.add_parser(name, help=module.__doc__.splitlines()[0]))
    return p, modules


@command("kerasgen.bench")
def main(argv):
    parser, modules = _parser()
    args, rest = parser.parse_known_args(argv)
    overrides, module = parse_overrides(rest), modules[args.bench]
    if hasattr(module, "check"):
        module.check(args)  # the bench's own flags, at once: TensorFlow takes seconds to start
    start_tensorflow()
    module.run(args, overrides)
    return 0


if __name__ == "__main__":
    sys.exit(main())
