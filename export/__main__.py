"""python -m kerasgen.export --run DIR: a TF Serving SavedModel version and LiteRT files."""
import json
import os
import re
import sys

from kerasgen.cli import Parser, add_run_arguments, command, filtered_stderr, find_run, start_tensorflow
from kerasgen.errors import RunError, UsageError
from kerasgen.family import families
from kerasgen.rundir import atomic_write

FORMATS = ("saved_model", "tflite")
# What the LiteRT converter and interpreter print for every file, not for the user.
LITERT_CHATTER = re.compile(r"^INFO: Created TensorFlow Lite XNNPACK delegate|^fully_quantize: ")
QUANTIZATIONS = ("none", "dynamic", "float16", "int8")


def _parser():
    p = Parser(prog="python -m kerasgen.export",
               description="Export a run for serving: BASE/<name>/<version>/ (a SavedModel in "
                           "TF Serving's layout, with BASE/models.config) and "
                           "BASE/<name>/tflite/<version>/*.tflite (LiteRT, built-in ops only). "
                           "Nothing existing is ever overwritten.")
    add_run_arguments(p)
    p.add_argument("--base", default="models", metavar="PATH",
                   help="model base path, what TF Serving's Docker image mounts at /models "
                        "(default: models)")
    p.add_argument("--name", help="served model name (default: the zoo model's name)")
    p.add_argument("--version", type=int, help="version number (default: one more than the highest)")
    p.add_argument("--formats", default=",".join(FORMATS),
                   help="comma-separated: saved_model, tflite (default: both)")
    p.add_argument("--quantize", default="none",
                   help="LiteRT quantization, comma-separated: none, dynamic, float16, int8 "
                        "(int8 is calibrated on the run's own data)")
    p.add_argument("--max_batch", type=int, default=64,
                   help="the served signatures' largest batch (default: 64)")
    for family in families():
        family.add_export_arguments(p.add_argument_group(family.title))
    return p


def _tflite_paths(folder, quantizations):
    return {q: os.path.join(folder, f"{'model' if q == 'none' else q}.tflite") for q in quantizations}


@command("kerasgen.export")
def main(argv):
    args = _parser().parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    quantizations = [q for q in args.quantize.split(",") if q]
    if not formats or set(formats) - set(FORMATS):
        raise UsageError(f"--formats takes saved_model and/or tflite, got {args.formats!r}")
    if not quantizations or set(quantizations) - set(QUANTIZATIONS):
        raise UsageError(f"--quantize takes {', '.join(QUANTIZATIONS)}, got {args.quantize!r}")
    if args.version is not None and args.version < 1:
        raise UsageError(f"--version must be ≥ 1, got {args.version}")
    for key in ("max_batch", "max_new_tokens_limit", "max_prompt_chars"):
        if getattr(args, key, 1) < 1:
            raise UsageError(f"--{key} must be ≥ 1, got {getattr(args, key)}")
    run, config = find_run(args.run, "kerasgen.export")
    start_tensorflow()
    from kerasgen.export import tflite
    from kerasgen.export.saved_model import check_model_name, export_saved_model, next_version

    name = check_model_name(args.name or config["model_name"])
    model_dir = os.path.join(args.base, name)
    version = args.version or next_version(model_dir)
    if os.path.exists(os.path.join(model_dir, str(version))):
        raise RunError(f"{os.path.join(model_dir, str(version))} exists; versions are never "
                       f"overwritten (the next free one is {next_version(model_dir)})")
    lite_paths = _tflite_paths(os.path.join(model_dir, "tflite", str(version)), quantizations) \
        if "tflite" in formats else {}
    taken = [p for p in lite_paths.values() if os.path.exists(p)]
    if taken:
        raise RunError(f"{taken[0]} exists; LiteRT files are never overwritten (choose another --version)")
    model = run.load_model(args.checkpoint)
    family = model.family
    serving = family.serving(model, args)
    if "saved_model" in formats:
        path = export_saved_model(model, serving, name, args.base, version)
        print(f"SavedModel: {path}  (signatures: saved_model_cli show --dir {path} --all)")
        print(f"  limits (requests beyond them fail with INVALID_ARGUMENT): "
              f"{', '.join(f'{k}={v}' for k, v in serving.limits.items())}")
        print(f"TF Serving config: {os.path.join(args.base, 'models.config')}")
    for quantize, path in lite_paths.items():
        calibration = family.calibration_inputs(model, run) if quantize == "int8" else None
        with filtered_stderr(LITERT_CHATTER.search):
            data = tflite.convert(model, quantize, calibration)
            tflite.interpreter(data)  # refuse a file the stock interpreter cannot load
        os.makedirs(os.path.dirname(path), exist_ok=True)
        atomic_write(path, data)
        print(f"LiteRT: {path}")
    flags = "".join(f" {flag}" for flag in serving.server_flags)
    print("\nServe it:\n"
          f"  docker run -p 8500:8500 -p 8501:8501 -v {os.path.abspath(args.base)}:/models "
          f"tensorflow/serving --model_config_file=/models/models.config{flags}\n"
          f"  curl -d '{json.dumps(family.serving_example())}' localhost:8501/v1/models/{name}:predict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
