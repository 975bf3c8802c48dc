"""Stability metrics of generated text: repetition, diversity and sameness across samples.

On words (whitespace-separated), the unit these measures are published in
(distinct-n: Li et al. 2016; self-BLEU: Zhu et al. 2018), and on characters:
samples of a few hundred characters hold too few words for word trigrams to
repeat, while character n-grams show loops and lost diversity as they start.
"""
import collections
import math

import numpy as np


def ngrams(units, n):
    return [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]


def _units(text, unit):
    return text.split() if unit == "word" else text


def repetition_rate(text, n=3, unit="word"):
    """Share of a sample's n-grams (of words or chars) that already occurred earlier in it
    (0: none repeat; near 1: a loop)."""
    grams = ngrams(_units(text, unit), n)
    return 1.0 - len(set(grams)) / len(grams) if grams else 0.0


def distinct_n(texts, n, unit="word"):
    """Distinct n-grams (of words or chars) over all n-grams of `texts` (1: nothing repeats)."""
    grams = [g for text in texts for g in ngrams(_units(text, unit), n)]
    return len(set(grams)) / len(grams) if grams else 0.0


def bleu(hypothesis, references, max_n=4):
    """Sentence BLEU of word lists with uniform weights, brevity penalty and
    add-epsilon smoothing of empty n-gram orders (Chen & Cherry's method 1)."""
    if not hypothesis:
        return 0.0
    log_precision = 0.0
    for n in range(1, max_n + 1):
        counts = collections.Counter(ngrams(hypothesis, n))
        most = collections.Counter()
        for ref in references:
            most |= collections.Counter(ngrams(ref, n))
        total = max(1, sum(counts.values()))
        matched = sum(min(c, most[g]) for g, c in counts.items())
        log_precision += math.log((matched or 0.1) / total) / max_n
    closest = min((len(r) for r in references), key=lambda r: (abs(r - len(hypothesis)), r))
    brevity = min(1.0, math.exp(1 - closest / len(hypothesis)))
    return brevity * math.exp(log_precision)


def self_bleu(texts, max_n=4):
    """Mean BLEU of each sample against the others (1: all samples alike; low: diverse)."""
    words = [t.split() for t in texts]
    if len(words) < 2:
        return 0.0
    return float(np.mean([bleu(w, words[:i] + words[i + 1:], max_n) for i, w in enumerate(words)]))


def text_stability(texts):
    """The stability figures of one set of samples."""
    return {"repetition_rate": float(np.mean([repetition_rate(t) for t in texts])),
            "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2),
            "distinct_3": distinct_n(texts, 3), "self_bleu": self_bleu(texts),
            "char_repetition": float(np.mean([repetition_rate(t, 8, "char") for t in texts])),
            "char_distinct_4": distinct_n(texts, 4, "char")}
