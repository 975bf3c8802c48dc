"""Image models at equal training time: Fréchet distance, confidence, class entropy, requested class."""
import json
import os
import tempfile

from kerasgen.bench import common
from kerasgen.errors import UsageError


def add_arguments(p):
    p.add_argument("--models", nargs="+",
                   default=["dense", "conv:num_classes=0", "vae", "diffusion:num_classes=0", "conv",
                            "diffusion"],
                   help="NAME or NAME:key=value,… (num_classes=0: unconditional on labelled data)")
    p.add_argument("--minutes", type=float, default=4.0, help="training-step time per model")
    p.add_argument("--epochs", type=int, default=5, help="per run (each ends with a judged sample)")
    p.add_argument("--image_size", type=int, default=28)
    p.add_argument("--channels", type=int, default=1)
    p.add_argument("--batch_size", type=int, help="(default: each model's own)")
    p.add_argument("--data", help="image data as the train CLI takes it (default: the embedded digits)")
    p.add_argument("--out", metavar="DIR", help="where the runs go (default: a new temporary folder)")


def model_spec(spec):
    """'conv:num_classes=0,filters=32' → ('conv', {'num_classes': '0', 'filters': '32'})."""
    name, _, settings = spec.partition(":")
    pairs = [item.partition("=") for item in settings.split(",") if item]
    if any(not eq for _, eq, _ in pairs):
        raise UsageError(f"--models {spec}: expected NAME or NAME:key=value,key=value")
    return name, {key: value for key, _, value in pairs}


def check(args):
    if args.minutes <= 0 or args.epochs < 1:
        raise UsageError("expected --minutes > 0 and --epochs ≥ 1")
    from kerasgen import catalogue

    for spec in args.models:
        catalogue.model(model_spec(spec)[0])


def run(args, overrides):
    """Each image model trained for the same CPU time on the same data, then judged alike: the
    steps of each run are its calibrated steps/s times the budget."""
    specs = [model_spec(spec) for spec in args.models]
    size = {"image_size": str(args.image_size), "channels": str(args.channels)}
    batches = [args.batch_size or common.settings(name, {**overrides, **settings, **size})[0].batch_size
               for name, settings in specs]  # every name and setting checked before anything trains
    out = args.out or tempfile.mkdtemp(prefix="kerasgen-bench-images-")
    os.makedirs(out, exist_ok=True)
    rows = []
    header = (f"{'model':28s} {'batch':>5s} {'steps':>6s} {'train s':>8s} {'wall s':>7s} {'FD':>7s} "
              f"{'conf':>6s} {'entropy':>8s} {'label':>6s}")
    print(f"image models, {args.minutes:g} min of training steps each, {args.image_size}x"
          f"{args.image_size}x{args.channels}, data: {args.data or 'digits'}\n{header}", flush=True)
    for spec, (name, settings), batch_size in zip(args.models, specs, batches):
        flags = {**overrides, **settings, **size}
        ms = common.step_ms(name, flags, args.data, batch_size)
        run_path = os.path.join(out, spec.replace(":", "_").replace(",", "_").replace("=", "-"))
        command = [f"--model={name}", f"--batch_size={batch_size}",
                   *(["--data", args.data] if args.data else []), *common.model_flags(flags)]
        per_epoch, wall, summary = common.train_for(args.minutes, args.epochs, ms, command, run_path)
        label = summary.get("label_accuracy")
        rows.append({"model": spec, "batch_size": batch_size, "steps": per_epoch * args.epochs,
                     "train_s": ms * per_epoch * args.epochs / 1000, "wall_s": wall,
                     **{k: summary.get(k) for k in ("fid", "confidence", "class_entropy",
                                                    "label_accuracy")}, "run": run_path})
        print(f"{spec:28s} {batch_size:5d} {per_epoch * args.epochs:6d} {rows[-1]['train_s']:8.0f} "
              f"{wall:7.0f} {summary['fid']:7.2f} {summary['confidence']:6.1%} "
              f"{summary['class_entropy']:8.2f} {'' if label is None else f'{label:.1%}':>6s}",
              flush=True)
    print(f"runs (samples.png in each): {out}")
    with open(os.path.join(out, "images.json"), "w") as f:
        json.dump(rows, f, indent=1)
    return rows
