"""The zoo: entries built into models (the factory) and ``load``; weights come verified from ``affect_zoo.hub`` and
``predict`` is in ``affect_zoo.inference``.

Which entries exist and their cards are ``affect_zoo.registry``'s (TensorFlow-free; its names are re-exported
here). Entries are data: every ``recipes/<name>.yaml`` is an entry (timm's table, keras-hub's presets), and
``saved_models/<name>/card.json`` (with the weights file and its sha256) is what training here produced. Code can
add entries with the ``register_model`` decorator. An entry is listed whether or not weights exist; loading the
default weights of one without them raises an error naming the recipe that trains it.

Some networks are sized by their training data rather than by their recipe (mmemo: vocabulary sizes and sequence
lengths come from the dataset's metadata). Training records those options in the card, under
``produced.network_options``, and an entry with such a card is built with them, so its weights fit without the
dataset.
"""
from affect_zoo import balancing, registry
from affect_zoo.cache import sha256  # noqa: F401  (kept importable from here)
from affect_zoo.hub import (UnverifiedWeightsWarning, WeightsError, download, resolve_weights,  # noqa: F401
                            verify_user_weights)
from affect_zoo.families import family_of
from affect_zoo.families.base import family_of_model
from affect_zoo.registry import (SAVED_MODELS_DIR, CardError, ModelCard, card_from_recipe, list_models,  # noqa: F401
                                 model_card, register_model)
from affect_zoo.tasks import as_tasks
from affect_zoo.training import MultiTaskModel


def _recipe_builder(name):
    """Build a recipe entry: its recipe, with the network options training recorded in its card (mmemo's sizes)."""

    def build(backbone_weights=None):
        recipe = registry.load_recipe(name)
        stored = registry.stored_card(name)
        network_options = (stored or {}).get("produced", {}).get("network_options")
        if network_options:
            recipe = recipe.replace(**{"model.options": {**recipe.model.options, **network_options}})
        return model_from_recipe(recipe, backbone_weights=backbone_weights)
    return build


def model_from_recipe(recipe, backbone_weights=None):
    """The untrained MultiTaskModel a recipe describes (compiled by the trainer, not here)."""
    recipe = registry.as_recipe(recipe)
    return multitask_model(recipe, family_of(recipe).network(recipe, backbone_weights))


def multitask_model(recipe, network, tasks=None):
    """``network`` wrapped for training as the recipe says (its balancer), on ``tasks`` (default: the recipe's);
    for networks built outside ``model_from_recipe`` (from dataset metadata, or one stage of a phased run)."""
    recipe = registry.as_recipe(recipe)
    balancer = dict(recipe.training.balancer)
    return MultiTaskModel(network, tasks=as_tasks(tasks or recipe.tasks),
                          balancer=balancing.get(balancer.pop("name"), **balancer), name=recipe.name)


def load(name, weights="default"):
    """A ready keras.Model for entry ``name``.

    weights: "default" (the entry's verified weights; an error naming the recipe if it has none), None (the
    untrained architecture, backbone randomly initialised) or the path of a ``.weights.h5`` file of the network
    (``model.network.save_weights``, as training writes it: a compiled model's own file also holds the optimizer's
    slots, three times the size with Adam). What inference needs beside the weights is read from their folder
    (``Family.attach``: an mmemo entry's vocabularies).
    """
    entry = registry.entry(name)
    build = entry.build or _recipe_builder(name)
    if weights is None:
        return build()
    if weights == "default":
        card = entry.card()
        if not card.pretrained:
            raise WeightsError(
                f"{name} has no published weights. Train them with `affect-zoo train recipes/{name}.yaml` "
                f"(dataset: `tfds build tfds_builders/{card.dataset} --manual_dir=... --data_dir=...`), or use "
                f"load({name!r}, weights=None) for the untrained architecture")
        path = resolve_weights(name, card.weights)
    else:
        path = verify_user_weights(weights)
    model = build()
    try:
        getattr(model, "network", model).load_weights(str(path))
    except Exception as error:
        raise WeightsError(f"{path} does not fit {name} ({type(error).__name__}: "
                           f"{str(error).splitlines()[0][:200]})") from None
    family_of_model(model).attach(model, path.parent)
    return model
