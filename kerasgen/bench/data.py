"""Data at scale: prepare a generated corpus (MB/s against the tokenizer's own), then train from it as from a small one (peak memory, start-up, steps/s)."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

from kerasgen.bench import common
from kerasgen.errors import UsageError

# Words of the generated corpus: English from CPython's help text, Chinese of 1-3 characters.
CHINESE = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说"
           "产种面而方后多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点"
           "从业本去把性好应开它合还因由其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又")


def add_arguments(p):
    p.add_argument("--size_mb", type=int, default=1024, help="the generated corpus (default: 1024)")
    p.add_argument("--small_mb", type=int, default=10, help="the small corpus (default: 10)")
    p.add_argument("--steps", type=int, default=50, help="training steps per run (default: 50)")
    p.add_argument("--models", nargs="+", default=["gru", "transformer"])
    p.add_argument("--tokenizers", nargs="+", default=["char", "bpe"])
    p.add_argument("--no_workers", action="store_true", help="skip the two-worker runs")
    p.add_argument("--out", metavar="DIR", help="where the corpora go (default: a temporary folder)")


def check(args):
    if args.size_mb < 1 or args.small_mb < 1 or args.steps < 1:
        raise UsageError("expected --size_mb, --small_mb and --steps ≥ 1")
    from kerasgen import catalogue

    for name in args.models:
        if catalogue.model(name).family.name != "text":
            raise UsageError(f"--models {name}: not a text model")


def generate_corpus(path, megabytes, seed=0):
    """Writes about `megabytes` MB of mixed English and Chinese text: Zipf-distributed words of
    the embedded help text and of common Chinese characters, in lines and paragraphs."""
    import re

    import numpy as np

    from kerasgen.text.data import _embedded_text

    rng = np.random.default_rng(seed)
    english = sorted(set(re.findall(r"[A-Za-z]+", _embedded_text())))
    chinese = ["".join(rng.choice(list(CHINESE), size)) for size in rng.integers(1, 4, 3000)]
    words = np.array([" " + w for w in english] + chinese + ["，", "。", ".", ",", "\n", "\n\n"])
    weights = 1.0 / np.arange(1, len(words) + 1)
    weights[-6:] = [0.3, 0.3, 0.3, 0.3, 0.2, 0.05]
    order = rng.permutation(len(words) - 6)
    weights[:-6] = weights[:-6][order]
    weights /= weights.sum()
    with open(path, "w", encoding="utf-8") as f:
        while f.tell() < megabytes << 20:
            f.write("".join(words[rng.choice(len(words), 1 << 20, p=weights)]))


def _raw_mb_per_s(tokenizer, text):
    """MB/s of the tokenizer itself over `text` in memory: `tokenizers`' encode_batch_fast over
    its lines (BPE), or the vectorized char encoding."""
    started = time.perf_counter()
    if tokenizer.kind == "bpe":
        from tokenizers import Tokenizer

        Tokenizer.from_str(tokenizer.spec).encode_batch_fast(text.splitlines(True))
    else:
        tokenizer.encode(text)
    return len(text.encode()) / 2 ** 20 / (time.perf_counter() - started)


def _measured(command, env=None):
    """(wall seconds, peak RSS in MB) of a command, each in a fresh launcher (RUSAGE_CHILDREN is
    the largest child's, so one child a launcher)."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            "r = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE); "
            "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
            "r.returncode); sys.stderr.write(r.stderr.decode()[-2000:])")
    return subprocess.Popen([sys.executable, "-c", code, *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})})


def _result(process):
    out, err = process.communicate()
    wall, rss, code = out.split()
    if int(code):
        raise UsageError(f"a training command failed: {(err.strip().splitlines() or ['?'])[-1]}")
    return float(wall), int(rss) / 1024


