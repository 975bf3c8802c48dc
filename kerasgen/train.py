"""python -m kerasgen.train --model gru: train a zoo model and write a self-contained run directory."""
import contextlib
import dataclasses
import os
import shlex
import sys
import tempfile

from kerasgen import distribute
from kerasgen.cli import Parser, command, parse_overrides, start_tensorflow
from kerasgen.config import TrainConfig, apply_overrides, from_dict, model_arguments
from kerasgen.errors import ConfigError, RunError, UsageError
from kerasgen.recipes import RECIPES, Recipe, get_recipe
from kerasgen.rundir import RunDir, atomic_write
from kerasgen.text.tokenizer import DEFAULT_BPE_VOCAB, TOKENIZERS

PROG = "python -m kerasgen.train"
# Training fields a resumed run may change; the rest would make it another run.
RESUMABLE_CHANGES = {"epochs"} | {f.name for f in dataclasses.fields(Recipe)}


def _parser():
    train_fields = ", ".join(f.name for f in dataclasses.fields(TrainConfig))
    recipe_fields = ", ".join(f.name for f in dataclasses.fields(Recipe))
    p = Parser(
        prog=PROG,
        description="Train a kerasgen zoo model into a run directory (config.json, model.keras, "
                    "checkpoints/, logs/ for TensorBoard, summary.json). Every training field, "
                    "recipe knob and model hyperparameter can be set as --key=value "
                    "(e.g. --batch_size=12 --learning_rate=3e-4 --units=512).",
        epilog=f"Training fields: {train_fields}. Recipe fields: {recipe_fields}. Model "
               f"hyperparameters: see --list. Bad input exits with code 2 before anything is "
               f"written; Ctrl-C keeps the last finished epoch for --resume.")
    p.add_argument("--model", help="zoo model name (default: gru; see --list)")
    p.add_argument("--list", action="store_true",
                   help="list the zoo's models with their hyperparameters and training defaults")
    p.add_argument("--data", metavar="SOURCE",
                   help="text models: 'pydoc' (embedded, default), a UTF-8 text file (above 64 MB "
                        "prepared once into ~/.cache/kerasgen), a folder made by python -m "
                        "kerasgen.prepare, or tfds:NAME (streamed into that cache); "
                        "image models: 'digits' (embedded, default), tfds:mnist, an .npz file with "
                        "x_train or x (labels y_train or y), or a folder of PNG/JPEG files. tfds "
                        "reads the local data_dir only")
    p.add_argument("--epochs", metavar="N", help="epochs (default: the model's, see --list)")
    p.add_argument("--recipe", metavar="NAME",
                   help=f"training recipe: {', '.join(RECIPES)} (default: the model's, "
                        f"finetune with --init_from)")
    p.add_argument("--seed", metavar="N", help="seed of every random draw (default: 1337)")
    p.add_argument("--out", metavar="DIR", help="run directory, new or empty "
                                                "(default: runs/<model>/<timestamp>)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue an interrupted run from its last finished epoch (only --epochs "
                        "and recipe fields may change)")
    p.add_argument("--init_from", metavar="DIR",
                   help="fine-tune: start from this run's best model and vocabulary with the "
                        "finetune recipe (add --freeze_layers=N to fix the N lowest layers)")
    p.add_argument("--strategy", choices=distribute.STRATEGIES,
                   help="tf.distribute strategy: default (one device), mirrored (the GPUs of this "
                        "machine), multi_worker (every worker in TF_CONFIG runs this same command; "
                        "--batch_size is the global batch; see README, 'Scale out')")
    p.add_argument("--tokenizer", choices=TOKENIZERS,
                   help="text models: char (default: the corpus' characters) or bpe (byte-level BPE "
                        "learned from the training split: any text, shorter sequences)")
    p.add_argument("--vocab_size", metavar="N",
                   help=f"with --tokenizer=bpe: tokens, the 256 bytes included (default "
                        f"{DEFAULT_BPE_VOCAB})")
    p.add_argument("--precision", choices=distribute.PRECISIONS,
                   help="Keras dtype policy: float32 (default), mixed_float16 (with loss scaling) "
                        "or mixed_bfloat16; weights, logits and losses stay float32")
    return p


def parse_args(argv):
    """Returns (argparse namespace, {key: raw value}) with every --key=value override."""
    args, rest = _parser().parse_known_args(argv)
    overrides = {k: getattr(args, k) for k in ("data", "epochs", "recipe", "seed", "out", "strategy",
                                               "precision", "init_from", "tokenizer", "vocab_size")
                 if getattr(args, k) is not None}
    return args, {**overrides, **parse_overrides(rest)}


