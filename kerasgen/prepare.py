"""python -m kerasgen.prepare --data SOURCE... --out DIR: a text corpus of any size, tokenized once
into token files that `train --data DIR` reads from disk."""
import sys

from kerasgen.cli import Parser, command
from kerasgen.errors import UsageError
from kerasgen.text.tokenizer import DEFAULT_BPE_VOCAB, MAX_BPE_VOCAB, TOKENIZERS


def _parser():
    p = Parser(prog="python -m kerasgen.prepare",
               description="Tokenize text sources once into DIR/train.bin and DIR/val.bin (raw "
                           "little-endian uint16 token ids, uint32 above 65,536 tokens: nanoGPT's "
                           "files) and DIR/manifest.json (tokenizer, counts, sources and their "
                           "hashes). The last 10% of each source's characters validate. Then: "
                           "python -m kerasgen.train --data DIR. Sources are streamed, never read "
                           "whole; a second run with the same sources does nothing.",
               epilog="A run killed or failed part-way leaves nothing behind that train accepts. "
                      "Bad input exits with code 2.")
    p.add_argument("--data", nargs="+", required=True, metavar="SOURCE",
                   help="UTF-8 text files, folders (their .txt files), globs ('corpus/*.txt'), "
                        ".jsonl files (one JSON object a line; see --field) or tfds:NAME (the "
                        "local data_dir's train split, read one example at a time)")
    p.add_argument("--out", required=True, metavar="DIR", help="the prepared corpus' folder")
    p.add_argument("--tokenizer", choices=TOKENIZERS, default="char",
                   help="char (the corpus' characters; default) or bpe (byte-level BPE learned "
                        "from up to 32 MB of the training parts)")
    p.add_argument("--vocab_size", type=int,
                   help=f"with --tokenizer=bpe: tokens, the 256 bytes included (default "
                        f"{DEFAULT_BPE_VOCAB})")
    p.add_argument("--field", help=".jsonl and tfds: the text field (default: 'text' for .jsonl, "
                                   "the first text feature for tfds)")
    p.add_argument("--tokenizer_from", metavar="RUN",
                   help="encode with this run's tokenizer instead (to fine-tune it with "
                        "--init_from RUN on this corpus)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


@command("kerasgen.prepare")
def main(argv):
    args = _parser().parse_args(argv)
    from kerasgen.text.prepared import Settings, expand_sources, prepare, tokenizer_digest

    if args.vocab_size is not None and args.tokenizer != "bpe":
        raise UsageError("--vocab_size needs --tokenizer=bpe")
    if args.vocab_size is not None and not 257 <= args.vocab_size <= MAX_BPE_VOCAB:
        raise UsageError(f"--vocab_size={args.vocab_size} must be in 257..{MAX_BPE_VOCAB}")
    tokenizer = None
    if args.tokenizer_from:
        from kerasgen.rundir import RunDir
        from kerasgen.text import _pretrained_tokenizer

        if any(a.partition("=")[0] == "--tokenizer" for a in argv) or args.vocab_size is not None:
            raise UsageError("--tokenizer_from takes the run's tokenizer: drop --tokenizer and "
                             "--vocab_size")
        tokenizer = _pretrained_tokenizer(RunDir.find(args.tokenizer_from))
    settings = Settings(tokenizer.kind if tokenizer else args.tokenizer,
                        None if tokenizer else args.vocab_size, args.field,
                        tokenizer_digest(tokenizer) if tokenizer else None)
    manifest, skipped = prepare(expand_sources(args.data, args.field), args.out, settings,
                                progress=not args.quiet, tokenizer=tokenizer)
    files = manifest["files"]
    seconds = manifest["seconds"]["total"]
    what = "already prepared, nothing to do" if skipped else f"prepared in {seconds:.1f} s"
    print(f"{args.out}: {what}: {files['train']['tokens']:,} training and "
          f"{files['validation']['tokens']:,} validation tokens ({manifest['tokenizer']}, "
          f"{manifest['vocab_size']:,} tokens, {manifest['dtype']}) from "
          f"{len(manifest['sources'])} source(s)\nnext: python -m kerasgen.train --data {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
