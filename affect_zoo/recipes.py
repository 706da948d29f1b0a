"""Recipes: one YAML per zoo entry saying how it is built and trained. Data, validated on load.

A recipe may start with ``extends: <other recipe name>``: it is then that recipe deep-merged with this one's keys
(lists and scalars replace, mappings merge), so a baseline states only how it differs from its method.

Schema (generated from the spec classes below, whose field defaults are the only defaults; every key optional unless
marked required; unknown keys and wrong types are errors naming the key)::

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

Numbers are checked against ``RANGES`` (epochs and batch size >= 1, learning rates > 0, input sides >= 32, ...),
the optimizer, schedule, strategy and balancer names against what exists, the balancer's options against its
constructor and each task by building it; every error names the file and the field. The strategy and balancer
checks import the classes that implement them (TensorFlow); ``components=False`` leaves them out, for readers that
only describe an entry (the registry's cards, ``affect-zoo list``/``info``) and must not load TensorFlow.
"""
import copy
import dataclasses
import inspect
import math
import pathlib

import yaml

from affect_zoo.tasks import Task


def data_dir(name):
    """The top-level ``recipes/`` or ``saved_models/``: the source checkout's (an editable install, where training
    writes) or, in an installed wheel, the copy packaged as ``affect_zoo/_data/<name>``."""
    package = pathlib.Path(__file__).resolve().parent
    if (package.parent / "setup.py").is_file():
        return package.parent / name
    return package / "_data" / name


RECIPES_DIR = data_dir("recipes")

ANY = object()


def _field(default=None, yaml=None):
    """A recipe field: its default (the one place it is set) and, when the YAML type differs from the stored one
    (lists stored as tuples, free-form mappings), the type the YAML must have (``ANY``: checked elsewhere)."""
    factory = default if callable(default) else None
    kwargs = {"default_factory": factory} if factory else {"default": default}
    return dataclasses.field(metadata={"yaml": yaml} if yaml is not None else {}, **kwargs)


@dataclasses.dataclass(frozen=True)
class OptimizerSpec:
    name: str = "adam"
    learning_rate: float = 1e-4
    momentum: float = None
    weight_decay: float = None


@dataclasses.dataclass(frozen=True)
class ScheduleSpec:
    name: str = "constant"
    warmup_epochs: int = 0
    decay_epochs: int = 10
    decay_rate: float = 0.1


@dataclasses.dataclass(frozen=True)
class AugmentSpec:
    """The training view; ``resize_shorter``: shorter side to it, then an ``input_size`` crop."""

    crop: bool = True
    flip: bool = True
    randaugment: bool = False
    resize_shorter: int = None


@dataclasses.dataclass(frozen=True)
class SelectSpec:
    monitor: str = None
    mode: str = "min"


@dataclasses.dataclass(frozen=True)
class PhaseSpec:
    name: str = None
    epochs: int = None
    trainable: tuple = _field(None, yaml=list)
    learning_rate: float = None


@dataclasses.dataclass(frozen=True)
class TrainingSpec:
    optimizer: OptimizerSpec = _field(OptimizerSpec)
    schedule: ScheduleSpec = _field(ScheduleSpec)
    epochs: int = 10
    batch_size: int = 32
    balancer: dict = _field(lambda: {"name": "fixed"}, yaml=ANY)
    strategy: str = "auto"
    seed: int = 0
    seeds: tuple = _field(None, yaml=list)
    select: SelectSpec = None
    augment: AugmentSpec = _field(AugmentSpec)
    phases: tuple = _field(tuple, yaml=list)


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    name: str = None
    config: str = None
    data_dir: str = None
    licence: str = ""
    splits: dict = _field(dict, yaml={"train": str, "validation": str, "test": str})
    targets: dict = _field(None, yaml=ANY)
    ignore: dict = None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    family: str = None
    architecture: str = None
    backbone: str = None
    input_size: tuple = _field((224, 224), yaml=list)
    weights: str = None
    weights_dtype: str = "float32"
    options: dict = _field(dict, yaml=ANY)


