"""Text ↔ token ids: characters, or byte-level BPE trained on the user's corpus.

Both tokenizers reserve id 0 (an unknown character; byte-level BPE never
needs it) and work twice over: in Python (training, the CLIs) and as a graph
of core TensorFlow ops only (the served signatures: no TF Text, no lookup
table resources), which give the same ids. Decoding joins each token's bytes;
a multi-byte character cut at the end waits for its other bytes (streaming)
or is dropped (a finished text), and invalid bytes read as U+FFFD.
"""
import codecs
import json

import numpy as np

UNKNOWN_ID = 0  # id 0 is reserved for characters outside the vocabulary
TOKENIZERS = ("char", "bpe")
DEFAULT_BPE_VOCAB = 1024
MAX_BPE_VOCAB = 65536

# Pre-tokenization (where merges may not cross): words with their leading space, numbers,
# runs of other symbols, runs of whitespace. GPT-2's pattern needs a look-ahead, which
# TensorFlow's RE2 lacks; this one means the same to RE2 and to `tokenizers`' Oniguruma.
_SPACE = "\t\n\x0b\x0c\r "
PRE_TOKENS = rf" ?\p{{L}}+| ?\p{{N}}+| ?[^\p{{L}}\p{{N}}{_SPACE}]+|[{_SPACE}]+"
# Then pieces of at most WORD_CHARS characters: the graph merges a piece one pair at a time,
# so a bound on pieces bounds a request's work (Chinese has no spaces between words).
WORD_CHARS = 32
CHUNKS = rf"[\s\S]{{1,{WORD_CHARS}}}"  # any character, in both regex engines
_WORD_BREAK = b"\xff"  # never in UTF-8 text: marks where the graph splits words


def _byte_chars():
    """GPT-2's printable stand-in character of each byte (what `tokenizers`' ByteLevel uses)."""
    kept = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in kept:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def complete_utf8(data):
    """`data` without a multi-byte character cut short at its end."""
    for back in range(1, min(3, len(data)) + 1):
        byte = data[-back]
        if byte < 0x80:
            return data
        if byte >= 0xC0:  # a lead byte: how many bytes its character needs
            need = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return data[:-back] if need > back else data
    return data


class _Tokenizer:
    """What both tokenizers share: bytes per token, decoding, and the graph's decoder.

    Subclasses set `size` and `_bytes` (the UTF-8 bytes of each id, b'' for the unknown
    id) when made: the graph functions read only plain attributes, which autograph leaves be.
    """

    kind = ""

    def byte_lengths(self):
        return np.array([len(b) for b in self._bytes], np.int64)

    def byte_table(self):
        """(size, longest token) int32: each id's UTF-8 bytes, padded with -1 (the stop strings'
        matcher appends a token's bytes with one gather)."""
        table = np.full((self.size, max(1, max(map(len, self._bytes)))), -1, np.int32)
        for i, data in enumerate(self._bytes):
            table[i, :len(data)] = list(data)
        return table

    def _join(self, ids):
        """The bytes of `ids` (ids outside the vocabulary add none)."""
        return b"".join(self._bytes[i] for i in np.asarray(ids).ravel() if 0 <= i < len(self._bytes))

    def decode(self, ids):
        """The finished text of `ids`."""
        return complete_utf8(self._join(ids)).decode("utf-8", "replace")

    def stream(self):
        """A decoder for ids that arrive a few at a time: `decoder(ids)` returns the text
        they complete, holding back the bytes of a character not yet whole."""
        utf8 = codecs.getincrementaldecoder("utf-8")("replace")
        return lambda ids: utf8.decode(self._join(ids))

    def graph_decode(self, ids):
        """(B, n) ids → (B,) UTF-8 strings, as `decode` does, in core TF ops."""
        import tensorflow as tf

        table = tf.constant(self._bytes)
        data = tf.strings.reduce_join(tf.gather(table, ids), axis=-1)
        tail = tf.io.decode_raw(tf.strings.substr(tf.strings.join(["\0\0\0", data]), -3, 3), tf.uint8)
        tail = tf.cast(tail, tf.int32)  # (B, 3): the last three bytes, zeros before a short text
        cut = tf.zeros_like(data, tf.int32)
        settled = tf.zeros_like(data, tf.bool)
        for back in (1, 2, 3):
            byte = tail[:, 3 - back]
            need = tf.where(byte < 0xE0, 2, tf.where(byte < 0xF0, 3, 4))
            lead, ascii_ = byte >= 0xC0, byte < 0x80
            cut = tf.where(~settled & lead & (need > back), back, cut)
            settled = settled | lead | ascii_
        data = tf.strings.substr(data, tf.zeros_like(cut), tf.strings.length(data) - cut)
        return tf.strings.unicode_transcode(data, "UTF-8", "UTF-8", errors="replace")


