"""Recipes: one YAML per zoo entry saying how it is built and trained. Data, validated on load.

A recipe may start with ``extends: <other recipe name>``: it is then that recipe deep-merged with this one's keys
(lists and scalars replace, mappings merge), so a baseline states only how it differs from its method.

Schema (every key optional unless marked required; unknown keys and wrong types are errors naming the key)::

    name: str (required)              description: str           reference: str
    dataset: {name: str (required), config: str, data_dir: str, licence: str,
              splits: {train: str, validation: str, test: str}, targets: {task: [feature, ...]},
              ignore: {task: feature}}
    model: {family: str (required), architecture: str, backbone: str (required), input_size: [h, w],
            weights: str, weights_dtype: float32|float16 (of the entry's file), options: {...builder options...}}
    tasks: [{name, kind, size, branch, loss, labels, circle, mu, target_range}, ...] (required)
    training: {optimizer: {name, learning_rate, momentum, weight_decay}, schedule: {name, warmup_epochs,
               decay_epochs, decay_rate}, epochs: int, batch_size: int, balancer: {name, ...options},
               strategy: str, seed: int, seeds: [int, ...], select: {monitor: val_..., mode: min|max},
               augment: {crop: bool, flip: bool, randaugment: bool,
                         resize_shorter: int (training view: shorter side to it, then an input_size crop)},
               phases: [{name: str (required), epochs: int (required), trainable: [part, ...],
                         learning_rate: float}]}
    init: str                          (another entry's name or a weights path: fine-tuning starts from it)
    export: {version: int}

``dataset.ignore`` names, per multilabel task, a boolean feature of the task's shape whose true entries are left
out: the target holds ``-1`` there (VOC2007: ``ignore: {labels: difficult}``), which needs ``loss: masked_bce``.

``training.phases`` (family semdep) trains in stages, in the order listed: each phase sets its parts trainable,
compiles a fresh optimizer at its ``learning_rate`` (default: the optimizer's) and trains its ``epochs``; ``name``
picks the stage and the output it trains (``affect_zoo.models.semdep.PHASE_NAMES``) and ``trainable``, if given,
must list that stage's parts. ``training.epochs``, if given with phases, must be their sum.

``training.select`` keeps the weights of the epoch whose validation log ``monitor`` is best (else the last
epoch's). ``training.seeds`` trains one run per seed (each in ``run_dir/seed_<s>/``, resumable) and ships the seed
whose selected epoch is best on validation; the card reports every seed's test metrics and their mean ± sd.
"""
import copy
import pathlib

import yaml


def data_dir(name):
    """The top-level ``recipes/`` or ``saved_models/``: the source checkout's (an editable install, where training
    writes) or, in an installed wheel, the copy packaged as ``affect_zoo/_data/<name>``."""
    package = pathlib.Path(__file__).resolve().parent
    if (package.parent / "setup.py").is_file():
        return package.parent / name
    return package / "_data" / name


RECIPES_DIR = data_dir("recipes")

ANY = object()
SCHEMA = {
    "name": str, "description": str, "reference": str, "extends": str, "init": str,
    "dataset": {"name": str, "config": str, "data_dir": str, "licence": str,
                "splits": {"train": str, "validation": str, "test": str}, "targets": ANY, "ignore": dict},
    "model": {"family": str, "architecture": str, "backbone": str, "input_size": list, "weights": str,
              "weights_dtype": str, "options": ANY},
    "tasks": list,
    "training": {"optimizer": {"name": str, "learning_rate": float, "momentum": float, "weight_decay": float},
                 "schedule": {"name": str, "warmup_epochs": int, "decay_epochs": int, "decay_rate": float},
                 "epochs": int, "batch_size": int, "balancer": ANY, "strategy": str, "seed": int,
                 "seeds": list, "select": {"monitor": str, "mode": str},
                 "augment": {"crop": bool, "flip": bool, "randaugment": bool, "resize_shorter": int},
                 "phases": list},
    "export": {"version": int},
}
PHASE_SCHEMA = {"name": str, "epochs": int, "trainable": list, "learning_rate": float}
REQUIRED = [("name",), ("dataset", "name"), ("model", "family"), ("model", "backbone"), ("tasks",)]
TRAINING_DEFAULTS = {"optimizer": {"name": "adam", "learning_rate": 1e-4}, "epochs": 10, "batch_size": 32,
                     "balancer": {"name": "fixed"}, "strategy": "auto", "seed": 0,
                     "augment": {"crop": True, "flip": True, "randaugment": False}}


class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


def recipe_path(name_or_path, recipes_dir=None):
    """The YAML file of an entry name, or the path given."""
    path = pathlib.Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return pathlib.Path(recipes_dir or RECIPES_DIR) / f"{name_or_path}.yaml"


def load_recipe(name_or_path, recipes_dir=None):
    """Read, resolve ``extends`` and validate a recipe; returns a plain dict with training defaults filled in."""
    path = recipe_path(name_or_path, recipes_dir)
    raw = _read(path)
    seen = [path.stem]
    while "extends" in raw:
        parent_name = raw.pop("extends")
        if parent_name in seen:
            raise RecipeError(f"{path}: 'extends' loops through {' -> '.join(seen + [parent_name])}")
        seen.append(parent_name)
        raw = _merge(_read(recipe_path(parent_name, recipes_dir or path.parent)), raw)
    validate(raw, where=str(path))
    recipe = copy.deepcopy(raw)
    recipe["training"] = _merge(TRAINING_DEFAULTS, recipe.get("training", {}))
    return recipe


