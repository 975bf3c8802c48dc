"""Corpora prepared once into token files and read from disk, never held in memory.

`prepare` streams its sources twice (count and hash, then encode) and writes
nanoGPT's layout: `train.bin` and `val.bin` of raw little-endian token ids
(uint16, or uint32 for a vocabulary above 65,536), plus `manifest.json` and,
for BPE, `tokenizer.json`. It writes into a hidden sibling directory and
renames it last, so a killed or failed run leaves nothing `train` accepts.
Each source is cut as `split_text` cuts one corpus (its last 10% of characters
validate), and it is encoded in pieces that end where no pre-token of the BPE
tokenizer could cross, so the ids equal those of encoding it whole.

`TokenFile` reads windows with `os.pread`: nanoGPT reopens its `np.memmap`
for every batch because pages of a long-lived map count in the process'
memory as they are touched (its issue #287); a read of just the window's
bytes keeps memory independent of the corpus.

This module imports no TensorFlow (`tfds:` sources import it when read).
"""
import codecs
import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time

import numpy as np

from kerasgen.errors import DataError
from kerasgen.text.tokenizer import _SPACE, DEFAULT_BPE_VOCAB, BytePairTokenizer, CharVocab

MANIFEST = "manifest.json"
FORMAT = "kerasgen-tokens"
VERSION = 1
FILES = {"train": "train.bin", "validation": "val.bin"}
TOKENIZER_FILE = "tokenizer.json"
VALIDATION_RULE = "the last 10% of each source's characters"
READ_BYTES = 8 << 20  # a source is read in blocks of this many bytes
PIECE_CHARS = 1 << 18  # characters per piece handed to the encoder (encode_batch runs them in parallel)
PIECES_PER_ROUND = 32  # pieces encoded per call: enough for every core
BPE_SAMPLE_CHARS = 32 << 20  # the BPE trainer learns from at most this many training characters
TEXT_SUFFIXES = (".txt",)
VALIDATION_SHARE = 0.1  # nanoGPT's: the last 10% of the text validates (split_text's too)
# A cut after a non-space character followed by a space cannot split one of PRE_TOKENS'
# pre-tokens (none has a space after its first character), so encoding the pieces gives the
# ids of encoding them joined.
_SAFE_CUT = re.compile(f"[^{_SPACE}](?=[{_SPACE}])")


# -- sources -------------------------------------------------------------------------------
@dataclasses.dataclass
class Source:
    """One input: a text file, a .jsonl file (records' `field`, joined by newlines) or tfds:NAME
    (its train split's first text feature, or `field`, examples joined by newlines)."""

    name: str
    field: str = None

    @property
    def kind(self):
        if self.name.startswith("tfds:"):
            return "tfds"
        return "jsonl" if self.name.endswith(".jsonl") else "text"

    def fingerprint(self):
        """(size, mtime) of a file, which tells an unchanged one without reading it; None for tfds."""
        if self.kind == "tfds":
            return None
        stat = os.stat(self.name)
        return [stat.st_size, stat.st_mtime_ns]

    def size(self):
        return None if self.kind == "tfds" else os.path.getsize(self.name)

    def texts(self, digest):
        """The source's text in pieces, in order; `digest` (a hashlib object) sees its bytes."""
        return {"text": self._file_texts, "jsonl": self._jsonl_texts,
                "tfds": self._tfds_texts}[self.kind](digest)

    def _file_texts(self, digest):
        decoder = codecs.getincrementaldecoder("utf-8")("strict")
        offset = 0
        with _reading(self.name) as f:
            while True:
                data = f.read(READ_BYTES)
                digest.update(data)
                pending = len(decoder.getstate()[0])
                try:
                    text = decoder.decode(data, final=not data)
                except UnicodeDecodeError as e:
                    raise _not_utf8(self.name, e, offset - pending) from None
                offset += len(data)
                if text:
                    yield text
                if not data:
                    return

    def _jsonl_texts(self, digest):
        field = self.field or "text"
        offset = 0
        with _reading(self.name) as f:
            for number, line in enumerate(f, 1):
                digest.update(line)
                try:
                    record = json.loads(line.decode("utf-8")) if line.strip() else None
                except UnicodeDecodeError as e:
                    raise _not_utf8(self.name, e, offset) from None
                except ValueError as e:
                    raise DataError(f"{self.name}, line {number}: not JSON ({e})") from None
                offset += len(line)
                if record is None:
                    continue
                if not isinstance(record, dict) or not isinstance(record.get(field), str):
                    raise DataError(f"{self.name}, line {number}: no text field {field!r} (choose "
                                    f"one with --field)")
                yield ("\n" if number > 1 else "") + record[field]

    def _tfds_texts(self, digest):
        import tensorflow_datasets as tfds

        from kerasgen.data import load_tfds

        name = self.name[len("tfds:"):]
        ds = load_tfds(name)
        keys = [k for k, spec in ds.element_spec.items() if spec.dtype.name == "string"]
        if self.field and self.field not in keys:
            raise DataError(f"tfds:{name} has no text feature {self.field!r} "
                            f"(its text features: {', '.join(keys) or 'none'})")
        if not keys:
            raise DataError(f"tfds:{name} has no text feature")
        for i, example in enumerate(tfds.as_numpy(ds)):  # one example at a time
            data = example[self.field or keys[0]]
            digest.update(data)
            yield ("\n" if i else "") + data.decode("utf-8", "replace")


