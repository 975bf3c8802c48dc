"""Generation tokens per second: the cached compiled loop (batch 1, 8) vs re-running the prefix."""
from kerasgen.bench import common


def add_arguments(p):
    p.add_argument("--models", nargs="+", default=["transformer", "gru"])
    p.add_argument("--seq_len", type=int, default=64, help="the Transformer's context")
    p.add_argument("--max_new_tokens", type=int, default=500)
    p.add_argument("--uncached_tokens", type=int, default=200)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top_p", type=float, default=1.0)


def run(args, overrides):
    """Cached compiled decode at batch 1 and 8 vs re-running the prefix, same model, one run."""
    import numpy as np

    from kerasgen.text.decoding import generate_ids, generate_uncached
    from kerasgen.text.sampling import Sampling

    n = args.max_new_tokens
    sampling = Sampling(max_new_tokens=n, temperature=args.temperature, top_p=args.top_p, seed=0)
    print(f"{'model':12s} {'decoding':44s} {'tokens/s':>9s}")
    for name in args.models:
        decided, _, _ = common.family_data(name, overrides, seq_len=args.seq_len, validation_steps=1)
        model, _ = common.training_model(name, overrides, decided, seq_len=args.seq_len)
        rates = {batch: common.tokens_per_second(
            lambda b=batch: list(generate_ids(model, ["\n"] * b, sampling)), n * batch)
            for batch in (1, 8)}
        prompt = np.array([model.text_tokenizer.encode("\n")])
        uncached = common.tokens_per_second(
            lambda: generate_uncached(model, prompt, args.uncached_tokens), args.uncached_tokens,
            repeats=1)
        print(f"{name:12s} {'uncached: re-run the prefix each token, batch 1':44s} {uncached:9.0f}")
        print(f"{name:12s} {'cached, compiled loop, batch 1':44s} {rates[1]:9.0f}"
              f"   {rates[1] / uncached:.1f}x uncached")
        print(f"{name:12s} {'cached, compiled loop, batch 8':44s} {rates[8]:9.0f}"
              f"   {rates[8] / rates[1]:.1f}x batch 1", flush=True)