def list_models():
    """The zoo, read from its sources (no TensorFlow)."""
    from kerasgen.catalogue import zoo_models

    shown = ("epochs", "batch_size", "steps_per_epoch", "recipe", "data")
    rows = []
    for m in zoo_models():
        train = {**dataclasses.asdict(TrainConfig()), **m["train"]}
        size = ", ".join(f"{k}={v}" for k, v in m["hyperparameters"].items())
        run = [f"{k}={train[k]}" for k in shown + tuple(k for k in m["run_settings"] if k in train)]
        rows.append(f"{m['name']:12s} {m['description']} [{m['family']}]\n"
                    f"{'':12s} model:    {size}\n"
                    f"{'':12s} training: {', '.join(run)}")
    return "\n".join(rows)


@dataclasses.dataclass
class Plan:
    """A run's resolved settings, before anything is written, found without TensorFlow."""

    model: object  # the model's class, or its catalogue.ModelInfo before the zoo is imported
    train: TrainConfig
    recipe: Recipe
    model_flags: dict  # the model hyperparameters given as flags
    run: RunDir = None  # set when resuming
    pretrained: RunDir = None  # the run whose model, vocabulary and data conventions to keep


def _resume_plan(args, overrides):
    from kerasgen import catalogue

    run = RunDir.find(args.resume)
    config = run.read_config()
    if run.finished:
        raise RunError(f"{run} finished training; to train it further on new data use "
                       f"--init_from {run}")
    if args.model and args.model != config["model_name"]:
        raise UsageError(f"--resume {run} is a {config['model_name']!r} run, not {args.model!r}")
    fixed = sorted(set(overrides) - RESUMABLE_CHANGES)
    if fixed:
        raise UsageError(f"a resumed run keeps its settings; only --epochs and recipe fields can "
                         f"change (got --{', --'.join(fixed)})")
    model = catalogue.model(config["model_name"])
    try:
        recipe = from_dict(Recipe, config["recipe"], "its 'recipe' section")
    except ConfigError as e:
        raise RunError(f"{run.config_path} is corrupted ({e})") from None
    train, recipe_updates, _ = apply_overrides(run.train_config(), model, overrides)
    done = run.finished_epochs()
    if done > train.epochs:
        raise UsageError(f"--epochs={train.epochs} is fewer than the {done} epochs {run} has "
                         f"finished: give --epochs={done} or more")
    model.family.check_data(train)
    distribute.check_cluster(train.strategy)
    return Plan(model, train.check(), dataclasses.replace(recipe, **recipe_updates), {}, run, run)


def _fresh_plan(args, overrides):
    from kerasgen import catalogue

    base = pretrained = None
    if args.init_from:
        pretrained = RunDir.find(args.init_from)
        base = pretrained.read_config()
        if args.model and args.model != base["model_name"]:
            raise UsageError(f"--init_from {args.init_from} is a {base['model_name']!r} run, "
                             f"not {args.model!r}")
    model = catalogue.model(args.model or (base["model_name"] if base else TrainConfig.model))
    train, recipe_updates, model_flags = apply_overrides(TrainConfig(**model.train_defaults), model,
                                                         overrides)
    if base is not None:
        before = pretrained.train_config()
        kept = {"tokenizer": before.tokenizer, "vocab_size": before.vocab_size}  # as the weights are
        changed = [f"--{key}={overrides[key]}" for key, value in kept.items()
                   if key in overrides and getattr(train, key) != value]
        if changed:
            raise UsageError(f"{pretrained} uses the {before.tokenizer} tokenizer, which fine-tuning "
                             f"keeps: drop {' '.join(changed)}")
        changes = {"recipe": overrides.get("recipe", "finetune"), **kept}
        if "seq_len" not in overrides:
            changes["seq_len"] = before.seq_len  # the model's context
        train = dataclasses.replace(train, **changes)
    recipe = dataclasses.replace(get_recipe(train.recipe), **recipe_updates)
    model.family.check_data(train)
    fixed = model.family.data_settings(train)
    clash = [key for key, value in fixed.items() if key in overrides and getattr(train, key) != value]
    if clash:
        raise UsageError(f"{train.data} was prepared with "
                         f"{', '.join(f'{key}={fixed[key]}' for key in clash)}: drop "
                         f"{' '.join(f'--{key}={overrides[key]}' for key in clash)}")
    train = dataclasses.replace(train, model=model.zoo_name, **fixed).check()
    distribute.check_cluster(train.strategy)
    if train.out is not None and train.strategy != "multi_worker":  # a worker: see _train
        RunDir.check_new(train.out)  # before TensorFlow, the data and the model take their seconds
    return Plan(model, train, recipe, model_flags, pretrained=pretrained)