def run(args, overrides):
    from kerasgen import distribute
    from kerasgen.rundir import RunDir
    from kerasgen.text.prepared import open_prepared

    out = args.out or tempfile.mkdtemp(prefix="kerasgen-bench-data-")
    os.makedirs(out, exist_ok=True)
    big, small = os.path.join(out, "big.txt"), os.path.join(out, "small.txt")
    for path, size in ((big, args.size_mb), (small, args.small_mb)):
        if not os.path.exists(path) or os.path.getsize(path) < size << 20:
            started = time.perf_counter()
            generate_corpus(path, size, seed=size)
            print(f"generated {path}: {os.path.getsize(path) / 2 ** 20:,.0f} MB in "
                  f"{time.perf_counter() - started:.0f} s", flush=True)
    rows = {"prepare": [], "train": [], "workers": []}
    print(f"\nprepare, {os.path.getsize(big) / 2 ** 20:,.0f} MB on {os.cpu_count()} cores")
    print(f"{'tokenizer':10s} {'read':>7s} {'learn':>7s} {'encode':>7s} {'MB/s':>7s} "
          f"{'encode MB/s':>12s} {'raw MB/s':>9s} {'ratio':>6s} {'tokens':>14s} {'peak RSS':>9s}",
          flush=True)
    prepared = {}
    for kind in args.tokenizers:
        for path, tag in ((big, "big"), (small, "small")):
            target = prepared[kind, tag] = os.path.join(out, f"{tag}-{kind}")
            shutil.rmtree(target, ignore_errors=True)  # measured from nothing
            wall, rss = _result(_measured([sys.executable, "-m", "kerasgen.prepare", "--data", path,
                                           "--out", target, "--tokenizer", kind, "--quiet"]))
        manifest = open_prepared(prepared[kind, "big"])[0]
        tokenizer = open_prepared(prepared[kind, "big"])[1]
        with open(big, encoding="utf-8") as f:
            head = f.read(128 << 20)
        raw = _raw_mb_per_s(tokenizer, head)  # in the same minute as the prepare
        t, mb = manifest["seconds"], os.path.getsize(big) / 2 ** 20
        tokens = sum(p["tokens"] for p in manifest["files"].values())
        row = {"tokenizer": kind, **t, "mb_per_s": mb / t["total"], "encode_mb_per_s": mb / t["encode"],
               "raw_mb_per_s": raw, "ratio": mb / t["encode"] / raw, "tokens": tokens,
               "peak_rss_mb": rss}
        rows["prepare"].append(row)
        print(f"{kind:10s} {t['read']:6.0f}s {t['tokenizer']:6.0f}s {t['encode']:6.0f}s "
              f"{row['mb_per_s']:7.1f} {row['encode_mb_per_s']:12.1f} {raw:9.1f} {row['ratio']:6.2f} "
              f"{tokens:14,d} {rss:7.0f}MB", flush=True)
    print("read: hash, count and the BPE sample; learn: the BPE trainer (32 MB); ratio: encode MB/s "
          "over the tokenizer's own MB/s on the first 128 MB in memory")

    print(f"\ntrain, {args.steps} steps, char tokens: peak RSS, the command to the first steps, "
          f"steps/s after them")
    print(f"{'model':12s} {'data':22s} {'peak RSS':>9s} {'first steps':>12s} {'steps/s':>8s} "
          f"{'ms/step':>8s} {'wall':>7s}", flush=True)
    big_mb, small_mb = (f"{os.path.getsize(p) / 2 ** 20:,.0f} MB" for p in (big, small))
    sources = [(f"{big_mb} prepared", prepared["char", "big"]),
               (f"{small_mb} prepared", prepared["char", "small"]), (f"{small_mb} in memory", small)]
    for name in args.models:
        for label, data in sources:
            run_dir = os.path.join(out, "runs", f"{name}-{label.replace(' ', '-')}")
            command = [sys.executable, "-m", "kerasgen.train", f"--model={name}", "--data", data,
                       "--epochs=1", f"--steps_per_epoch={args.steps}", "--out", run_dir,
                       *common.model_flags(overrides)]
            wall, rss = _result(_measured(command))
            run = RunDir(run_dir)
            t, config = run.read_summary()["timings"], run.train_config()
            first = distribute.steps_per_call(config.steps_per_execution, args.steps)  # in start-up
            ms = common.step_ms(name, {**overrides, "validation_steps": "1"}, data,
                                config.batch_size, steps=100)
            row = {"model": name, "data": label, "peak_rss_mb": rss, "startup_s": t["startup_s"],
                   "steps_per_s": (args.steps - first) / t["train_s"], "wall_s": wall,
                   "median_step_ms": ms}
            rows["train"].append(row)
            print(f"{name:12s} {label:22s} {rss:7.0f}MB {t['startup_s']:10.1f} s "
                  f"{row['steps_per_s']:8.1f} {ms:8.1f} {wall:5.1f} s", flush=True)
            shutil.rmtree(run_dir, ignore_errors=True)
    print("first steps: from the command to the end of the first compiled execution; steps/s: "
          "the run's after it; ms/step: the median of 100 steps in this process, side by side")
    if not args.no_workers:
        print(f"\ntwo multi_worker workers on localhost, gru, {args.steps} steps: each one's peak RSS")
        for label, data in sources[:2]:
            workers = []
            for i, config in enumerate(distribute.local_cluster(2)):
                command = [sys.executable, "-m", "kerasgen.train", f"--model={args.models[0]}",
                           "--data", data, "--epochs=1", f"--steps_per_epoch={args.steps}",
                           "--strategy=multi_worker", "--out", os.path.join(out, "runs", "workers"),
                           *common.model_flags(overrides)]
                workers.append(_measured(command, {"TF_CONFIG": config}))
            results = [_result(p) for p in workers]
            rows["workers"].append({"data": label, "peak_rss_mb": [r[1] for r in results]})
            print(f"{label:22s} " + "  ".join(f"worker {i}: {r[1]:5.0f} MB" for i, r in enumerate(results)),
                  flush=True)
            shutil.rmtree(os.path.join(out, "runs", "workers"), ignore_errors=True)
    with open(os.path.join(out, "data.json"), "w") as f:
        json.dump(rows, f, indent=1)
    print(f"\ncorpora and data.json: {out}")
    return rows
