"""Char vs byte-level BPE at equal training time: bits per byte, tokens/s and characters/s, samples."""
import json
import os
import tempfile

from kerasgen.bench import common
from kerasgen.errors import UsageError


def add_arguments(p):
    p.add_argument("--models", nargs="+", default=["transformer", "gru"])
    p.add_argument("--minutes", type=float, default=4.0, help="training-step time per run")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--vocab_size", type=int, default=1024, help="the BPE vocabulary")
    p.add_argument("--max_new_tokens", type=int, default=400, help="tokens generated per timing")
    p.add_argument("--sample_chars", type=int, default=300, help="characters of each sample shown")
    p.add_argument("--data", help="text as the train CLI takes it (default: the embedded help text)")
    p.add_argument("--out", metavar="DIR", help="where the runs go (default: a new temporary folder)")


def check(args):
    if args.minutes <= 0 or args.epochs < 1 or args.max_new_tokens < 1:
        raise UsageError("expected --minutes > 0, --epochs ≥ 1 and --max_new_tokens ≥ 1")
    from kerasgen import catalogue

    for name in args.models:
        if catalogue.model(name).family.name != "text":
            raise UsageError(f"--models {name}: not a text model")


def run(args, overrides):
    """Each text model with each tokenizer, trained for the same time on the same text: bits per
    byte of the validation split, generation speed in tokens and characters, and a sample."""
    import numpy as np

    from kerasgen.rundir import RunDir
    from kerasgen.text import run_validation_scores
    from kerasgen.text.decoding import generate_ids
    from kerasgen.text.sampling import Sampling

    settings = {"char": {}, "bpe": {"tokenizer": "bpe", "vocab_size": str(args.vocab_size)}}
    for name in args.models:  # every name and setting checked before anything trains
        for flags in settings.values():
            if common.settings(name, {**overrides, **flags})[2].family.name != "text":
                raise UsageError(f"--models {name}: not a text model")
    out = args.out or tempfile.mkdtemp(prefix="kerasgen-bench-tokenizers-")
    os.makedirs(out, exist_ok=True)
    print(f"text models, {args.minutes:g} min of training steps each, data: {args.data or 'pydoc'}\n"
          f"validation bits per byte of the final model and of the best epoch's\n"
          f"{'model':12s} {'tokenizer':10s} {'steps':>6s} {'wall s':>7s} {'final bpb':>10s} "
          f"{'best bpb':>9s} {'tokens/s':>9s} {'chars/s':>9s} {'chars/token':>11s}", flush=True)
    rows = []
    for name in args.models:
        for tokenizer, flags in settings.items():
            flags = {**overrides, **flags}
            batch_size = common.settings(name, flags)[0].batch_size
            ms = common.step_ms(name, flags, args.data, batch_size)
            run_path = os.path.join(out, f"{name}-{tokenizer}")
            command = [f"--model={name}", *(["--data", args.data] if args.data else []),
                       *common.model_flags(flags)]
            per_epoch, wall, summary = common.train_for(args.minutes, args.epochs, ms, command, run_path)
            run_dir = RunDir(run_path)
            best = run_validation_scores(run_dir.load_model("best"), run_dir.train_config())
            model = run_dir.load_model()
            sampling = Sampling(max_new_tokens=args.max_new_tokens, seed=0)

            def decode():
                return np.concatenate(list(generate_ids(model, ["\n"], sampling)), axis=1)[0]

            ids = decode()
            tokens_per_s = common.tokens_per_second(decode, len(ids))
            text = model.text_tokenizer.decode(ids)
            rows.append({"model": name, "tokenizer": tokenizer, "steps": per_epoch * args.epochs,
                         "wall_s": wall, "bits_per_byte": summary["bits_per_byte"],
                         "best_bits_per_byte": best["bits_per_byte"],
                         "tokens_per_s": tokens_per_s,
                         "chars_per_s": tokens_per_s * len(text) / len(ids),
                         "sample": text[:args.sample_chars], "run": run_path})
            row = rows[-1]
            print(f"{name:12s} {tokenizer:10s} {row['steps']:6d} {wall:7.0f} {row['bits_per_byte']:10.3f} "
                  f"{row['best_bits_per_byte']:9.3f} {row['tokens_per_s']:9.0f} {row['chars_per_s']:9.0f} "
                  f"{len(text) / len(ids):11.2f}", flush=True)
    for row in rows:
        print(f"\n--- {row['model']}, {row['tokenizer']} ---\n{row['sample']}")
    with open(os.path.join(out, "tokenizers.json"), "w") as f:
        json.dump(rows, f, indent=1, ensure_ascii=False)
    print(f"\nruns: {out}")
    return rows
