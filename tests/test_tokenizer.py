"""Byte-level BPE: the same ids in Python and in the served graph, decoding that waits for whole
characters, bits per byte, and a Chinese corpus through every command."""
import json

import numpy as np
import pytest
import tensorflow as tf

from conftest import (TEXT_MODELS, TINY_TRAIN, error_lines, export, keras_hub_search, run_python,
                      tiny_model)
from standin_server import StandIn
from kerasgen import client, evaluate, generate as generate_cli, registry, train
from kerasgen.config import model_defaults
from kerasgen.export import tflite
from kerasgen.rundir import RunDir
from kerasgen.text.callbacks import STABILITY_SAMPLES
from kerasgen.text.data import load_text
from kerasgen.text.decoding import generate, generate_ids
from kerasgen.text.model import BitsPerByte
from kerasgen.text.sampling import Sampling
from kerasgen.text.serving import tflite_generate
from kerasgen.text.tokenizer import UNKNOWN_ID, WORD_CHARS, BytePairTokenizer, CharVocab

# A few KB of Chinese that the tests write: no download, no file shipped.
CHINESE = ["床前明月光，疑是地上霜。举头望明月，低头思故乡。", "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
           "白日依山尽，黄河入海流。欲穷千里目，更上一层楼。", "北京是中国的首都，也是一座有三千多年历史的城市。",
           "今天天气很好，我们一起去公园散步吧。", "学而时习之，不亦说乎？有朋自远方来，不亦乐乎？",
           "自然语言处理让计算机能够理解人类的语言。", "这个模型在自己的语料上训练分词器，然后生成文本。"]
CHINESE_TEXT = "\n".join(CHINESE[i % len(CHINESE)] + CHINESE[(3 * i + 1) % len(CHINESE)]
                         for i in range(60))

VARIED = ["", "plain ASCII text.", "Crème brûlée, naïve façade — à la carte",
          CHINESE[3] + CHINESE[0], "emoji 🎉🚀, a flag 🇫🇷 and a family 👨‍👩‍👧",
          " \t\n\n   whitespace   runs  \n", "a" * 40, "mixed 中文 and English 123,456.78",
          "ｆｕｌｌｗｉｄｔｈ　ｓｐａｃｅ", "\x00 control \x7f chars", "def f(x):\n    return x ** 2\n",
          "明月" * 50 + " " * 70 + "9" * 70 + "!?" * 40]  # pieces longer than WORD_CHARS


@pytest.fixture(scope="module")
def bpe():
    """Merges for both English and Chinese, so both are tested merged, not only as bytes."""
    return BytePairTokenizer.train(load_text(None)[:100_000] + CHINESE_TEXT, 600)


def test_python_and_the_graph_give_the_same_ids_on_varied_text(bpe):
    encode = tf.function(bpe.graph_encode)
    for text, ids in zip(VARIED, encode(tf.constant(VARIED)).to_list()):
        assert ids == bpe.encode(text).tolist(), text
    for text in [*VARIED, "\n", "a"]:  # alone too: a batch of one-byte pieces, or of none
        assert encode(tf.constant([text])).to_list()[0] == bpe.encode(text).tolist(), text
    for text in (VARIED[3], VARIED[10]):  # merged: fewer tokens than bytes
        assert len(bpe.encode(text)) < 0.75 * len(text.encode()), text


def test_a_request_of_one_long_word_is_merged_in_bounded_pieces(bpe):
    """The graph merges a piece one pair at a time: a 4096-character sentence with no space
    (Chinese) as one piece took 32 s for 8 prompts; in pieces of WORD_CHARS it takes ~0.3 s."""
    from tokenizers import Tokenizer

    hostile = "北京是中国的首都" * 512
    pieces = Tokenizer.from_str(bpe.spec).pre_tokenizer.pre_tokenize_str(hostile)
    assert max(len(piece) for piece, _ in pieces) <= 4 * WORD_CHARS  # bytes of ≤ WORD_CHARS chars
    graph = tf.function(bpe.graph_encode)(tf.constant([hostile])).to_list()[0]
    assert graph == bpe.encode(hostile).tolist()


