"""Model families; each builder returns a plain keras.Model whose outputs are a dict keyed by task name.

``build_network(family, ...)`` is the one entry point recipes use: a family maps the recipe's ``model`` section
to its builder.
"""
from affect_zoo.models import multitask
from affect_zoo.models.multitask import ARCHITECTURES, copy_weights_by_name


def _multitask(*, backbone, tasks, input_shape, weights=None, architecture="afi", **options):
    return multitask.build(architecture, backbone, tasks, input_shape, weights=weights, **options)


FAMILIES = {"multitask": _multitask}


def build_network(family, *, backbone, tasks, input_shape, weights=None, architecture=None, **options):
    """The network of a model family from a recipe's ``model`` section (see affect_zoo.recipes)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown model family {family!r}; known: {', '.join(sorted(FAMILIES))}")
    if architecture is not None:
        options["architecture"] = architecture
    return FAMILIES[family](backbone=backbone, tasks=tasks, input_shape=input_shape, weights=weights, **options)


__all__ = ["multitask", "ARCHITECTURES", "FAMILIES", "build_network", "copy_weights_by_name"]
