"""Decoding methods against degeneration: each method's stability figures, the model's own perplexity of its text, and tokens/s, on fixed prompts of a run's held-out text."""
import dataclasses
import math
import time

from kerasgen.errors import UsageError

# name → the Sampling fields that make the method (the rest stay at their defaults).
METHODS = {
    "greedy": dict(temperature=0.0),
    "pure sampling (T=1)": dict(temperature=1.0),
    "temperature 0.8": dict(temperature=0.8),
    "top-k 10": dict(temperature=1.0, top_k=10),
    "top-p 0.9": dict(temperature=1.0, top_p=0.9),
    "min-p 0.1": dict(temperature=1.0, min_p=0.1),
    "typical 0.9": dict(temperature=1.0, typical_p=0.9),
    "T=0.8, repetition penalty 1.2": dict(temperature=0.8, repetition_penalty=1.2),
    "T=0.8, no repeated 8-gram": dict(temperature=0.8, no_repeat_ngram=8),
    "contrastive (α=0.6, k=4)": dict(penalty_alpha=0.6, top_k=4),
    "beam search (4 beams)": dict(num_beams=4),
}
# The searches' speed goals, each against what costs the same rows of model work:
# (name, its Sampling fields, batch) against (name, fields, batch), and the goal's ratio.
SPEED_GOALS = [
    (("contrastive k=4", dict(penalty_alpha=0.6, top_k=4), 1), ("greedy", dict(temperature=0.0), 1), 0.4),
    (("beam search, 4 beams", dict(num_beams=4), 1), ("sampling, batch 4", dict(temperature=0.8), 4), 0.5),
]


def add_arguments(p):
    p.add_argument("--run", required=True, metavar="DIR", help="a text run to generate from")
    p.add_argument("--prompts", type=int, default=8, help="held-out passages to continue (a batch)")
    p.add_argument("--prompt_chars", type=int, default=40)
    p.add_argument("--max_new_tokens", type=int, default=300)
    p.add_argument("--seeds", type=int, default=3)


def check(args):
    from kerasgen.rundir import RunDir

    family = RunDir.find(args.run).read_config().get("family")
    if family != "text":
        raise UsageError(f"--run {args.run} is not a text run ({family})")
    if min(args.prompts, args.prompt_chars, args.max_new_tokens, args.seeds) < 1:
        raise UsageError("--prompts, --prompt_chars, --max_new_tokens and --seeds must be ≥ 1")


def own_perplexity(model, prompt_ids, new_ids):
    """exp(mean −log p) the model gives the tokens it generated (at temperature 1, unfiltered),
    each scored with up to a full context before it: low means text the model finds likely
    (and a loop is very likely), high means text it finds surprising (incoherent)."""
    import numpy as np
    import tensorflow as tf

    context = model.context_length
    losses = []
    for prompt, new in zip(prompt_ids, new_ids):
        ids = np.concatenate([prompt, new]).astype(np.int32)
        first, end = len(prompt), len(ids)
        step = context // 2 if context else end
        while first < end:  # predict ids[first:last] from windows that hold what precedes them
            last = min(end, first + step)
            start = max(0, last - 1 - (context or last))
            logits = model(ids[None, start:last - 1], training=False)[0]
            log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32)).numpy()
            for position in range(first, last):
                losses.append(-log_probs[position - 1 - start, ids[position]])
            first = last
    return float(math.exp(np.mean(losses)))