class _reading:
    """open(path, 'rb') whose OSError is one DataError."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        try:
            self.file = open(self.path, "rb")
        except OSError as e:
            raise DataError(f"cannot read {self.path}: {e.strerror or e}") from None
        return self.file

    def __exit__(self, *exc):
        self.file.close()


def _not_utf8(name, error, offset):
    return DataError(f"{name} is not UTF-8 text: byte 0x{error.object[error.start]:02x} at offset "
                     f"{offset + error.start:,} is not UTF-8 (convert it, e.g. with iconv)")


def expand_sources(names, field=None):
    """`--data` names → Sources: files as they are, folders as their .txt files (recursively),
    globs as their matches, sorted; a name that matches nothing is a DataError."""
    sources = []
    for name in names:
        if name.startswith("tfds:"):
            matches = [name]
        elif os.path.isdir(name):
            matches = sorted(p for p in glob.glob(os.path.join(name, "**", "*"), recursive=True)
                             if p.endswith(TEXT_SUFFIXES) and os.path.isfile(p))
            if not matches:
                raise DataError(f"{name} holds no {'/'.join(TEXT_SUFFIXES)} files")
        elif glob.has_magic(name):
            matches = sorted(p for p in glob.glob(name, recursive=True) if os.path.isfile(p))
            if not matches:
                raise DataError(f"{name} matches no file")
        elif not os.path.exists(name):
            raise DataError(f"data file not found: {name}")
        else:
            matches = [name]
        sources += [Source(m, field) for m in matches]
    seen = set()
    for source in sources:
        if source.name in seen:
            raise DataError(f"{source.name} is named twice in --data")
        seen.add(source.name)
    return sources


# -- preparing -----------------------------------------------------------------------------
@dataclasses.dataclass
class Settings:
    """What the token ids depend on besides the sources."""

    tokenizer: str = "char"
    vocab_size: int = None  # bpe; None: DEFAULT_BPE_VOCAB
    field: str = None  # .jsonl and tfds: the text field
    tokenizer_from: str = None  # the digest of a given tokenizer (a run's), which then encodes


def tokenizer_digest(tokenizer):
    """What tells one tokenizer from another: the hash of its config."""
    return "sha256:" + hashlib.sha256(json.dumps(tokenizer.model_config(), sort_keys=True)
                                      .encode()).hexdigest()


class _Scan:
    """What the first pass learns of a source: its hash, characters and (char) character counts."""

    def __init__(self, source, counts, sample_chars):
        digest = hashlib.sha256()
        self.chars, self.sample = 0, []
        sampled, blank = 0, True
        for text in source.texts(digest):
            self.chars += len(text)
            blank = blank and not text.strip()
            if counts is not None:
                counts += np.bincount(_codes(text), minlength=counts.size)
            if sampled < sample_chars:
                self.sample.append(text[:sample_chars - sampled])
                sampled += len(self.sample[-1])
        self.sha256 = digest.hexdigest()
        self.bytes = source.size()
        if blank:
            raise DataError(f"data source {source.name} is empty")
        self.cut = int(self.chars * (1 - VALIDATION_SHARE))
        self.sample = "".join(self.sample)[:self.cut]  # training text only, like the weights


def _codes(text):
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), np.uint32)


class _Encoder:
    """Pieces of text → model ids, the tokenizer's own, in one vectorized call (BPE: the
    `tokenizers` library's encode_batch, on every core)."""

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        if tokenizer.kind == "bpe":
            from tokenizers import Tokenizer

            self.library = Tokenizer.from_str(tokenizer.spec)

    def encode(self, pieces):
        if self.tokenizer.kind == "char":
            return self.tokenizer.encode("".join(pieces))
        encodings = self.library.encode_batch_fast(pieces)
        return np.concatenate([np.asarray(e.ids, np.uint32) for e in encodings] or
                              [np.zeros(0, np.uint32)]) + 1