@dataclasses.dataclass(frozen=True)
class ExportSpec:
    """``version``: the SavedModel version ``affect-zoo export`` writes when none is given."""

    version: int = 1


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A validated recipe: every default is a field default of these classes (read nowhere else). Frozen; derive a
    changed one with ``dataclasses.replace`` (or ``Recipe.replace`` for nested fields)."""

    name: str = None
    description: str = ""
    reference: str = ""
    init: str = None
    dataset: DatasetSpec = _field(DatasetSpec)
    model: ModelSpec = _field(ModelSpec)
    tasks: tuple = _field(tuple, yaml=list)
    training: TrainingSpec = _field(TrainingSpec)
    export: ExportSpec = _field(ExportSpec)

    def replace(self, **changes):
        """A copy with dotted fields changed: ``recipe.replace(**{"training.epochs": 2})``."""
        out = self
        for path, value in changes.items():
            out = _replace_path(out, path.split("."), value)
        return out

    def to_dict(self):
        """The recipe as plain YAML-able data (tuples as lists, unset optional fields left out)."""
        return _plain(self)


def _replace_path(node, keys, value):
    if len(keys) == 1:
        return dataclasses.replace(node, **{keys[0]: value})
    return dataclasses.replace(node, **{keys[0]: _replace_path(getattr(node, keys[0]), keys[1:], value)})


def _plain(value):
    if dataclasses.is_dataclass(value):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _schema(cls):
    """The YAML schema of a spec class: its fields, their YAML types, nested specs as nested schemas."""
    schema = {}
    for f in dataclasses.fields(cls):
        kind = f.metadata.get("yaml", f.type)
        schema[f.name] = _schema(kind) if dataclasses.is_dataclass(kind) else kind
    return schema


def _build(cls, raw):
    """A spec from validated YAML data: nested mappings become their spec classes, lists tuples."""
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in raw or raw[f.name] is None:
            continue
        value = raw[f.name]
        if dataclasses.is_dataclass(f.type):
            value = _build(f.type, value)
        elif f.type is tuple:
            value = tuple(_build(PhaseSpec, v) if cls is TrainingSpec and f.name == "phases" else v
                          for v in value)
        values[f.name] = copy.deepcopy(value)
    return cls(**values)


SCHEMA = {**_schema(Recipe), "extends": str}  # extends is resolved away before a Recipe is built
PHASE_SCHEMA = _schema(PhaseSpec)
REQUIRED = [("name",), ("dataset", "name"), ("model", "family"), ("model", "backbone"), ("tasks",)]
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine")
MIN_INPUT_SIDE = 32  # the smallest input Keras' ImageNet backbones accept


@dataclasses.dataclass(frozen=True)
class Range:
    """The allowed values of a number: ``low``/``high`` bounds (None: unbounded), open or closed."""

    low: float = None
    high: float = None
    low_open: bool = False
    high_open: bool = False

    def holds(self, value):
        if not math.isfinite(value):
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    def __str__(self):
        if self.high is None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


#: Ranges of the numeric fields, by their path in the recipe (``phases`` entries: ``training.phases[].<key>``).
RANGES = {
    "training.epochs": Range(1),
    "training.batch_size": Range(1),
    "training.seed": Range(0, 2 ** 32 - 1),
    "training.optimizer.learning_rate": Range(0, low_open=True),
    "training.optimizer.momentum": Range(0, 1, high_open=True),
    "training.optimizer.weight_decay": Range(0),
    "training.schedule.warmup_epochs": Range(0),
    "training.schedule.decay_epochs": Range(1),
    "training.schedule.decay_rate": Range(0, 1, low_open=True),
    "training.phases[].epochs": Range(1),
    "training.phases[].learning_rate": Range(0, low_open=True),
    "export.version": Range(1),
}

class RecipeError(ValueError):
    """A recipe that cannot be used; the message names the file and the key."""


def recipe_path(name_or_path, recipes_dir=None):
    """The YAML file of an entry name, or the path given."""
    path = pathlib.Path(name_or_path)
    if path.suffix in (".yaml", ".yml"):
        return path
    return pathlib.Path(recipes_dir or RECIPES_DIR) / f"{name_or_path}.yaml"


def load_recipe(name_or_path, recipes_dir=None, components=True):
    """Read, resolve ``extends`` and validate a recipe; returns a frozen ``Recipe``.
    ``components=False``: without the strategy and balancer checks (no TensorFlow import)."""
    path = recipe_path(name_or_path, recipes_dir)
    return resolve(_read(path), where=str(path), recipes_dir=recipes_dir or path.parent, stem=path.stem,
                   components=components)


def resolve(raw, where="recipe", recipes_dir=None, stem=None, components=True):
    """A recipe given as a dict (``experiments.train(dict)``), treated as a file is: ``extends`` resolved (from
    ``recipes_dir``, default ``RECIPES_DIR``), validated (errors name ``where``); returns a frozen ``Recipe``."""
    raw = copy.deepcopy(raw)
    seen = [stem or str(raw.get("name", where))]
    while "extends" in raw:
        parent_name = raw.pop("extends")
        if parent_name in seen:
            raise RecipeError(f"{where}: 'extends' loops through {' -> '.join(seen + [parent_name])}")
        seen.append(parent_name)
        raw = _merge(_read(recipe_path(parent_name, recipes_dir or RECIPES_DIR)), raw)
    validate(raw, where=where, components=components)
    recipe = _build(Recipe, raw)
    if recipe.training.phases and (raw.get("training") or {}).get("epochs") is None:
        recipe = recipe.replace(**{"training.epochs": sum(p.epochs for p in recipe.training.phases)})
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


def validate(recipe, where="recipe", components=True):
    """Raise RecipeError naming the first unknown key, wrongly typed value or missing required key; with
    ``components`` also an unknown strategy or a balancer whose name or options its class refuses."""
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
    if size is not None and (len(size) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) and
                                                       v >= MIN_INPUT_SIDE for v in size)):
        raise RecipeError(f"{where}: 'model.input_size' must be [height, width], ints >= {MIN_INPUT_SIDE}, "
                          f"got {size}")
    _check_ranges(recipe, where)
    _check_names(recipe, where)
    _check_tasks(recipe, where)
    if components:
        _check_strategy(recipe, where)
        _check_balancer(recipe, where)


def _check_ranges(recipe, where):
    training = recipe.get("training") or {}
    values = [(f"training.phases[{i}].{key}", f"training.phases[].{key}", value)
              for i, phase in enumerate(training.get("phases") or []) for key, value in phase.items()]
    for path in RANGES:
        node = recipe
        for key in path.split("."):
            node = node.get(key) if isinstance(node, dict) else None
        values.append((path, path, node))
    for path, rule, value in values:
        if rule in RANGES and value is not None and not RANGES[rule].holds(value):
            raise RecipeError(f"{where}: '{path}' must be {RANGES[rule]}, got {value!r}")


def _check_names(recipe, where):
    training = recipe.get("training") or {}
    for path, value, known in (("training.optimizer.name", (training.get("optimizer") or {}).get("name"), OPTIMIZERS),
                               ("training.schedule.name", (training.get("schedule") or {}).get("name"), SCHEDULES)):
        if value is not None and value not in known:
            raise RecipeError(f"{where}: '{path}' is {value!r}; choose one of {', '.join(known)}")
    optimizer = training.get("optimizer") or {}
    if optimizer.get("momentum") is not None and optimizer.get("name", "adam") != "sgd":
        raise RecipeError(f"{where}: 'training.optimizer.momentum' applies to sgd only, not {optimizer.get('name')!r}")


def _check_strategy(recipe, where):
    from affect_zoo.training import STRATEGIES

    strategy = (recipe.get("training") or {}).get("strategy")
    if strategy is not None and strategy not in STRATEGIES:
        raise RecipeError(f"{where}: 'training.strategy' is {strategy!r}; choose one of {', '.join(STRATEGIES)}")


def _check_tasks(recipe, where):
    for i, task in enumerate(recipe["tasks"]):
        try:
            Task(**task)
        except (TypeError, ValueError) as error:
            raise RecipeError(f"{where}: 'tasks[{i}]': {error}") from None


def _check_balancer(recipe, where):
    """The balancer's name and options, against its class's constructor, and its values by building it."""
    from affect_zoo import balancing

    spec = (recipe.get("training") or {}).get("balancer")
    if spec is None:
        return
    if not isinstance(spec, dict) or "name" not in spec:
        raise RecipeError(f"{where}: 'training.balancer' must be a mapping with a 'name', got {spec!r}")
    options = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] not in balancing.BALANCERS:
        raise RecipeError(f"{where}: 'training.balancer.name' is {spec['name']!r}; choose one of "
                          f"{', '.join(balancing.BALANCERS)}")
    cls = balancing.BALANCERS[spec["name"]]
    accepted = [p for p in inspect.signature(cls.__init__).parameters
                if p not in ("self", "kwargs", "num_tasks", "task_kinds")]
    for key in options:
        if key not in accepted:
            raise RecipeError(f"{where}: unknown key 'training.balancer.{key}' (balancer {spec['name']!r} takes: "
                              f"{', '.join(accepted) or 'no options'})")
    try:
        cls(**options)
    except (TypeError, ValueError) as error:
        raise RecipeError(f"{where}: 'training.balancer': {error}") from None


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