def test_every_text_encodes_with_no_unknown_id_and_decodes_back(bpe):
    for text in VARIED:
        ids = bpe.encode(text)
        assert UNKNOWN_ID not in ids and bpe.decode(ids) == text
    assert bpe.unknown("字🎉") == "" and CharVocab("ab").unknown("字b") == "字"


def test_streaming_holds_back_a_character_until_its_bytes_are_whole(bpe):
    text = "你好，世界🎉!"
    ids = bpe.encode(text)
    stream = bpe.stream()
    pieces = [stream([i]) for i in ids]
    assert "".join(pieces) == text and "\ufffd" not in "".join(pieces)
    assert "" in pieces  # the emoji is four byte tokens: nothing shows until the last one


def test_the_graph_decodes_as_python_does_dropping_a_cut_character(bpe):
    ids = bpe.encode("abc 你好🎉")
    decode = tf.function(bpe.graph_decode)
    prefixes = [ids[:cut] for cut in range(len(ids) + 1)]
    rng = np.random.default_rng(0)
    noise = [rng.integers(1, bpe.size, 8) for _ in range(50)]  # invalid bytes read as U+FFFD
    for row in prefixes + noise:
        assert decode(tf.constant([row], tf.int32)).numpy()[0].decode() == bpe.decode(row)
    assert bpe.decode(ids[:-1]) == "abc 你好"


def test_bits_per_byte_divides_the_targets_bits_by_their_bytes():
    metric = BitsPerByte([0, 1, 3])
    probs = np.array([[[0.5, 0.25, 0.25], [0.25, 0.25, 0.5]]], np.float32)
    metric.update_state(np.array([[1, 2]]), np.log(probs))
    assert float(metric.result()) == pytest.approx((2 + 1) / (1 + 3))  # 2 bits + 1 bit, 4 bytes


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_a_bpe_model_serves_and_runs_on_litert_like_in_process(name, bpe, tmp_path):
    model = tiny_model(name, vocabulary=None, tokenizer=bpe.spec, vocab_size=bpe.size)
    prompts = ["北京是", "the "]
    expected = generate(model, prompts, Sampling(12, temperature=0))
    served = tf.saved_model.load(export(model, tmp_path)).signatures["generate"]
    out = served(prompt=tf.constant(prompts), max_new_tokens=tf.constant([12]),
                 temperature=tf.constant([0.0]), top_k=tf.constant([0]), top_p=tf.constant([1.0]),
                 min_p=tf.constant([0.0]), typical_p=tf.constant([1.0]),
                 repetition_penalty=tf.constant([1.0]), seed=tf.constant([0]),
                 stop=tf.constant([[]], tf.string), penalty_alpha=tf.constant([0.0]),
                 num_beams=tf.constant([1]), length_penalty=tf.constant([1.0]))
    assert [t.decode() for t in out["text"].numpy()] == expected
    runner = tflite.interpreter(tflite.convert(model))
    expected = generate(model, ["北"], Sampling(3, temperature=0))[0]  # within the tiny context
    assert tflite_generate(runner, model, "北", 3) == expected


# -- a Chinese corpus through every command ------------------------------------------------------
BPE_FLAGS = ["--model=transformer", *TINY_TRAIN, "--num_layers=1", "--num_heads=2", "--embed_dim=8",
             "--tokenizer=bpe", "--vocab_size=300"]


@pytest.fixture(scope="module")
def chinese_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("chinese")
    corpus = base / "chinese.txt"
    corpus.write_text(CHINESE_TEXT, encoding="utf-8")
    out = str(base / "run")
    assert train.main([*BPE_FLAGS, "--data", str(corpus), "--out", out]) == 0
    return RunDir(out), str(corpus)


