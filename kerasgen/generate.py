"""python -m kerasgen.generate --run DIR: text that streams to the terminal, or a PNG grid of images."""
import sys

import numpy as np

from kerasgen.cli import Parser, UsageError, command, load_run
from kerasgen.generation import Sampling

STREAM_BLOCK = 32  # tokens per compiled call while streaming: ~1 ms of Python per block


def add_sampling_flags(p):
    """The sampling controls, shared with kerasgen.evaluate."""
    p.add_argument("--max_new_tokens", type=int, default=300, help="characters to generate")
    p.add_argument("--temperature", type=float, default=0.8, help="0 = greedy; higher = more random")
    p.add_argument("--top_k", type=int, default=0, help="sample among the k likeliest (0 = all)")
    p.add_argument("--top_p", type=float, default=1.0,
                   help="sample among the likeliest whose probability reaches p (1 = all)")
    p.add_argument("--repetition_penalty", type=float, default=1.0,
                   help="> 1 discourages characters already used (HF semantics; 1 = none)")
    p.add_argument("--no_repeat_ngram", type=int, default=0,
                   help="never repeat an n-gram of this many characters (0 = off)")
    p.add_argument("--seed", type=int, default=0, help="same seed → same text")
    p.add_argument("--checkpoint", choices=["final", "best"], default="final",
                   help="model.keras (final) or checkpoints/best.keras")


def sampling_from(args):
    if args.max_new_tokens < 1:
        raise UsageError(f"--max_new_tokens must be ≥ 1, got {args.max_new_tokens}")
    return Sampling(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                    repetition_penalty=args.repetition_penalty,
                    no_repeat_ngram=args.no_repeat_ngram, seed=args.seed)


def _parser():
    p = Parser(prog="python -m kerasgen.generate",
               description="Generate from a run directory made by kerasgen.train: text models "
                           "continue --prompt (streamed as it is produced), image models write "
                           "a grid of samples to --out.")
    p.add_argument("--run", required=True, metavar="DIR", help="run directory")
    p.add_argument("--prompt", default="\n", help="text to continue (default: a new line)")
    p.add_argument("--num_samples", type=int, default=1, help="samples (generated as one batch)")
    p.add_argument("--out", metavar="FILE.png", help="image models: where to write the grid")
    add_sampling_flags(p)
    return p


def stream_text(model, prompt, num_samples, max_new_tokens, sampling):
    """Writes each sample's text to stdout as blocks of it are produced; returns the texts."""
    from kerasgen.data import CharVocab
    from kerasgen.generation import generate_ids

    vocab = CharVocab(model.vocabulary)
    unknown = vocab.unknown(prompt)
    if unknown:
        raise UsageError(f"the prompt has characters outside the model's vocabulary: {unknown!r}")
    texts = [""] * num_samples
    blocks = generate_ids(model, [prompt] * num_samples, max_new_tokens, sampling,
                          block=STREAM_BLOCK if num_samples == 1 else None)
    for ids in blocks:
        for i, row in enumerate(ids):
            texts[i] += vocab.decode(row)
        if num_samples == 1:
            sys.stdout.write(vocab.decode(ids[0]))
            sys.stdout.flush()
    if num_samples > 1:
        for i, text in enumerate(texts):
            sys.stdout.write(f"--- sample {i + 1} ---\n{prompt}{text}\n")
    return texts


@command("kerasgen.generate")
def main(argv):
    args = _parser().parse_args(argv)
    sampling = sampling_from(args)
    if args.num_samples < 1:
        raise UsageError(f"--num_samples must be ≥ 1, got {args.num_samples}")
    model, _ = load_run(args.run, args.checkpoint)
    if hasattr(model, "vocabulary"):
        if args.num_samples == 1:
            sys.stdout.write(args.prompt)
        stream_text(model, args.prompt, args.num_samples, args.max_new_tokens, sampling)
        print()
        return 0
    from kerasgen.images import image_grid, save_png

    if not args.out:
        raise UsageError("image models write a picture: give --out FILE.png")
    images = np.asarray(model.generate(args.num_samples if args.num_samples > 1 else 64, args.seed))
    save_png(args.out, image_grid(images))
    print(f"wrote {len(images)} samples to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
