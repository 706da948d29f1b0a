"""Model families; each builder returns a plain keras.Model whose outputs are a dict keyed by task name.

``build_network(family, ...)`` is the one entry point recipes use: a family maps the recipe's ``model`` section
to its builder.
"""
from affect_zoo.models import mmemo, multitask, semdep, shared
from affect_zoo.models.multitask import ARCHITECTURES, copy_weights_by_name

#: mmemo's vocabulary sizes come from its dataset; these are used only to build the architecture without one
#: (``affect_zoo.load(name, weights=None)``).
MMEMO_DEFAULT_VOCABULARY = {"text_vocab_size": 20000, "tags_vocab_size": 5000}


def _multitask(*, backbone, tasks, input_shape, weights=None, architecture="afi", **options):
    return multitask.build(architecture, backbone, tasks, input_shape, weights=weights, **options)


def _semdep(*, backbone, tasks, input_shape, weights=None, **options):
    return semdep.build(backbone, tasks, input_shape, weights=weights, **options)


def _mmemo(*, backbone, tasks, input_shape, weights=None, word_vectors=None, **options):
    if word_vectors is not None:
        raise ValueError("mmemo: word_vectors need the dataset's vocabulary; build with "
                         "affect_zoo.models.mmemo.build_for_dataset(backbone, info.metadata, word_vectors=...)")
    options = {**MMEMO_DEFAULT_VOCABULARY, **options}
    return mmemo.build(backbone, tasks[0].size, input_shape, weights=weights, **options)


FAMILIES = {"multitask": _multitask, "semdep": _semdep, "mmemo": _mmemo}


def build_network(family, *, backbone, tasks, input_shape, weights=None, architecture=None, **options):
    """The network of a model family from a recipe's ``model`` section (see affect_zoo.recipes)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    if architecture is not None:
        options["architecture"] = architecture
    return FAMILIES[family](backbone=backbone, tasks=tasks, input_shape=input_shape, weights=weights, **options)


__all__ = ["mmemo", "multitask", "semdep", "shared", "ARCHITECTURES", "FAMILIES", "build_network",
           "copy_weights_by_name"]
