"""python -m kerasgen.client: talk to a model served by TF Serving (REST or gRPC)."""
import json
import sys

from kerasgen.cli import Parser, command, start_tensorflow
from kerasgen.errors import UsageError
from kerasgen.serving_client import ServingClient, ServingError
from kerasgen.text.sampling import SERVED_CONTROLS, Sampling


def _parser():
    p = Parser(prog="python -m kerasgen.client",
               description="Call a kerasgen model on TF Serving: 'generate' text, 'sample' images "
                           "(written as a PNG grid), or show the 'metadata' (signatures).")
    p.add_argument("--model", required=True, help="served model name")
    p.add_argument("--host", default="localhost")
    p.add_argument("--rest_port", type=int, default=8501)
    p.add_argument("--grpc_port", type=int, default=8500)
    p.add_argument("--protocol", choices=["rest", "grpc"], default="rest")
    p.add_argument("--timeout", type=float,
                   help="total seconds a request may take (default: 10 plus 0.01 per token asked for)")
    sub = p.add_subparsers(dest="action", required=True)
    g = sub.add_parser("generate", help="continue prompts")
    g.add_argument("--prompt", action="append", required=True, help="repeat for a batch")
    Sampling.add_arguments(g, skip=set(Sampling.__dataclass_fields__) - set(SERVED_CONTROLS))
    s = sub.add_parser("sample", help="images from seeds")
    s.add_argument("--seeds", type=int, nargs="+", default=list(range(16)))
    s.add_argument("--out", default="samples.png", metavar="FILE.png")
    sub.add_parser("metadata", help="print the signatures as JSON")
    return p


@command("kerasgen.client")
def main(argv):
    args = _parser().parse_args(argv)
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError(f"--timeout must be > 0, got {args.timeout}")
    if args.protocol == "grpc" or args.action == "sample":
        start_tensorflow()  # the gRPC protos and the PNG writer need it
    client = ServingClient(args.model, args.host, args.rest_port, args.grpc_port, args.protocol,
                           args.timeout)
    try:
        if args.action == "metadata":
            print(json.dumps(client.metadata(), indent=1))
        elif args.action == "generate":
            controls = {key: getattr(args, key) for key in SERVED_CONTROLS}
            for prompt, text in zip(args.prompt, client.generate(args.prompt, **controls)):
                print(prompt + text)
        else:
            from kerasgen.image.data import image_grid, save_png

            images = client.sample(args.seeds)
            save_png(args.out, image_grid(images / 255.0))
            print(f"wrote {len(images)} samples to {args.out}")
    except ServingError as e:
        raise UsageError(str(e)) from None
    return 0


if __name__ == "__main__":
    sys.exit(main())
