"""``Family``: what differs between model families, in one class per family.

A family says how a recipe becomes a network (and what the dataset fixes in it), how a split becomes batches, in
which stages the network is trained, and which tasks are measured. The training driver (``experiments``), the
evaluation and the factory (``zoo``) ask the recipe's family and never branch on its name, so a new family is one
file with one ``@register_family`` class.
"""
import dataclasses

from affect_zoo import data, recipes
from affect_zoo.models import build_network
from affect_zoo.tasks import as_tasks

_FAMILIES = {}


def register_family(cls):
    """Class decorator: make ``cls`` (a ``Family`` with a unique ``name``) the family of recipes naming it."""
    if not (isinstance(cls, type) and issubclass(cls, Family)) or not cls.name:
        raise TypeError(f"{cls!r}: a model family is a Family subclass with a name")
    if cls.name in _FAMILIES and type(_FAMILIES[cls.name]) is not cls:
        raise ValueError(f"model family {cls.name!r} is already registered by {type(_FAMILIES[cls.name]).__name__}")
    _FAMILIES[cls.name] = cls()
    return cls


def get_family(name):
    """The registered family called ``name``; an unknown one is a RecipeError naming the known ones."""
    if name not in _FAMILIES:
        raise recipes.RecipeError(f"model.family: unknown model family {name!r}; known: {', '.join(sorted(_FAMILIES))}")
    return _FAMILIES[name]


def family_of(recipe):
    return get_family(recipe.model.family)


@dataclasses.dataclass(frozen=True)
class Stage:
    """One ``fit`` of a staged training plan: its folder name, epochs and learning rate, the tasks the stage
    trains (outputs of the network), ``prepare(network)`` (sets what is trainable) and ``targets(y)`` (the
    dataset's targets renamed for those tasks)."""

    name: str
    epochs: int
    learning_rate: float
    tasks: tuple
    prepare: object
    targets: object


class Family:
    """The default behaviour: the network from the recipe's ``model`` section, one ``fit`` of all tasks, the
    recipe's tasks measured on every sample."""

    name = None

    def check(self, recipe):
        """Raise a RecipeError for what this family cannot train (before anything is built or read)."""
        if recipe.training.phases:
            raise recipes.RecipeError(f"training.phases: only the semdep family trains in phases, not {self.name!r}")

    def network(self, recipe, backbone_weights=None):
        """The untrained network a recipe describes."""
        model = recipe.model
        return build_network(model.family, backbone=model.backbone, tasks=as_tasks(recipe.tasks),
                             input_shape=(*model.input_size, 3), weights=backbone_weights,
                             architecture=model.architecture, **model.options)

    def network_for_dataset(self, recipe, data_dir, backbone_weights=None):
        """(network, options the dataset fixed, files to ship beside the weights): what training builds."""
        return self.network(recipe, backbone_weights), {}, {}

    def pipeline(self, recipe, source, training, **common):
        """Batches of a split (``source``, a loaded TFDS split) as the network is fed."""
        dataset = recipe.dataset
        return data.make_pipeline(source, as_tasks(recipe.tasks), recipe.model.input_size,
                                  recipe.training.batch_size, training=training,
                                  targets=dataset.targets or dataset.name, ignore=dataset.ignore, **common)

    def stages(self, recipe, network):
        """The staged training plan (a list of ``Stage``), or None for one ``fit`` of all tasks."""
        return None

    def evaluated_tasks(self, tasks):
        """The tasks measured on a test split."""
        return list(tasks)

    def evaluation_targets(self, y, rows, every):
        """Targets and row masks of tasks measured beyond the trained ones (none by default)."""
        return y, rows