def safe_pieces(text, size=PIECE_CHARS):
    """(pieces of about `size` characters, the rest): each cut at a `_SAFE_CUT`; the rest, after
    the last cut, waits for the text that follows it."""
    pieces, start = [], 0
    while len(text) - start > size:
        match = _SAFE_CUT.search(text, start + size)
        if match is None:
            break
        pieces.append(text[start:match.end()])
        start = match.end()
    rest = text[start:]
    if len(rest) > PIECES_PER_ROUND * size:  # no space at all for megabytes: cut anyway
        pieces += [rest[i:i + size] for i in range(0, len(rest), size)]
        rest = ""
    return pieces, rest


def dtype_for(vocab_size):
    return "uint16" if vocab_size <= 1 << 16 else "uint32"


def prepare(sources, out, settings, progress=True, tokenizer=None, replace=False):
    """Prepares `sources` into the directory `out` (see the module's docstring), encoded with
    `tokenizer` (whose digest is `settings.tokenizer_from`) or one learned from them as
    `settings` say. Returns (manifest, whether it was already there: same sources and
    settings, nothing done). Another corpus at `out` is refused, or with `replace` (a cache)
    replaced once the new one is complete."""
    out = os.path.abspath(out)
    existing = _existing(out)
    if existing is not None and _same(existing, sources, settings):
        return existing, True
    started = time.time()
    pretrained = tokenizer
    counts = np.zeros(0x110000, np.int64) if settings.tokenizer == "char" else None
    sample_chars = BPE_SAMPLE_CHARS // len(sources) if settings.tokenizer == "bpe" else 0
    total = sum(s.size() or 0 for s in sources) or None
    with _bar(progress, total, "reading ") as bar:
        scans = []
        for source in sources:
            scans.append(_Scan(source, counts, sample_chars))
            bar.update(scans[-1].bytes or 0)
    if existing is not None:
        if _same_content(existing, sources, scans, settings):
            return existing, True
        if not replace:
            raise DataError(f"{out} holds another prepared corpus ({len(existing['sources'])} "
                            f"sources); choose another --out or delete it")
    read_s = time.time() - started
    if pretrained is not None:
        tokenizer = pretrained
        unknown = "".join(chr(c) for c in np.flatnonzero(counts)
                          if chr(c) not in tokenizer.chars) if counts is not None else ""
        if unknown:
            raise DataError(f"the data has {len(unknown)} characters outside the given "
                            f"vocabulary: {unknown[:40]!r}; clean them out, or use a bpe "
                            f"tokenizer (bytes: no unknown characters)")
    elif settings.tokenizer == "bpe":
        tokenizer = BytePairTokenizer.train("\n".join(s.sample for s in scans),
                                            settings.vocab_size or DEFAULT_BPE_VOCAB)
    else:
        tokenizer = CharVocab("".join(map(chr, np.flatnonzero(counts))))
    tokenizer_s = time.time() - started - read_s
    dtype = dtype_for(tokenizer.size)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    _remove_abandoned(out)
    partial = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.partial-{os.getpid()}-", dir=parent)
    try:
        manifest = _write(partial, sources, scans, tokenizer, dtype, settings, total, progress)
        total_s = time.time() - started
        manifest["seconds"] = {"read": round(read_s, 2), "tokenizer": round(tokenizer_s, 2),
                               "encode": round(total_s - read_s - tokenizer_s, 2),
                               "total": round(total_s, 2)}
        _write_json(os.path.join(partial, MANIFEST), manifest)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(partial, 0o777 & ~umask)  # mkdtemp's folder is private
        if os.path.isdir(out):  # empty, or (`replace`) the corpus this one replaces
            shutil.rmtree(out)
        os.rename(partial, out)
    except OSError as e:
        shutil.rmtree(partial, ignore_errors=True)
        raise DataError(f"cannot write {out}: {e.strerror or e}; nothing was kept") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return manifest, False


