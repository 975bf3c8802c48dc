"""python -m kerasgen.export --run DIR: a TF Serving SavedModel version and LiteRT files."""
import os
import sys

from kerasgen.cli import Parser, UsageError, command, load_run


def _parser():
    p = Parser(prog="python -m kerasgen.export",
               description="Export a run for serving: BASE/<model>/<version>/ (a SavedModel in "
                           "TF Serving's layout, with BASE/models.config) and "
                           "BASE/<model>/tflite/<version>/*.tflite (LiteRT, built-in ops only).")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory")
    p.add_argument("--base", default="models", metavar="PATH",
                   help="model base path, what TF Serving's Docker image mounts at /models "
                        "(default: models)")
    p.add_argument("--name", help="served model name (default: the zoo model's name)")
    p.add_argument("--version", type=int, help="version number (default: one more than the highest)")
    p.add_argument("--formats", default="saved_model,tflite",
                   help="comma-separated: saved_model, tflite (default: both)")
    p.add_argument("--quantize", default="none",
                   help="TFLite quantization, comma-separated: none, dynamic, float16, int8 "
                        "(int8 is calibrated on the run's own data)")
    p.add_argument("--xla", action="store_true",
                   help="compile the text generate loop with XLA: several times faster, but "
                        "tensorflow_model_server then needs --xla_cpu_compilation_enabled=true")
    p.add_argument("--checkpoint", choices=["final", "best"], default="final")
    return p


def _calibration(model, config):
    """A sample of the run's data for int8: text ids, or latents for generators."""
    import numpy as np

    if hasattr(model, "vocabulary"):
        from kerasgen.data import CharVocab, load_text

        text = load_text(config["train"]["data"] or type(model).default_data)
        return CharVocab(model.vocabulary).encode(text[:2000])
    return np.random.default_rng(0).normal(size=(64, model.latent_dim)).astype("float32")


def export_tflite(model, config, model_dir, version, quantizations):
    from export import tflite

    folder = os.path.join(model_dir, "tflite", str(version))
    os.makedirs(folder, exist_ok=True)
    written = []
    for quantize in quantizations:
        calibration = tflite.calibration_inputs(model, _calibration(model, config)) \
            if quantize == "int8" else None
        data = tflite.convert(model, quantize, calibration)
        tflite.interpreter(data)  # refuse a file the stock interpreter cannot load
        path = os.path.join(folder, f"{'model' if quantize == 'none' else quantize}.tflite")
        with open(path + ".tmp", "wb") as f:
            f.write(data)
        os.replace(path + ".tmp", path)
        written.append(path)
    return written


@command("kerasgen.export")
def main(argv):
    from export import tflite

    args = _parser().parse_args(argv)
    formats = [f for f in args.formats.split(",") if f]
    quantizations = [q for q in args.quantize.split(",") if q]
    if not formats or set(formats) - {"saved_model", "tflite"}:
        raise UsageError(f"--formats takes saved_model and/or tflite, got {args.formats!r}")
    if not quantizations or set(quantizations) - set(tflite.QUANTIZATIONS):
        raise UsageError(f"--quantize takes {', '.join(tflite.QUANTIZATIONS)}, got {args.quantize!r}")
    if args.version is not None and args.version < 1:
        raise UsageError(f"--version must be ≥ 1, got {args.version}")
    model, config = load_run(args.run, args.checkpoint)
    name = args.name or config["model_name"]
    model_dir = os.path.join(args.base, name)

    from export.saved_model import export_saved_model, next_version

    version = args.version or next_version(model_dir)
    if os.path.exists(os.path.join(model_dir, str(version))):
        raise UsageError(f"{os.path.join(model_dir, str(version))} exists; versions are never "
                         f"overwritten (the next free one is {next_version(model_dir)})")
    if "saved_model" in formats:
        path = export_saved_model(model, name, args.base, version, jit_compile=args.xla)
        print(f"SavedModel: {path}  (signatures: see saved_model_cli show --dir {path} --all)")
        print(f"TF Serving config: {os.path.join(args.base, 'models.config')}")
    if "tflite" in formats:
        for path in export_tflite(model, config, model_dir, version, quantizations):
            print(f"LiteRT: {path}")
    base = os.path.abspath(args.base)
    example = '{"instances": [{"prompt": "The "}]}' if hasattr(model, "vocabulary") \
        else '{"instances": [{"seed": 1}]}'
    print("\nServe it:\n"
          f"  docker run -p 8500:8500 -p 8501:8501 -v {base}:/models tensorflow/serving "
          f"--model_config_file=/models/models.config"
          f"{' --xla_cpu_compilation_enabled=true' if args.xla else ''}\n"
          f"  curl -d '{example}' localhost:8501/v1/models/{name}:predict")
    return 0


if __name__ == "__main__":
    sys.exit(main())
