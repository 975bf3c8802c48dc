"""Hostile requests against the served graph and hostile servers against the client: each is
answered at once, in one line, with bounded time and memory."""
import re
import socket
import threading
import time

import numpy as np
import pytest
import tensorflow as tf

from conftest import error_lines, export, run_python, tiny_model

pytestmark = pytest.mark.slow


# -- hostile requests against the served graph ------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """An exported tiny GRU: its signatures as TF Serving would run them."""
    model = tiny_model("gru")
    return tf.saved_model.load(export(model, tmp_path_factory.mktemp("hostile"), max_new_tokens_limit=64,
                                      max_prompt_chars=32, max_batch=4))


GOOD = dict(prompt=["ab"], max_new_tokens=[8], temperature=[0.8], top_k=[0], top_p=[1.0],
            min_p=[0.0], typical_p=[1.0], repetition_penalty=[1.0], seed=[1], stop=[["\n\n"]],
            penalty_alpha=[0.0], num_beams=[1], length_penalty=[1.0])


@pytest.mark.parametrize("changes, message", [
    (dict(max_new_tokens=[10 ** 8]), "max_new_tokens is limited to 64"),
    (dict(max_new_tokens=[0]), "max_new_tokens must be ≥ 1"),
    (dict(max_new_tokens=[-5]), "max_new_tokens must be ≥ 1"),
    (dict(prompt=["a" * 33]), "prompts are limited to 32 characters"),
    (dict(prompt=["ab"] * 5), "at most 4 prompts"),
    (dict(prompt=[]), "at least one row"),
    (dict(temperature=[float("nan")]), "temperature must be"),
    (dict(temperature=[-1.0]), "temperature must be ≥ 0"),
    (dict(temperature=[float("inf")]), "temperature must be finite"),
    (dict(repetition_penalty=[-1.0]), "repetition_penalty must be > 0"),
    (dict(repetition_penalty=[float("nan")]), "repetition_penalty"),
    (dict(top_p=[0.0]), "top_p must be in (0, 1]"),
    (dict(top_p=[1.5]), "top_p must be in (0, 1]"),
    (dict(top_k=[-2]), "top_k must be ≥ 0"),
    (dict(min_p=[2.0]), "min_p must be in [0, 1]"),
    (dict(min_p=[-0.1]), "min_p must be in [0, 1]"),
    (dict(typical_p=[0.0]), "typical_p must be in (0, 1]"),
    (dict(typical_p=[1.5]), "typical_p must be in (0, 1]"),
    (dict(stop=[[""]]), "stop strings must not be empty"),
    (dict(stop=[["."] * 9]), "stop takes at most 8 strings"),
    (dict(stop=[["é" * 17]]), "stop strings are limited to 32 UTF-8 bytes"),
    (dict(seed=[]), "seed must hold at least one row"),
    (dict(num_beams=[0]), "num_beams must be ≥ 1"),
    (dict(prompt=["ab"] * 2, num_beams=[3]), "prompts × num_beams (or × top_k, in contrastive "
                                             "search) are limited to 4"),
    (dict(penalty_alpha=[0.6], top_k=[5]), "are limited to 4"),
    (dict(penalty_alpha=[0.6], top_k=[1]), "top_k must be ≥ 2 for contrastive search"),
    (dict(penalty_alpha=[1.5], top_k=[2]), "penalty_alpha must be in [0, 1]"),
    (dict(penalty_alpha=[0.6], top_k=[2], num_beams=[2]), "two searches: choose one"),
    (dict(num_beams=[2], top_p=[0.9]), "top_p narrows sampling"),
    (dict(length_penalty=[float("inf")]), "length_penalty must be finite"),
])
def test_a_hostile_generate_request_is_invalid_argument_at_once(served, changes, message):
    strings = ("prompt", "stop")
    inputs = {k: tf.constant(v, dtype=tf.string if k in strings else None) for k, v in
              {**GOOD, **changes}.items()}
    inputs = {k: tf.cast(v, served.signatures["generate"].structured_input_signature[1][k].dtype)
              if k not in strings else v for k, v in inputs.items()}
    started = time.time()
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        served.signatures["generate"](**inputs)
    assert time.time() - started < 5


@pytest.mark.parametrize("token_ids, message", [(np.ones((5, 3)), "at most 4 rows"),
                                               (np.ones((1, 33)), "at most 32 ids"),
                                               (np.full((1, 3), 99), "ids must be <"),
                                               (np.full((1, 3), -1), "ids must be ≥ 0")])