@pytest.mark.slow
def test_a_chinese_corpus_trains_generates_evaluates_and_keeps_its_tokenizer(chinese_run, capsys):
    run, _ = chinese_run
    model = run.load_model()
    spec = run.read_config()["model"]["tokenizer"]
    with open(run.join("tokenizer.json"), encoding="utf-8") as f:
        assert f.read() == spec == model.tokenizer  # in the run directory and the model's config
    assert 256 < model.vocab_size <= 301 and "明月" in model.text_tokenizer.decode(
        model.text_tokenizer.encode("明月"))
    assert run.read_summary()["bits_per_byte"] > 0
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logged = EventAccumulator(run.log_dir("samples")).Reload().Tensors("sample")
    shown = tf.make_ndarray(logged[-1].tensor_proto).item().decode()  # the epoch's sample, decoded
    sample = generate(run.load_model("final"), [""] * STABILITY_SAMPLES,
                      Sampling(8, seed=run.train_config().seed), jit_compile=False)[0]
    assert shown == f"```\n{sample}\n```"
    tags = EventAccumulator(run.log_dir("validation")).Reload().Tags()
    assert {"epoch_bits_per_token", "epoch_bits_per_byte"} <= set(tags["tensors"]) | set(tags["scalars"])
    capsys.readouterr()
    assert generate_cli.main(["--run", run.path, "--prompt", "床前", "--max_new_tokens", "20",
                              "--temperature", "0"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("床前") and "\ufffd" not in printed[:2]
    assert printed.strip() == "床前" + generate(model, ["床前"], Sampling(20, temperature=0))[0]
    assert evaluate.main(["--run", run.path, "--num_samples", "2", "--seeds", "1"]) == 0
    scores = json.loads(capsys.readouterr().out)
    tokens_per_byte = scores["bits_per_byte"] / scores["bits_per_token"]
    assert 1 / 3 < tokens_per_byte < 1  # Chinese is 3 bytes a character; merges make it fewer tokens


@pytest.mark.slow
def test_a_chinese_bpe_export_serves_chinese_prompts_without_kerasgen(chinese_run, tmp_path, capsys):
    run, _ = chinese_run
    model = run.load_model()
    path = export(model, tmp_path)
    code = ("import sys, json; sys.modules['keras'] = None\n"
            "import tensorflow as tf\n"
            "f = tf.saved_model.load(sys.argv[1]).signatures['generate']\n"
            "out = f(prompt=tf.constant(['床前明月', '']), max_new_tokens=tf.constant([16]), "
            "temperature=tf.constant([0.0]), top_k=tf.constant([0]), top_p=tf.constant([1.0]), "
            "min_p=tf.constant([0.0]), typical_p=tf.constant([1.0]), "
            "repetition_penalty=tf.constant([1.0]), seed=tf.constant([0]), "
            "stop=tf.constant([[]], tf.string), penalty_alpha=tf.constant([0.0]), "
            "num_beams=tf.constant([1]), length_penalty=tf.constant([1.0]))\n"
            "assert 'kerasgen' not in sys.modules\n"
            "print(json.dumps([t.decode() for t in out['text'].numpy()], ensure_ascii=False))\n")
    result = run_python(["-c", code, path])
    assert result.returncode == 0, result.stderr[-2000:]
    served = json.loads(result.stdout.strip().splitlines()[-1])
    assert served == generate(model, ["床前明月", ""], Sampling(16, temperature=0))
    with StandIn("chinese", path) as server:  # and through the client, as from TF Serving
        capsys.readouterr()
        assert client.main(["--model", "chinese", "--host", "127.0.0.1", "--rest_port",
                            str(server.rest_port), "generate", "--prompt", "床前明月",
                            "--max_new_tokens", "16", "--temperature", "0"]) == 0
        assert capsys.readouterr().out.strip() == "床前明月" + served[0]


@pytest.mark.slow
def test_fine_tuning_reuses_the_tokenizer_and_never_fails_on_new_characters(chinese_run, tmp_path,
                                                                           capsys):
    run, _ = chinese_run
    new = tmp_path / "new.txt"
    new.write_text("新的数据 with English, emoji 🎉 and ünïcödé.\n" * 40, encoding="utf-8")
    out = str(tmp_path / "tuned")
    assert train.main([*TINY_TRAIN, "--init_from", run.path, "--data", str(new), "--out", out]) == 0
    assert RunDir(out).read_config()["model"]["tokenizer"] == run.read_config()["model"]["tokenizer"]
    capsys.readouterr()
    assert train.main([*TINY_TRAIN, "--init_from", run.path, "--tokenizer=char", "--data", str(new),
                       "--out", str(tmp_path / "other")]) == 2
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and "uses the bpe tokenizer" in err[0]
    assert not (tmp_path / "other").exists()


def test_a_stop_string_across_two_bpe_tokens_cuts_the_cli_and_the_served_text_alike(bpe, tmp_path):
    model = tiny_model("gru", vocabulary=None, tokenizer=bpe.spec, vocab_size=bpe.size)
    sampling = Sampling(24, temperature=1.0, seed=5)
    ids = np.concatenate(list(generate_ids(model, ["the "], sampling)), axis=1)[0]
    pieces = [bpe.decode([i]) for i in ids]
    at = next(i for i in range(2, len(pieces) - 1) if pieces[i] and pieces[i + 1]
              and pieces[i].isascii() and pieces[i + 1].isascii())
    stop = pieces[at][-1] + pieces[at + 1][0]  # the end of one token and the start of the next
    whole = bpe.decode(ids)
    stopped = Sampling(24, temperature=1.0, seed=5, stop=(stop,))
    expected = whole[:whole.find(stop)]
    assert generate(model, ["the "], stopped) == [expected]
    served = tf.saved_model.load(export(model, tmp_path)).signatures["generate"]
    out = served(prompt=tf.constant(["the "]), max_new_tokens=tf.constant([24]),
                 temperature=tf.constant([1.0]), top_k=tf.constant([0]), top_p=tf.constant([1.0]),
                 min_p=tf.constant([0.0]), typical_p=tf.constant([1.0]),
                 repetition_penalty=tf.constant([1.0]), seed=tf.constant([5]),
                 stop=tf.constant([[stop]]), penalty_alpha=tf.constant([0.0]),
                 num_beams=tf.constant([1]), length_penalty=tf.constant([1.0]))
    assert out["text"].numpy()[0].decode() == expected


@pytest.mark.parametrize("name", TEXT_MODELS)
def test_searches_over_bpe_tokens_choose_what_keras_hub_chooses_and_stop_between_tokens(name, bpe):
    keras_hub = pytest.importorskip("keras_hub")
    longer = {"seq_len": 32} if "seq_len" in model_defaults(registry.get(name)) else {}  # no refill
    model = tiny_model(name, seed=3, vocabulary=None, tokenizer=bpe.spec, vocab_size=bpe.size, **longer)
    new = 16
    contrastive = Sampling(new, penalty_alpha=0.6, top_k=4)
    for sampler, sampling in [(keras_hub.samplers.ContrastiveSampler(k=4, alpha=0.6), contrastive),
                              (keras_hub.samplers.BeamSampler(num_beams=3), Sampling(new, num_beams=3))]:
        ours = np.concatenate(list(generate_ids(model, ["北京是"], sampling, jit_compile=False)), 1)
        np.testing.assert_array_equal(ours, keras_hub_search(model, sampler, ["北京是"], new))
    ids = np.concatenate(list(generate_ids(model, ["北京是"], contrastive, jit_compile=False)), 1)[0]
    pieces = [bpe.decode([i]) for i in ids]
    at = next(i for i in range(len(pieces) - 1) if pieces[i].isprintable() and pieces[i + 1].isprintable()
              and pieces[i] and pieces[i + 1] and "\ufffd" not in pieces[i] + pieces[i + 1])
    stop = pieces[at][-1] + pieces[at + 1][0]  # the end of one token and the start of the next
    whole = bpe.decode(ids)
    stopped = generate(model, ["北京是"], Sampling(new, penalty_alpha=0.6, top_k=4, stop=(stop,)),
                       jit_compile=False)
    assert stopped == [whole[:whole.find(stop)]]
