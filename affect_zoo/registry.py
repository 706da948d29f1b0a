"""The registry: which entries the zoo has and their model cards, read from folders, without TensorFlow.

An entry is a recipe (``<recipes>/<name>.yaml``) or a function registered with ``register_model``; its card is
the one training wrote (``<saved_models>/<name>/card.json``) or, untrained, what its recipe says. The folders are
read on every call (nothing is cached, so an entry published meanwhile is seen at once) and are injectable:
``using(recipes=..., saved_models=..., cache=...)`` swaps them for a block (tests, a second zoo), ``set_folders``
for the rest of the process. Building models, weights and predictions are ``affect_zoo.zoo``'s; this module
imports neither TensorFlow nor Keras, so ``affect-zoo list``/``info`` answer at once.
"""
import contextlib
import dataclasses
import difflib
import fnmatch
import json
import pathlib

from affect_zoo import recipes
from affect_zoo.cache import cache_dir
from affect_zoo.tasks import as_tasks, describe_outputs

SAVED_MODELS_DIR = recipes.data_dir("saved_models")


class CardError(ValueError):
    """A stored card.json that cannot be read; names the file."""


@dataclasses.dataclass
class ModelCard:
    """What an entry is and how its weights came about. ``metrics`` holds figures measured on a held-out split
    (``{split: {metric: value}}``) and ``baselines`` the same figures of the baselines measured the same way."""

    name: str
    description: str = ""
    family: str = ""
    architecture: str = ""
    backbone: str = ""
    input_size: tuple = ()
    dataset: str = ""
    split: dict = dataclasses.field(default_factory=dict)
    licence: str = ""
    reference: str = ""
    tasks: list = dataclasses.field(default_factory=list)
    outputs: dict = dataclasses.field(default_factory=dict)
    metrics: dict = dataclasses.field(default_factory=dict)
    baselines: dict = dataclasses.field(default_factory=dict)
    weights: dict = None
    recipe: str = ""
    produced: dict = dataclasses.field(default_factory=dict)
    notes: str = ""

    @property
    def pretrained(self):
        return bool(self.weights)

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data):
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - fields
        if unknown:
            raise ValueError(f"model card {data.get('name')!r} has unknown fields {sorted(unknown)}")
        return cls(**data)


@dataclasses.dataclass(frozen=True)
class Folders:
    """Where entries are read from. ``cache`` None: ``cache.cache_dir()`` (``$AFFECT_ZOO_HOME``, ...) at each use."""

    recipes: pathlib.Path = recipes.RECIPES_DIR
    saved_models: pathlib.Path = SAVED_MODELS_DIR
    cache: pathlib.Path = None

    @property
    def cache_dir(self):
        return pathlib.Path(self.cache) if self.cache is not None else cache_dir()


@dataclasses.dataclass
class _State:
    folders: Folders
    entries: dict  # name → Entry, from register_model


@dataclasses.dataclass(frozen=True)
class Entry:
    """One entry: ``build(backbone_weights=None)`` for code entries (None for recipe entries, which the zoo builds
    from their recipe) and ``card()``."""

    name: str
    build: callable
    card: callable


_STACK = [_State(Folders(), {})]


def folders():
    """The folders in use."""
    return _STACK[-1].folders


def set_folders(folders_=None, *, recipes=None, saved_models=None, cache=None):
    """Use ``folders_`` (a Folders), or the current folders with the paths given changed, from now on, e.g. in a
    script that runs the CLI on a zoo of its own; returns the previous Folders (pass it back to restore them)."""
    previous = folders()
    _STACK[-1].folders = folders_ or _replaced(previous, recipes, saved_models, cache)
    return previous


@contextlib.contextmanager
def using(recipes=None, saved_models=None, cache=None):
    """``with using(recipes=dir1, saved_models=dir2):`` the zoo reads entries from these folders (None: the
    current one), and entries registered with ``register_model`` inside the block are dropped when it ends."""
    _STACK.append(_State(_replaced(folders(), recipes, saved_models, cache), {}))
    try:
        yield folders()
    finally:
        _STACK.pop()


def _replaced(current, recipes_dir, saved_models, cache):
    changes = {key: pathlib.Path(value) for key, value in
               (("recipes", recipes_dir), ("saved_models", saved_models), ("cache", cache)) if value is not None}
    return dataclasses.replace(current, **changes)


