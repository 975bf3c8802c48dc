"""A family is everything kind-specific about a kind of generator (text, images, …), in one object.

The model's base class owns its family (`model.family`), so the trainer, the
CLIs and the exporters ask the family and never what kind a model is. A
family package's `__init__` must not import TensorFlow (its flags appear in
`--help`); its methods import what they need.

Adding a family: a package with a `Family` subclass as `FAMILY`, a model base
class whose `family` is it, and its name in FAMILY_PACKAGES.
"""
import importlib

from kerasgen.errors import UsageError

FAMILY_PACKAGES = ("kerasgen.text", "kerasgen.image")


def families():
    """Every family, in FAMILY_PACKAGES order."""
    return [importlib.import_module(package).FAMILY for package in FAMILY_PACKAGES]


def add_family_arguments(parser, command, num_samples_help):
    """--num_samples (whose default each family sets) and every family's own flags of
    `command` ('generate' or 'evaluate'), each family's in a group of its own; returns
    {family name: its own option strings}, for `check_family_flags`."""
    defaults = ", ".join(f"{getattr(f, command + '_num_samples')} for {f.title}" for f in families())
    parser.add_argument("--num_samples", type=int, help=f"{num_samples_help} (default: {defaults})")
    options = {}
    for family in families():
        group = parser.add_argument_group(family.title)
        getattr(family, f"add_{command}_arguments")(group)
        options[family.name] = {o for action in group._group_actions for o in action.option_strings}
    return options


def check_family_flags(argv, config, options):
    """A UsageError for a flag of another family's models (`--max_new_tokens` for an image run),
    which would otherwise be ignored without a word. `config`: the run's config.json;
    `options`: add_family_arguments'."""
    given = {arg.partition("=")[0] for arg in argv if arg.startswith("--")}
    family = next((f for f in families() if f.name == config["family"]), None)
    for other in families():
        stray = sorted((options[other.name] - options.get(config["family"], set())) & given)
        if other is not family and stray:
            raise UsageError(f"{', '.join(stray)} {'is' if len(stray) == 1 else 'are'} for "
                             f"{other.title}, not for {family.title if family else 'the models'} "
                             f"such as this run's {config['model_name']}")


class Family:
    """The interface; each method gets the model (or its class) and the run it works on."""

    name = ""  # as recorded in config.json
    title = ""  # for help texts: "text models"
    train_defaults = {}  # TrainConfig fields the whole family trains with by default
    generate_num_samples = 1  # python -m kerasgen.generate's default --num_samples
    evaluate_num_samples = 8  # python -m kerasgen.evaluate's default --num_samples per seed
    log_parts = ()  # the family's own TensorBoard directories under logs/
    data_arguments = ()  # model arguments the data decides (no flag sets them)

    # -- command-line flags (no TensorFlow) ------------------------------------------------
    def add_generate_arguments(self, group):
        """Flags of `python -m kerasgen.generate` for this family's models."""

    def add_evaluate_arguments(self, group):
        """Flags of `python -m kerasgen.evaluate` for this family's models."""

    # -- training ------------------------------------------------------------------------
    def check_data(self, train):
        """A DataError for a `train.data` source that names nothing usable, found without
        TensorFlow and before any reading (a missing file, say)."""

    def data_settings(self, train):
        """{TrainConfig field: value} that `train.data` fixes (a prepared corpus' tokenizer),
        found without TensorFlow."""
        return {}

    def training_data(self, cls, train, model_kwargs, pretrained=None, first_step=0):
        """Loads and checks the data for a model of `cls` with `model_kwargs` (its arguments
        before the data: an image size, say): returns (the model arguments the data decides,
        e.g. the vocabulary or the classes; TrainingData). `pretrained`: the RunDir being
        fine-tuned or resumed, whose data conventions (a vocabulary) the data must follow.
        The training stream starts at step `first_step` (a resumed run continues there)."""
        raise NotImplementedError

    def run_files(self, model):
        """{file name: text} the run directory keeps beside config.json (a tokenizer, say)."""
        return {}

    def callbacks(self, model, data, train, run):
        """Keras callbacks that show samples and scores while training."""
        return []

    def summarize(self, model, data, train, run, last):
        """(summary dict for summary.json, lines to print) after training; `last`: the final
        epoch's logs (see `final_scores`)."""
        raise NotImplementedError

    # -- using a trained run -------------------------------------------------------------
    def generate(self, model, run, args):
        """python -m kerasgen.generate: writes the model's output as the flags ask."""
        raise NotImplementedError

    def evaluate(self, model, run, args):
        """python -m kerasgen.evaluate: a JSON-ready dict of scores."""
        raise NotImplementedError

    def example_commands(self, run):
        """Ready-to-paste commands for a finished run, printed at the end of training."""
        return []

    # -- export --------------------------------------------------------------------------
    def add_export_arguments(self, group):
        """Flags of `python -m kerasgen.export` for this family's models."""

    def serving(self, model, args):
        """The serving module for the export flags `args`: `.endpoints()` {signature: (function,
        input specs)}, `.warmup_inputs()` {signature: inputs}, `.trackables()` (resources
        the endpoints use besides the model) and `.limits` {name: value} (the bounds every
        request is checked against)."""
        raise NotImplementedError

    def serving_example(self):
        """A REST request body for the printed `curl` example."""
        raise NotImplementedError

    def tflite_function(self, model):
        """The concrete function that becomes the .tflite file (static shapes, named I/O)."""
        raise NotImplementedError

    def calibration_inputs(self, model, run, count=64):
        """Representative inputs of `tflite_function` for int8 quantization."""
        raise NotImplementedError


def final_scores(last, names, compute):
    """{name: score} of the final model: the `val_<name>` of its last epoch's logs, which fit
    computed on these very weights, or `compute()`'s when this process ran no epoch (a run
    resumed after its last one) and so has no logs to take them from."""
    if last and all(f"val_{name}" in last for name in names):
        return {name: float(last[f"val_{name}"]) for name in names}
    return compute()


def spread(per_seed):
    """[{metric: value}, …] over seeds → {metric: {'mean', 'std'}}."""
    import numpy as np

    return {key: {"mean": float(np.mean([m[key] for m in per_seed])),
                  "std": float(np.std([m[key] for m in per_seed]))} for key in per_seed[0]}


class TrainingData:
    """What a family's `training_data` hands the trainer: datasets, plus anything its
    callbacks and summary need (`extras`). `per_worker`: `train` yields this worker's part
    of each global batch (else each worker's strategy splits whole global batches)."""

    per_worker = False

    def __init__(self, train, validation, **extras):
        from kerasgen.data import without_autotune_thread

        self.train, self.validation = map(without_autotune_thread, (train, validation))
        self.__dict__.update(extras)

    def training_input(self, strategy):
        """What fit() takes for `strategy`: a worker's own part as the strategy's input."""
        if not self.per_worker:
            return self.train
        return strategy.distribute_datasets_from_function(lambda context: self.train)