def test_a_hostile_logits_request_is_invalid_argument(served, token_ids, message):
    with pytest.raises(tf.errors.InvalidArgumentError, match=re.escape(message)):
        served.signatures["logits"](token_ids=tf.constant(token_ids, tf.int32))


def test_the_largest_allowed_request_has_bounded_time_and_memory(tmp_path):
    """In a fresh process: the limit's worth of tokens for the limit's batch, and a burst of
    hostile requests, move its peak memory by little."""
    path = export(tiny_model("transformer"), tmp_path, max_new_tokens_limit=128, max_batch=4)
    code = (
        "import resource, sys, time, tensorflow as tf\n"
        f"g = tf.saved_model.load({path!r}).signatures['generate']\n"
        "def call(n, batch=1, **kw):\n"
        "    args = dict(prompt=tf.constant(['ab'] * batch), max_new_tokens=tf.constant([n]),\n"
        "                temperature=tf.constant([0.8]), top_k=tf.constant([0]), top_p=tf.constant([1.0]),\n"
        "                min_p=tf.constant([0.0]), typical_p=tf.constant([1.0]),\n"
        "                repetition_penalty=tf.constant([1.0]), seed=tf.constant([1]),\n"
        "                stop=tf.constant([[]], tf.string), penalty_alpha=tf.constant([0.0]),\n"
        "                num_beams=tf.constant([1]), length_penalty=tf.constant([1.0]))\n"
        "    args.update(kw)\n"
        "    return g(**args)\n"
        "call(8)\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "start = time.time(); call(128, 4); largest = time.time() - start\n"
        "for n in (10**8, 2**31 - 1):\n"
        "    try: call(n)\n"
        "    except tf.errors.InvalidArgumentError: pass\n"
        "grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before\n"
        "print(largest, grown)\n")
    result = run_python(code, timeout=240)
    assert result.returncode == 0, result.stderr[-2000:]
    largest, grown_kb = map(float, result.stdout.split()[-2:])
    assert largest < 120 and grown_kb < 300_000, (largest, grown_kb)


# -- hostile servers against the client -------------------------------------------------------
class Misbehaving:
    """A localhost TCP server that reads a request, then stalls, trickles, or answers junk."""

    def __init__(self, mode):
        self.mode, self.stop = mode, threading.Event()
        self.server = socket.socket()
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(4)
        self.port = self.server.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while not self.stop.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            connection.recv(65536)
            try:
                if self.mode == "junk":
                    connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nnot json!")
                elif self.mode == "trickle":
                    connection.sendall(b"HTTP/1.0 200 OK\r\n")
                    for _ in range(600):  # one byte at a time, forever as far as a client knows
                        if self.stop.wait(0.2):
                            break
                        connection.sendall(b"X")
                else:
                    self.stop.wait(60)  # accept and never answer
            except OSError:
                pass
            connection.close()

    def close(self):
        self.stop.set()
        self.server.close()


@pytest.mark.parametrize("mode, message", [("stall", "within the deadline"),
                                           ("trickle", "within the deadline"),
                                           ("junk", "malformed reply")])
def test_the_client_is_bounded_by_its_deadline_and_reports_bad_replies(mode, message):
    from kerasgen.serving_client import ServingClient, ServingError

    server = Misbehaving(mode)
    try:
        client = ServingClient("m", "127.0.0.1", server.port, timeout=1.0)
        started = time.time()
        with pytest.raises(ServingError, match=message):
            client.generate(["ab"], max_new_tokens=5)
        assert time.time() - started < 3
    finally:
        server.close()


def test_the_grpc_client_is_bounded_by_its_deadline():
    from kerasgen.serving_client import ServingClient, ServingError

    server = Misbehaving("stall")  # not even HTTP/2: the channel never becomes ready
    try:
        started = time.time()
        with pytest.raises(ServingError, match="DEADLINE_EXCEEDED|UNAVAILABLE"):
            ServingClient("m", "127.0.0.1", grpc_port=server.port, protocol="grpc",
                          timeout=1.0).generate(["ab"], max_new_tokens=5)
        assert time.time() - started < 3
    finally:
        server.close()


def test_the_client_cli_reports_a_stalled_server_in_one_line(capsys):
    from kerasgen import client

    server = Misbehaving("stall")
    try:
        assert client.main(["--model", "m", "--host", "127.0.0.1", "--rest_port", str(server.port),
                            "--timeout", "1", "generate", "--prompt", "ab"]) == 2
        lines = error_lines(capsys.readouterr().err)
        assert len(lines) == 1 and "within the deadline" in lines[0]
    finally:
        server.close()