def register_model(name=None, *, card=None):
    """Decorator (timm style): register ``fn(weights=None) -> keras.Model`` as entry ``name`` (default: the
    function's name). ``card`` is a ModelCard or dict; without one the entry gets a minimal card."""

    def decorate(fn):
        entry_name = name or fn.__name__
        made = card if isinstance(card, ModelCard) else ModelCard(**(card or {"name": entry_name}))
        _STACK[-1].entries[entry_name] = Entry(entry_name, fn, lambda: made)
        return fn

    return decorate


def _entries():
    """Every entry: the recipes of the recipes folder, then the code-registered ones (which win on a name)."""
    found = {name: Entry(name, None, lambda name=name: _card_for_recipe(name))
             for name in recipes.list_recipes(folders().recipes)}
    return {**found, **_STACK[-1].entries}


def entry(name):
    """The Entry called ``name``, or a ValueError suggesting close names."""
    entries = _entries()
    if name not in entries:
        close = difflib.get_close_matches(name, list(entries), n=5, cutoff=0.5)
        hint = f"; did you mean: {', '.join(close)}?" if close else "; see affect_zoo.list_models()"
        raise ValueError(f"unknown model {name!r}{hint}")
    return entries[name]


def list_models(pattern="*", pretrained=None):
    """Entry names matching an fnmatch ``pattern``; ``pretrained=True`` keeps entries with weights, False
    those without."""
    entries = _entries()
    names = sorted(n for n in entries if fnmatch.fnmatch(n, pattern))
    if pretrained is None:
        return names
    return [n for n in names if entries[n].card().pretrained == bool(pretrained)]


def model_card(name):
    """The entry's ModelCard: the trained card from saved_models/ when there is one, else the recipe's."""
    return entry(name).card()


def load_recipe(name_or_path, components=True):
    """``recipes.load_recipe`` with entry names looked up in the recipes folder in use."""
    return recipes.load_recipe(name_or_path, recipes_dir=_recipes_dir_for(name_or_path), components=components)


def as_recipe(recipe, components=True):
    """A ``recipes.Recipe`` from a Recipe, a recipe dict (its ``extends`` resolved in the recipes folder in use), an
    entry name or a YAML path."""
    if isinstance(recipe, recipes.Recipe):
        return recipe
    if isinstance(recipe, dict):
        return recipes.resolve(recipe, where=f"recipe {recipe.get('name', '(unnamed)')!r}",
                               recipes_dir=folders().recipes, components=components)
    return load_recipe(recipe, components=components)


def _recipes_dir_for(name_or_path):
    """The folder a recipe's name and its ``extends`` resolve in: the recipes folder for a name, the file's own
    folder for a path."""
    path = pathlib.Path(name_or_path)
    return path.parent if path.suffix in (".yaml", ".yml") else folders().recipes


def stored_card(name):
    """The card.json training wrote for ``name`` (a dict), or None; a card that is not a JSON object is an error
    naming the file."""
    stored = folders().saved_models / name / "card.json"
    if not stored.is_file():
        return None
    try:
        card = json.loads(stored.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CardError(f"{stored}: not a valid model card ({error})") from None
    if not isinstance(card, dict):
        raise CardError(f"{stored}: a model card is a JSON object, got {type(card).__name__}")
    return card


def _card_for_recipe(name):
    stored = stored_card(name)
    if stored is not None:
        try:  # outputs follow from the tasks and the code in use, not from when the card was written
            if stored.get("tasks"):
                stored = {**stored, "outputs": describe_outputs(stored["tasks"])}
            return ModelCard.from_dict(stored)
        except (TypeError, ValueError) as error:
            raise CardError(f"{folders().saved_models / name / 'card.json'}: {error}") from None
    return card_from_recipe(load_recipe(name, components=False))


def card_from_recipe(recipe):
    """A card with what a recipe says (no weights, no metrics): what an untrained entry shows."""
    recipe = as_recipe(recipe, components=False)
    model, dataset = recipe.model, recipe.dataset
    tasks = as_tasks(recipe.tasks)
    return ModelCard(
        name=recipe.name, description=recipe.description, family=model.family,
        architecture=model.architecture or "", backbone=model.backbone, input_size=model.input_size,
        dataset=dataset.name, split=dict(dataset.splits), licence=dataset.licence, reference=recipe.reference,
        tasks=[t.get_config() for t in tasks], outputs=describe_outputs(tasks), recipe=f"recipes/{recipe.name}.yaml")
