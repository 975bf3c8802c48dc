"""The generation controls and their defaults: the one home the CLIs, the training samples, the
served signatures and the client read them from (no TensorFlow here)."""
import dataclasses
import math

from kerasgen.errors import ConfigError

DEFAULT_PROMPT = ""  # an empty prompt …
EMPTY_PROMPT = "\n"  # … starts a new line, as if the text began a paragraph
MAX_NEW_TOKENS = 100_000  # the CLIs' bound (the served bound is chosen at export)
MAX_STOPS = 8  # stop strings per request at most …
MAX_STOP_BYTES = 32  # … of at most this many UTF-8 bytes each: the loop checks them every step
MAX_SEARCH_WIDTH = 64  # beams, or contrastive candidates: each one is a row the model runs
# The controls the served `generate` signature takes (n-gram blocking stays in-process).
SERVED_CONTROLS = ("max_new_tokens", "temperature", "top_k", "top_p", "min_p", "typical_p",
                   "repetition_penalty", "seed", "stop", "penalty_alpha", "num_beams",
                   "length_penalty")
# What sampling narrows or penalizes; the searches rank the model's own probabilities instead.
SAMPLING_ONLY = ("top_p", "min_p", "typical_p", "repetition_penalty", "no_repeat_ngram")


def _field(default, help):
    return dataclasses.field(default=default, metadata={"help": help})


@dataclasses.dataclass(frozen=True)
class Sampling:
    """The controls users reach for against repetition and drift, with Hugging Face's semantics."""

    max_new_tokens: int = _field(200, "tokens to generate")
    temperature: float = _field(0.8, "0 = greedy (which loops: expect repetition); below 1 "
                                     "sharper, above 1 more random")
    top_k: int = _field(0, "sample among the k likeliest tokens (0 = off)")
    top_p: float = _field(1.0, "sample among the likeliest tokens whose probability reaches p "
                               "(1 = off)")
    min_p: float = _field(0.0, "keep the tokens at least min_p times as likely as the likeliest "
                               "(0 = off; 0.05-0.1 prunes the tail and adapts to the model's "
                               "confidence)")
    typical_p: float = _field(1.0, "locally typical sampling: keep the tokens whose surprisal is "
                                   "closest to the expected one, until their probability reaches "
                                   "p (1 = off)")
    repetition_penalty: float = _field(1.0, "> 1 discourages tokens already in the text "
                                            "(positive logits ÷ r, negative × r; 1 = off)")
    no_repeat_ngram: int = _field(0, "never repeat an n-gram of this many tokens (0 = off)")
    seed: int = _field(0, "same seed, same text")
    stop: tuple = _field((), "end a row when its new text contains this string, and return the "
                             "text before it (repeatable)")
    penalty_alpha: float = _field(0.0, "contrastive search (with --top_k candidates, 4-10): "
                                       "choose the candidate that is likely yet least like the "
                                       "context, trading probability for α × its similarity "
                                       "(0 = off; 0.6 is usual; deterministic)")
    num_beams: int = _field(1, "beam search: keep the likeliest continuations of this many "
                               "beams and return the best (1 = off; deterministic, not streamed)")
    length_penalty: float = _field(1.0, "beam search ranks a beam by its log-probability ÷ "
                                        "length^p: > 0 favours longer text once beams end on a "
                                        "stop string, < 0 shorter")

    def __post_init__(self):
        object.__setattr__(self, "stop", tuple(self.stop))  # a list from a flag or a client
        checks = [
            (1 <= self.max_new_tokens <= MAX_NEW_TOKENS, f"max_new_tokens must be in 1..{MAX_NEW_TOKENS:,}"),
            (math.isfinite(self.temperature) and self.temperature >= 0, "temperature must be ≥ 0"),
            (self.top_k >= 0, "top_k must be ≥ 0"),
            (0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (0 <= self.min_p <= 1, "min_p must be in [0, 1]"),
            (0 < self.typical_p <= 1, "typical_p must be in (0, 1]"),
            (math.isfinite(self.repetition_penalty) and self.repetition_penalty > 0,
             "repetition_penalty must be > 0"),
            (self.no_repeat_ngram >= 0, "no_repeat_ngram must be ≥ 0"),
            (0 <= self.seed < 2 ** 31, "seed must be in 0..2^31-1"),
            (len(self.stop) <= MAX_STOPS, f"stop takes at most {MAX_STOPS} strings"),
            (all(isinstance(s, str) and s for s in self.stop), "stop strings must not be empty"),
            (all(len(s.encode("utf-8", "surrogatepass")) <= MAX_STOP_BYTES for s in self.stop),
             f"stop strings are limited to {MAX_STOP_BYTES} UTF-8 bytes"),
            (0 <= self.penalty_alpha <= 1, "penalty_alpha must be in [0, 1]"),
            (self.penalty_alpha == 0 or 2 <= self.top_k <= MAX_SEARCH_WIDTH,
             f"top_k must be in 2..{MAX_SEARCH_WIDTH} for contrastive search (penalty_alpha > 0)"),
            (1 <= self.num_beams <= MAX_SEARCH_WIDTH, f"num_beams must be in 1..{MAX_SEARCH_WIDTH}"),
            (math.isfinite(self.length_penalty), "length_penalty must be finite"),
            (self.penalty_alpha == 0 or self.num_beams == 1,
             "num_beams and penalty_alpha are two searches: choose one"),
        ]
        if self.search():
            checks += [(getattr(self, name) == getattr(Sampling, name),
                        f"{name} narrows sampling and does not combine with "
                        f"{'num_beams' if self.num_beams > 1 else 'penalty_alpha'}")
                       for name in SAMPLING_ONLY]
        problems = [f"{message}, got {getattr(self, message.split()[0])!r}"
                    for ok, message in checks if not ok]
        if problems:
            raise ConfigError("; ".join(problems))

    def filters(self):
        """Whether any control filters or penalizes (the decode loop that carries the ids seen)."""
        return (self.top_k > 0 or self.top_p < 1.0 or self.min_p > 0 or self.typical_p < 1.0
                or self.repetition_penalty != 1.0 or self.no_repeat_ngram > 0 or bool(self.stop))

    def search(self):
        """The deterministic search the controls ask for: "beam", "contrastive" or None
        (sampling, or greedy at temperature 0)."""
        return "beam" if self.num_beams > 1 else "contrastive" if self.penalty_alpha > 0 else None

    def width(self):
        """The rows the model runs for each prompt: its beams, its contrastive candidates, or 1."""
        return {"beam": self.num_beams, "contrastive": self.top_k}.get(self.search(), 1)

    def cut(self, text):
        """`text` up to the first occurrence of any stop string (all of it when none occurs)."""
        return text[:min([i for i in map(text.find, self.stop) if i >= 0], default=len(text))]

    @classmethod
    def add_arguments(cls, group, skip=()):
        """One --flag per control, typed and defaulted from the fields."""
        for field in dataclasses.fields(cls):
            if field.name == "stop" and field.name not in skip:
                group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                                   help=field.metadata["help"])
            elif field.name not in skip:
                group.add_argument(f"--{field.name}", type=field.type, default=field.default,
                                   help=f"{field.metadata['help']} (default: {field.default})")

    @classmethod
    def from_args(cls, args, **changes):
        values = {f.name: getattr(args, f.name) for f in dataclasses.fields(cls) if hasattr(args, f.name)}
        if "stop" in values:
            values["stop"] = tuple(values["stop"] or ())
        return cls(**{**values, **changes})