def _read(path):
    if not path.is_file():
        raise RecipeError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise RecipeError(f"{path}: not valid YAML ({error})") from None
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: a recipe is a mapping of keys, got {type(data).__name__}")
    return data


def _merge(base, override):
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def validate(recipe, where="recipe"):
    """Raise RecipeError naming the first unknown key, wrongly typed value or missing required key."""
    _check(recipe, SCHEMA, where, ())
    for keys in REQUIRED:
        node = recipe
        for key in keys:
            if not isinstance(node, dict) or key not in node:
                raise RecipeError(f"{where}: required key '{'.'.join(keys)}' is missing")
            node = node[key]
    for i, task in enumerate(recipe["tasks"]):
        if not isinstance(task, dict) or "name" not in task or "kind" not in task:
            raise RecipeError(f"{where}: tasks[{i}] must be a mapping with at least 'name' and 'kind'")
    _check_ignore(recipe, where)
    _check_phases(recipe, where)
    _check_seeds(recipe, where)
    dtype = recipe["model"].get("weights_dtype")
    if dtype not in (None, "float32", "float16"):
        raise RecipeError(f"{where}: model.weights_dtype must be float32 or float16, got {dtype!r}")
    size = recipe["model"].get("input_size")
    if size is not None and (len(size) != 2 or not all(isinstance(v, int) and v > 0 for v in size)):
        raise RecipeError(f"{where}: model.input_size must be [height, width] of positive ints, got {size}")


def _check_ignore(recipe, where):
    tasks = {t["name"]: t for t in recipe["tasks"]}
    for name, feature in ((recipe.get("dataset") or {}).get("ignore") or {}).items():
        key = f"dataset.ignore.{name}"
        if name not in tasks:
            raise RecipeError(f"{where}: '{key}' names no task (tasks: {', '.join(tasks)})")
        if not isinstance(feature, str):
            raise RecipeError(f"{where}: '{key}' must be the name of a mask feature, got {feature!r}")
        task = tasks[name]
        if task["kind"] != "multilabel" or task.get("loss") != "masked_bce":
            raise RecipeError(f"{where}: '{key}' marks labels ignored (-1), which only a multilabel task with "
                              f"loss: masked_bce can train on; task {name!r} is {task['kind']} with loss "
                              f"{task.get('loss', 'default')}")


def _check_seeds(recipe, where):
    training = recipe.get("training") or {}
    seeds = training.get("seeds")
    if seeds is not None:
        if not seeds or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds) \
                or len(set(seeds)) != len(seeds):
            raise RecipeError(f"{where}: 'training.seeds' must be a non-empty list of distinct ints >= 0, got {seeds}")
        if "seed" in training:
            raise RecipeError(f"{where}: give 'training.seed' or 'training.seeds', not both")
        if training.get("phases"):
            raise RecipeError(f"{where}: 'training.seeds' with 'training.phases' is not supported")
        if not training.get("select"):
            raise RecipeError(f"{where}: 'training.seeds' needs 'training.select': the seed that ships is the one "
                              f"whose selected epoch is best on validation")
    select = training.get("select")
    if select is not None:
        if (recipe.get("dataset") or {}).get("splits", {}).get("validation") is None:
            raise RecipeError(f"{where}: 'training.select' picks an epoch on the validation split, but "
                              f"'dataset.splits.validation' is not set")
        if not str(select.get("monitor", "")).startswith("val_"):
            raise RecipeError(f"{where}: 'training.select.monitor' must be a validation log such as val_loss, got "
                              f"{select.get('monitor')!r}")
        if select.get("mode", "min") not in ("min", "max"):
            raise RecipeError(f"{where}: 'training.select.mode' must be min or max, got {select.get('mode')!r}")


def _check_phases(recipe, where):
    training = recipe.get("training") or {}
    phases = training.get("phases")
    if not phases:
        return
    for i, phase in enumerate(phases):
        trail = ("training", f"phases[{i}]")
        _check(phase, PHASE_SCHEMA, where, trail)
        for key in ("name", "epochs"):
            if key not in phase:
                raise RecipeError(f"{where}: required key 'training.phases[{i}].{key}' is missing")
        if phase["epochs"] < 1:
            raise RecipeError(f"{where}: 'training.phases[{i}].epochs' must be >= 1, got {phase['epochs']}")
    total = sum(p["epochs"] for p in phases)
    if training.get("epochs") is not None and training["epochs"] != total:
        raise RecipeError(f"{where}: 'training.epochs' is {training['epochs']} but the phases train {total} epochs "
                          f"together; drop training.epochs or make it their sum")


def _check(node, schema, where, trail):
    if not isinstance(node, dict):
        raise RecipeError(f"{where}: '{'.'.join(trail)}' must be a mapping, got {type(node).__name__}")
    for key, value in node.items():
        path = ".".join(trail + (str(key),))
        if key not in schema:
            known = ", ".join(sorted(schema))
            raise RecipeError(f"{where}: unknown key '{path}' (known here: {known})")
        expected = schema[key]
        if expected is ANY or value is None:
            continue
        if isinstance(expected, dict):
            _check(value, expected, where, trail + (str(key),))
        elif expected is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            continue
        elif not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
            raise RecipeError(f"{where}: '{path}' must be {expected.__name__}, got {type(value).__name__} "
                              f"{value!r}")


def list_recipes(recipes_dir=None):
    """Entry names of every recipe file (sorted)."""
    return sorted(p.stem for p in pathlib.Path(recipes_dir or RECIPES_DIR).glob("*.yaml"))
