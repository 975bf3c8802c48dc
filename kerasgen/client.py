"""python -m kerasgen.client: talk to a model served by TF Serving (REST or gRPC), or check an
exported SavedModel in this process where no server runs (--saved_model)."""
import json
import os
import sys

from kerasgen.cli import Parser, command, start_tensorflow
from kerasgen.errors import UsageError
from kerasgen.serving_client import ServingClient, ServingError
from kerasgen.text.sampling import SERVED_CONTROLS, Sampling


def _parser():
    p = Parser(prog="python -m kerasgen.client",
               description="Call a kerasgen model on TF Serving: 'generate' text, 'sample' images "
                           "(written as a PNG grid), or show the 'metadata' (signatures). With "
                           "--saved_model DIR, the same requests are answered in this process by "
                           "the exported SavedModel: a check of the export, not a server.")
    p.add_argument("--model", help="served model name (required, but with --saved_model)")
    p.add_argument("--saved_model", metavar="DIR",
                   help="answer from this SavedModel version (e.g. models/gru/1) in this process, "
                        "with tf.saved_model.load: no server, no kerasgen model code")
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
    if not args.model and not args.saved_model:
        raise UsageError("--model is required (or --saved_model DIR, to check an export locally)")
    local = args.saved_model is not None
    if local:
        if not os.path.isfile(os.path.join(args.saved_model, "saved_model.pb")):
            raise UsageError(f"--saved_model {args.saved_model}: no saved_model.pb there (give a "
                             f"version folder, e.g. models/gru/1)")
        print(f"kerasgen.client: answering from {args.saved_model} in this process "
              f"(tf.saved_model.load): a check of the export, not TF Serving", file=sys.stderr)
    if local or args.protocol == "grpc" or args.action == "sample":
        start_tensorflow()  # the SavedModel, the gRPC protos and the PNG writer need it
    client = ServingClient(args.model or os.path.basename(os.path.dirname(
        os.path.abspath(args.saved_model))), args.host, args.rest_port, args.grpc_port,
        "local" if local else args.protocol, args.timeout, args.saved_model)
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