def _write(directory, sources, scans, tokenizer, dtype, settings, total, progress):
    encoder = _Encoder(tokenizer)
    files = {part: open(os.path.join(directory, name), "wb") for part, name in FILES.items()}
    tokens = {part: 0 for part in FILES}
    rows = []
    started = time.time()
    try:
        with _bar(progress, total, "encoding") as bar:
            for source, scan in zip(sources, scans):
                before = dict(tokens)
                seen, buffers = 0, {"train": "", "validation": ""}

                def flush(part, text, final):
                    pieces, rest = safe_pieces(text)
                    if final and rest:
                        pieces, rest = pieces + [rest], ""
                    for i in range(0, len(pieces), PIECES_PER_ROUND):
                        ids = encoder.encode(pieces[i:i + PIECES_PER_ROUND])
                        files[part].write(ids.astype(np.dtype(dtype).newbyteorder("<")).tobytes())
                        tokens[part] += ids.size
                    return rest

                for text in source.texts(hashlib.sha256()):
                    head = text[:max(0, scan.cut - seen)]
                    tail = text[len(head):]
                    seen += len(text)
                    if head:
                        buffers["train"] = flush("train", buffers["train"] + head, False)
                    if tail:
                        if buffers["train"]:
                            buffers["train"] = flush("train", buffers["train"], True)
                        buffers["validation"] = flush("validation", buffers["validation"] + tail, False)
                    bar.update(round((scan.bytes or 0) * len(text) / scan.chars))
                    bar.set_postfix_str(f"{sum(tokens.values()) / max(1e-9, time.time() - started) / 1e6:.2f}"
                                        f"M tokens/s", refresh=False)
                for part in FILES:
                    buffers[part] = flush(part, buffers[part], True)
                rows.append({"source": source.name, "bytes": scan.bytes, "chars": scan.chars,
                             "sha256": scan.sha256, "fingerprint": source.fingerprint(),
                             **{f"{part}_tokens": tokens[part] - before[part] for part in FILES}})
    finally:
        for f in files.values():
            f.close()
    if not tokens["train"] or not tokens["validation"]:
        raise DataError("the sources hold too little text to have both a training and a "
                        "validation part")
    if tokenizer.kind == "bpe":
        with open(os.path.join(directory, TOKENIZER_FILE), "w", encoding="utf-8") as f:
            f.write(tokenizer.spec)
    return {"format": FORMAT, "version": VERSION, "tokenizer": tokenizer.kind,
            "vocab_size": tokenizer.size,
            "vocabulary": tokenizer.chars if tokenizer.kind == "char" else None,
            "tokenizer_file": TOKENIZER_FILE if tokenizer.kind == "bpe" else None,
            "dtype": dtype, "byte_order": "little",
            "files": {part: {"file": FILES[part], "tokens": tokens[part]} for part in FILES},
            "validation_rule": VALIDATION_RULE, "settings": dataclasses.asdict(settings),
            "sources": rows}



class _bar:
    """A tqdm progress bar in MB (MB/s) on stderr, or nothing."""

    def __init__(self, show, total, what):
        self.show, self.total, self.what = show, total, what

    def __enter__(self):
        if not self.show:
            return _NoBar()
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc=f"prepare: {self.what}", unit="B", unit_scale=True,
                        unit_divisor=1024, mininterval=0.5, dynamic_ncols=True)
        return self.bar

    def __exit__(self, *exc):
        if self.show:
            self.bar.close()


class _NoBar:
    def update(self, n):
        pass

    def set_postfix_str(self, text, refresh=True):
        pass


def _write_json(path, data):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.write("\n")


def _remove_abandoned(out):
    """Partial directories of prepares that were killed (their process is gone)."""
    for path in glob.glob(os.path.join(os.path.dirname(out), f".{os.path.basename(out)}.partial-*")):
        pid = os.path.basename(path).split(".partial-", 1)[1].split("-", 1)[0]
        try:
            os.kill(int(pid), 0)
        except (ValueError, ProcessLookupError):
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass


def _existing(out):
    """The manifest of a corpus already at `out`, None for nothing there (or an empty folder);
    anything else there is a DataError."""
    if not os.path.exists(out) or (os.path.isdir(out) and not os.listdir(out)):
        return None
    if not os.path.isfile(os.path.join(out, MANIFEST)):
        raise DataError(f"{out} exists and is not a prepared corpus; choose another --out")
    return read_manifest(out)


def _same(manifest, sources, settings):
    """Prepared from these very files (same sizes and modification times) with these settings."""
    return (manifest["settings"] == dataclasses.asdict(settings)
            and [r["source"] for r in manifest["sources"]] == [s.name for s in sources]
            and all(r["fingerprint"] is not None and r["fingerprint"] == s.fingerprint()
                    for r, s in zip(manifest["sources"], sources)))