class CharVocab(_Tokenizer):
    """Characters ↔ ids; id 0 stands for any character outside `chars`."""

    kind = "char"

    def __init__(self, chars):
        self.chars, self.size = chars, len(chars) + 1
        self._bytes = [b""] + [c.encode("utf-8", "surrogatepass") for c in chars]
        self._table = self._code_table()

    @classmethod
    def from_text(cls, text):
        return cls("".join(sorted(set(text))))

    def _code_table(self):
        """Code point → id (UNKNOWN_ID for others), its last entry standing for every larger code."""
        codes = [ord(c) for c in self.chars]
        table = np.full(max(codes, default=0) + 2, UNKNOWN_ID, np.int32)
        table[codes] = np.arange(1, len(codes) + 1)
        return table

    def encode(self, text, piece=1 << 20):
        """Vectorized, a piece at a time into the result: the ids and one piece in flight (not a
        Python int per character, nor a code array as long as the text)."""
        ids = np.empty(len(text), np.int32)
        for start in range(0, len(text), piece):
            codes = np.frombuffer(text[start:start + piece].encode("utf-32-le", "surrogatepass"),
                                  np.uint32)
            # mode="clip": a code beyond the table reads its last entry, the unknown id
            np.take(self._table, codes, mode="clip", out=ids[start:start + piece])
        return ids

    def unknown(self, text):
        """The characters of `text` outside the vocabulary, in order of first use."""
        return "".join(dict.fromkeys(c for c in text if c not in self.chars))

    def graph_encode(self, texts):
        """(B,) strings → ragged (B, None) int32 ids: a dense code-point table, so a character
        outside the vocabulary (or an invalid byte, read as U+FFFD) is the unknown id."""
        import tensorflow as tf

        table = tf.constant(self._table)
        points = tf.strings.unicode_decode(texts, "UTF-8")
        return tf.ragged.map_flat_values(
            lambda c: tf.gather(table, tf.minimum(c, tf.size(table) - 1)), points)

    def model_config(self):
        return {"vocab_size": self.size, "vocabulary": self.chars, "tokenizer": None}