def search_speed(model, prompt, max_new_tokens):
    """Each search's tokens/s of one text beside its goal's reference (tokens/s of each text of
    a batch), warm, plain graph, measured side by side; returns rows for the JSON."""
    import numpy as np

    from kerasgen.bench.common import tokens_per_second
    from kerasgen.text.decoding import COLD_XLA, generate_ids
    from kerasgen.text.sampling import Sampling

    def rate(fields, batch):
        sampling = Sampling(max_new_tokens=max_new_tokens, **fields)
        return tokens_per_second(lambda: np.concatenate(list(generate_ids(
            model, [prompt] * batch, sampling, jit_compile=COLD_XLA)), axis=1), max_new_tokens,
            repeats=5)

    rows = []
    for (name, fields, batch), (base, base_fields, base_batch), goal in SPEED_GOALS:
        ours, reference = rate(fields, batch), rate(base_fields, base_batch)
        rows.append({"method": name, "tokens_per_s": ours, "against": base,
                     "against_tokens_per_s": reference, "ratio": ours / reference, "goal": goal})
        print(f"{name}: {ours:.0f} tokens/s of its text, {base}: {reference:.0f} tokens/s of each "
              f"text: {ours / reference:.2f}× (goal ≥ {goal}×)", flush=True)
    return rows


def run(args, overrides):
    import numpy as np

    from kerasgen.family import spread
    from kerasgen.rundir import RunDir
    from kerasgen.text import open_corpus
    from kerasgen.text.decoding import COLD_XLA, generate_ids
    from kerasgen.text.metrics import text_stability
    from kerasgen.text.sampling import Sampling

    run_dir = RunDir.find(args.run)
    model = run_dir.load_model()
    tokenizer = model.text_tokenizer
    corpus = open_corpus(run_dir.train_config(), tokenizer)
    prompts = [p[:args.prompt_chars] for p in corpus.passages(args.prompt_chars, args.prompts)]
    prompt_ids = [tokenizer.encode(p) for p in prompts]
    print(f"{run_dir}: {len(prompts)} held-out prompts of {args.prompt_chars} characters, "
          f"{args.max_new_tokens} new tokens each, {args.seeds} seeds (mean ± std over seeds)\n")
    header = (f"{'method':32s} {'repeat 3-gr':>12s} {'distinct-2':>11s} {'distinct-3':>11s} "
              f"{'self-BLEU':>10s} {'char rep 8':>11s} {'own ppl':>8s} {'tokens/s':>9s}")
    print(header, flush=True)
    rows = []
    for name, fields in METHODS.items():
        per_seed, seconds = [], []
        for seed in range(args.seeds):
            sampling = Sampling(max_new_tokens=args.max_new_tokens, seed=seed, **fields)
            if seed == 0:  # traced and compiled once, untimed
                list(generate_ids(model, prompts, dataclasses.replace(sampling, max_new_tokens=2),
                                  jit_compile=COLD_XLA))
            started = time.perf_counter()
            new = np.concatenate(list(generate_ids(model, prompts, sampling, jit_compile=COLD_XLA)),
                                 axis=1)
            seconds.append(time.perf_counter() - started)
            scores = text_stability([tokenizer.decode(row) for row in new])
            scores["own_perplexity"] = own_perplexity(model, prompt_ids, new)
            per_seed.append(scores)
        row = {"method": name, "sampling": fields, **spread(per_seed),
               "tokens_per_s": len(prompts) * args.max_new_tokens / float(np.median(seconds))}
        rows.append(row)

        def cell(key, width):
            return f"{row[key]['mean']:.3f}±{row[key]['std']:.2f}".rjust(width)

        print(f"{name:32s} {cell('repetition_rate', 12)} {cell('distinct_2', 11)} "
              f"{cell('distinct_3', 11)} {cell('self_bleu', 10)} {cell('char_repetition', 11)} "
              f"{row['own_perplexity']['mean']:8.2f} {row['tokens_per_s']:9.0f}", flush=True)
    print("\nrepeat 3-gr: share of a sample's word trigrams seen before in it (loops: high); "
          "distinct-n: distinct word n-grams over all (diversity: high); self-BLEU: samples alike "
          "(high); char rep 8: repeated character 8-grams; own ppl: the model's perplexity of its "
          "own text (very low: a loop; high: incoherent); tokens/s: a batch of all prompts, warm, "
          "plain graph, as the generate command runs; the searches are deterministic (no spread "
          "over seeds)\n")
    speed = search_speed(model, prompts[0], args.max_new_tokens)
    return {"methods": rows, "search_speed": speed}