def _same_content(manifest, sources, scans, settings):
    return (manifest["settings"] == dataclasses.asdict(settings)
            and [(r["source"], r["sha256"]) for r in manifest["sources"]]
            == [(s.name, scan.sha256) for s, scan in zip(sources, scans)])


# -- reading -------------------------------------------------------------------------------

def is_prepared(path):
    return bool(path) and os.path.isfile(os.path.join(path, MANIFEST))


def read_manifest(directory):
    """The manifest of a prepared corpus, checked against its files: one DataError for a missing
    or corrupted manifest, a token file missing, of a size that is not a whole number of its
    tokens, or that disagrees with the manifest."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.isfile(path):
        raise DataError(f"{directory} is not a prepared corpus (no {MANIFEST}): make one with "
                        f"python -m kerasgen.prepare --data SOURCE --out {directory}")
    try:
        with open(path, encoding="utf-8") as f:
            manifest = json.load(f)
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(f"not a {FORMAT} v{VERSION} manifest")
        dtype = np.dtype(manifest["dtype"])
        if dtype not in (np.uint16, np.uint32) or manifest.get("byte_order") != "little":
            raise ValueError(f"dtype {manifest['dtype']} is not uint16 or uint32, little-endian")
        size = int(manifest["vocab_size"])
        if manifest["tokenizer"] == "char" and not isinstance(manifest["vocabulary"], str):
            raise ValueError("a char corpus without its vocabulary")
        if manifest["tokenizer"] not in ("char", "bpe") or size > np.iinfo(dtype).max + 1:
            raise ValueError(f"tokenizer {manifest['tokenizer']!r} of {size} tokens in {dtype}")
        parts = {part: (manifest["files"][part]["file"], int(manifest["files"][part]["tokens"]))
                 for part in FILES}
        if not isinstance(manifest["sources"], list) or not isinstance(manifest["settings"], dict):
            raise ValueError("no sources or settings")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path} is corrupted ({e}); prepare the corpus again") from None
    for part, (name, tokens) in parts.items():
        file = os.path.join(directory, os.path.basename(name))
        if not os.path.isfile(file):
            raise DataError(f"{file} is missing; prepare the corpus again")
        size = os.path.getsize(file)
        if size % dtype.itemsize:
            raise DataError(f"{file} is {size:,} bytes, not a whole number of {dtype} tokens "
                            f"({dtype.itemsize} bytes each): it is damaged; prepare the corpus again")
        if size // dtype.itemsize != tokens:
            raise DataError(f"{file} holds {size // dtype.itemsize:,} tokens but {MANIFEST} says "
                            f"{tokens:,}: it is damaged or from another prepare; prepare it again")
    manifest["directory"] = directory
    return manifest


class TokenFile:
    """A token file's windows, read from disk as they are asked for."""

    def __init__(self, path, dtype, count):
        self.path, self.dtype, self.size = path, np.dtype(dtype), count
        self._fd = None

    def __len__(self):
        return self.size

    def windows(self, starts, length):
        """(len(starts), length) int32 ids: the windows beginning at token `starts`."""
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY)
        item = self.dtype.itemsize
        data = b"".join(os.pread(self._fd, length * item, int(s) * item) for s in starts)
        return np.frombuffer(data, self.dtype).reshape(len(starts), length).astype(np.int32)

    def head(self, count):
        return self.windows([0], min(count, self.size))[0]

    def __del__(self):
        if self._fd is not None:
            os.close(self._fd)


def open_prepared(directory):
    """(manifest, tokenizer, {part: TokenFile}) of a prepared corpus."""
    manifest = read_manifest(directory)
    spec = None
    if manifest["tokenizer"] == "bpe":
        try:
            with open(os.path.join(directory, manifest["tokenizer_file"]), encoding="utf-8") as f:
                spec = f.read()
            tokenizer = BytePairTokenizer(spec)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise DataError(f"the tokenizer of {directory} is missing or corrupted ({e}); prepare "
                            f"the corpus again") from None
    else:
        tokenizer = CharVocab(manifest["vocabulary"])
    if tokenizer.size != manifest["vocab_size"]:
        raise DataError(f"{directory}/{MANIFEST} says {manifest['vocab_size']} tokens but its "
                        f"tokenizer has {tokenizer.size}; prepare the corpus again")
    files = {part: TokenFile(os.path.join(directory, manifest["files"][part]["file"]),
                             manifest["dtype"], manifest["files"][part]["tokens"]) for part in FILES}
    return manifest, tokenizer, files
