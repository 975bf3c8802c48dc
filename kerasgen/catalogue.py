"""The zoo as its source files describe it, read without importing it (so without TensorFlow).

`python -m kerasgen.train --list` and `--help` answer from here in a fraction of
a second; importing the zoo costs TensorFlow's start-up. A test checks that
this reading agrees with the imported registry.
"""
import ast
import importlib
import importlib.util
import os

from kerasgen.config import RUN_SETTINGS, own_hyperparameters


def _literal(node):
    """A literal's value; `dict(key=literal, …)` too; else the source text."""
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dict" and not node.args:
        return {k.arg: _literal(k.value) for k in node.keywords}
    try:
        return ast.literal_eval(node)
    except ValueError:
        return ast.unparse(node)


def _register_call(cls_node):
    for decorator in cls_node.decorator_list:
        if isinstance(decorator, ast.Call) and getattr(decorator.func, "id", getattr(
                decorator.func, "attr", None)) == "register":
            return decorator
    return None


def _init_defaults(cls_node):
    init = next((n for n in cls_node.body if isinstance(n, ast.FunctionDef) and n.name == "__init__"),
                None)
    if init is None:
        return None
    args = init.args
    positional = args.posonlyargs + args.args
    pairs = list(zip(positional[len(positional) - len(args.defaults):], args.defaults))
    pairs += [(a, d) for a, d in zip(args.kwonlyargs, args.kw_defaults) if d is not None]
    return {arg.arg: _literal(default) for arg, default in pairs}


def _family(tree, cls_node, classes):
    """The family of a class: its base's package, found through the module's imports."""
    imports = {alias.asname or alias.name: node.module for node in ast.walk(tree)
               if isinstance(node, ast.ImportFrom) for alias in node.names}
    for base in cls_node.bases:
        name = getattr(base, "id", None)
        if name in classes:
            return _family(tree, classes[name], classes)
        if name in imports:
            module = importlib.import_module(imports[name].rsplit(".", 1)[0])
            if hasattr(module, "FAMILY"):
                return module.FAMILY
    return None


def _models_in(path):
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for cls_node in classes.values():
        call = _register_call(cls_node)
        if call is None:
            continue
        keywords = {k.arg: _literal(k.value) for k in call.keywords}
        family = _family(tree, cls_node, classes)
        arguments = _init_defaults(cls_node) or {}
        yield {"name": _literal(call.args[0]), "description": keywords.get("description", ""),
               "family": family.name if family else "?", "arguments": arguments,
               "hyperparameters": own_hyperparameters(arguments, family) if family else arguments,
               "run_settings": [key for key in RUN_SETTINGS if key in arguments],
               "train": {**(family.train_defaults if family else {}), **keywords.get("train", {})}}


def zoo_models():
    """[{name, description, family, arguments, hyperparameters, run_settings, train}] of every
    model in the zoo, by name: arguments with their defaults, the model's own hyperparameters
    among them, and those the run sets (see config.RUN_SETTINGS)."""
    folder = importlib.util.find_spec("kerasgen.zoo").submodule_search_locations[0]
    models = [model for file in sorted(os.listdir(folder))
              if file.endswith(".py") and not file.startswith("_")
              for model in _models_in(os.path.join(folder, file))]
    return sorted(models, key=lambda m: m["name"])


class ModelInfo:
    """What a run's settings need of a zoo model, as its source declares it: `zoo_name`,
    `family`, `arguments` (its __init__ keyword arguments and their defaults) and
    `train_defaults`: what `config.apply_overrides` reads of a model class."""

    def __init__(self, entry):
        from kerasgen.family import families

        self.zoo_name, self.arguments, self.train_defaults = entry["name"], entry["arguments"], entry["train"]
        self.family = next(f for f in families() if f.name == entry["family"])


def model(name):
    """Zoo model `name` without importing the zoo (so without TensorFlow): its class where it is
    registered already (the zoo imported, or a model registered by a plugin), else its
    ModelInfo. An unknown name is a ConfigError that lists the known ones."""
    from kerasgen import registry
    from kerasgen.errors import ConfigError

    if name in registry.names():
        return registry.get(name)
    entries = {entry["name"]: entry for entry in zoo_models()}
    if name not in entries:
        known = ", ".join(sorted({*entries, *registry.names()}))
        raise ConfigError(f"unknown model {name!r}; known models: {known}")
    return ModelInfo(entries[name])
