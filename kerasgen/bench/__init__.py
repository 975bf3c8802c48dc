"""python -m kerasgen.bench NAME: re-runnable measurements, side by side, one module per bench.

Timings on a shared machine are noisy, so each figure is a median over many
executions, and comparisons are made inside one run, never across runs. A
bench module has a one-line docstring (its --help), `add_arguments(parser)` and
`run(args, overrides)`, where `overrides` are the `--key=value` settings
`python -m kerasgen.train` would take; `common` holds what they share.
Importing a bench module does not import TensorFlow.
"""

BENCHES = ("startup", "train", "decode", "serve", "race", "scale", "images", "tokenizers", "data", "decoding")