@contextlib.contextmanager
def _run_directory(plan, cls, task):
    """(where this process writes, whose backup it continues), locked while training. The chief
    writes the run directory; any other worker of a multi-worker run writes into a scratch
    directory of its own, removed afterwards, and continues the chief's backup."""
    if task.chief:
        run = plan.run or RunDir.create(cls.zoo_name, plan.train.out)
        with run.lock():
            yield run, run
        return
    prefix = f"kerasgen-{task.type}{task.index}-"
    RunDir.remove_abandoned(os.path.join(tempfile.gettempdir(), f"{prefix}*"))  # a killed one's
    with tempfile.TemporaryDirectory(prefix=prefix) as d:
        scratch = RunDir(d)
        with scratch.lock():
            yield scratch, plan.run or scratch


def _train(plan):
    """Everything after the settings: data, model, run directory, fit. Returns the exit code."""
    import keras

    from kerasgen import registry, trainer

    train, recipe, cls = plan.train, plan.recipe, registry.get(plan.model.zoo_name)
    task = distribute.task(train.strategy)
    if plan.run is None and train.out is not None and task.workers > 1 and task.chief:
        RunDir.check_new(train.out)  # only the chief writes there
    strategy = distribute.make_strategy(train.strategy)  # before any op: collectives configure at start
    first_step = plan.run.finished_epochs() * train.steps_per_epoch if plan.run else 0
    pretrained = plan.pretrained.read_config()["model"] if plan.pretrained else None
    decided, data = cls.family.training_data(
        cls, train, model_arguments(cls, train, recipe, plan.model_flags, pretrained),
        plan.pretrained, first_step)
    keras.utils.set_random_seed(train.seed)
    weights = plan.pretrained.load_model("best") if plan.run is None and plan.pretrained else None
    model = trainer.training_model(
        cls, model_arguments(cls, train, recipe, plan.model_flags, pretrained, decided), train,
        recipe, strategy, weights)
    config = trainer.run_config(cls, model, train, recipe)
    distribute.check_same_settings(strategy, config)  # before anything is written
    with _run_directory(plan, cls, task) as (run, restore_from):
        if plan.run is None and os.path.exists(run.config_path):  # another run got here first
            raise RunError(f"{run} already holds a run; choose another --out")
        run.write_config(config)
        for name, text in cls.family.run_files(model).items():
            atomic_write(run.join(name), text)
        if not task.chief:
            print(f"{task}: training; the chief writes the run directory", flush=True)
        else:
            print(f"run directory: {run}\nTensorBoard:   tensorboard --logdir "
                  f"{shlex.quote(run.logs_dir)}", flush=True)
        # What to resume: on a worker other than the chief, the chief's run, not the scratch.
        resume = str(plan.run or (run if task.chief else train.out or "<the chief's run directory>"))
        resume = shlex.quote(resume) if not resume.startswith("<") else resume
        try:
            _, report = trainer.train_run(model, data, train, recipe, run, restore_from)
        except KeyboardInterrupt:
            print(f"\nkerasgen.train: interrupted; continue from the last finished epoch with: "
                  f"{PROG} --resume {resume}", file=sys.stderr)
            return 130
        except trainer.TrainingDiverged as e:
            kept = ("the last finished epoch is kept" if restore_from.finished_epochs()
                    else "no epoch had finished, so there is none to keep; start it again")
            print(f"kerasgen.train: error: training diverged: {e}; {kept}: "
                  f"{PROG} --resume {resume} --learning_rate=<lower>", file=sys.stderr)
            return 1
        except distribute.worker_errors(task) as e:
            distribute.release_aborted(e)
            print(f"kerasgen.train: error: {task} lost contact with another worker "
                  f"({type(e).__name__}); the last finished epoch is kept: restart every worker "
                  f"with {PROG} --resume {resume}", file=sys.stderr)
            return 1
        if not task.chief:
            return 0
    print("\n" + "\n".join(report))
    print(f"run directory: {run}\nnext:")
    for line in [*cls.family.example_commands(run),
                 f"python -m kerasgen.export --run {shlex.quote(run.path)}",
                 f"tensorboard --logdir {shlex.quote(run.logs_dir)}"]:
        print(f"  {line}")
    return 0


@command("kerasgen.train")
def main(argv):
    args, overrides = parse_args(argv)
    if args.list:
        print(list_models())
        return 0
    if args.resume and args.init_from:
        raise UsageError("--resume continues a run; --init_from starts a new one: choose one")
    plan = _resume_plan(args, overrides) if args.resume else _fresh_plan(args, overrides)
    start_tensorflow()  # only now: a bad flag, model name, data path or run is one line at once
    import kerasgen.zoo  # noqa: F401  registers the models

    with distribute.dtype_policy(plan.train.precision):
        return _train(plan)


if __name__ == "__main__":
    status = main()
    if status == 130:
        # Interrupted mid-step: TensorFlow's own threads may still be inside an op, and the
        # interpreter's teardown around them once crashed with SIGSEGV instead of exiting 130.
        # Everything kept is on disk by now (backup, logs); leave without the teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    sys.exit(status)