class BytePairTokenizer(_Tokenizer):
    """Byte-level BPE: 256 byte tokens and merges learned from a corpus, so every text
    encodes with no unknown id. `spec` is the `tokenizers` library's JSON (what
    `Tokenizer.from_file` reads); model ids are its ids + 1."""

    kind = "bpe"

    def __init__(self, spec):
        self.spec, self._library = spec, None
        model = json.loads(spec)["model"]
        self._vocab = model["vocab"]  # {token in GPT-2's byte characters: id}
        self._merges = [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m)
                        for m in model["merges"]]
        self.size = len(self._vocab) + 1
        byte_of = {c: b for b, c in _byte_chars().items()}
        self._bytes = [b""] * self.size
        for token, i in self._vocab.items():
            self._bytes[i + 1] = bytes(byte_of[c] for c in token)
        self._merge_table = self._pair_table()

    @classmethod
    def train(cls, text, vocab_size=DEFAULT_BPE_VOCAB):
        """Learns merges from `text` until `vocab_size` tokens (the 256 bytes included)."""
        from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

        tokenizer = Tokenizer(models.BPE())
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(PRE_TOKENS), "isolated"),
            pre_tokenizers.Split(Regex(CHUNKS), "isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
        tokenizer.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
        tokenizer.train_from_iterator([text], trainer)
        return cls(tokenizer.to_str())

    def encode(self, text):
        if self._library is None:
            from tokenizers import Tokenizer

            self._library = Tokenizer.from_str(self.spec)
        return np.array(self._library.encode(text).ids, np.int32) + 1

    def unknown(self, text):
        return ""  # every text is bytes

    def _pair_table(self):
        """(sorted pair keys left·size + right, rank, merged id), in model ids."""
        vocab, merges = self._vocab, self._merges
        rows = sorted((vocab[a] + 1) * self.size + vocab[b] + 1 for a, b in merges)
        by_key = {(vocab[a] + 1) * self.size + vocab[b] + 1: (rank, vocab[a + b] + 1)
                  for rank, (a, b) in enumerate(merges)}
        return (np.array(rows, np.int64), np.array([by_key[k][0] for k in rows], np.int64),
                np.array([by_key[k][1] for k in rows], np.int32))

    def graph_encode(self, texts):
        """(B,) strings → ragged (B, None) int32 ids, the library's own: the same words, then
        in each word the merge of lowest rank (leftmost on a tie) until none applies."""
        import tensorflow as tf

        char_of = _byte_chars()
        vocab = self._vocab
        byte_ids = tf.constant([vocab[char_of[b]] + 1 for b in range(256)], tf.int32)
        texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")
        words = tf.strings.split(tf.strings.regex_replace(texts, PRE_TOKENS, _WORD_BREAK + b"\\0"),
                                 _WORD_BREAK)[:, 1:]  # (B, words)
        chunks = tf.strings.split(tf.strings.regex_replace(words, CHUNKS, _WORD_BREAK + b"\\0"),
                                  _WORD_BREAK)[:, :, 1:].merge_dims(1, 2)  # (B, pieces)
        chars = tf.strings.bytes_split(chunks.flat_values)  # (pieces, bytes)
        codes = tf.io.decode_raw(chars.flat_values, tf.uint8, fixed_length=1)[:, 0]
        ids = chars.with_flat_values(tf.gather(byte_ids, tf.cast(codes, tf.int32)))
        # Two columns of padding: even one-byte pieces have a (padding) pair to look at.
        merged = self._merge_words(tf.pad(ids.to_tensor(default_value=-1), [[0, 0], [0, 2]],
                                          constant_values=-1))
        ids = tf.RaggedTensor.from_tensor(merged, padding=-1)
        return chunks.with_flat_values(ids).merge_dims(1, 2)

    def _merge_words(self, ids):
        """BPE on every piece of (pieces, bytes) ids at once, -1 after each piece's end."""
        import tensorflow as tf

        keys, ranks, merged = (tf.constant(a) for a in self._merge_table)
        width = tf.shape(ids)[1]
        columns = tf.range(width)[None, :]
        never = tf.constant(np.iinfo(np.int64).max, tf.int64)

        def merge_once(ids, _):
            left, right = ids[:, :-1], ids[:, 1:]
            pair = tf.cast(left, tf.int64) * self.size + tf.cast(right, tf.int64)
            at = tf.minimum(tf.searchsorted(keys, tf.reshape(pair, [-1])), tf.size(keys) - 1)
            at = tf.reshape(at, tf.shape(pair))
            found = (tf.gather(keys, at) == pair) & (left >= 0) & (right >= 0)
            # rank first, then position: a single key with no ties for argmin to break
            score = tf.where(found, tf.gather(ranks, at) * tf.cast(width, tf.int64)
                             + tf.cast(columns[:, :-1], tf.int64), never)
            best = tf.argmin(score, axis=1, output_type=tf.int32)
            merges = tf.reduce_min(score, axis=1) < never
            new_id = tf.gather(merged, tf.gather(at, best, batch_dims=1))
            here = merges[:, None] & (columns == best[:, None])
            ids = tf.where(here, new_id[:, None], ids)
            keep = ~(merges[:, None] & (columns == best[:, None] + 1))
            ids = tf.ragged.boolean_mask(ids, keep).to_tensor(default_value=-1,
                                                              shape=tf.shape(ids))
            return ids, tf.reduce_any(merges)

        if not self._merge_table[0].size:
            return ids
        ids, _ = tf.while_loop(lambda _, more: more, merge_once, (ids, tf.constant(True)))
        return ids

    def model_config(self):
        return {"vocab_size": self.size, "vocabulary": None, "tokenizer": self.spec}


def tokenizer_from_config(vocabulary, tokenizer):
    """The tokenizer a model's config describes: BPE from its spec, else its characters."""
    return BytePairTokenizer(tokenizer) if tokenizer else CharVocab(vocabulary)
