"""``multitask``: two-branch (or shared-trunk) networks over all tasks, one ``fit`` (``models.multitask``)."""
from affect_zoo.families.base import Family, register_family


@register_family
class MultiTask(Family):
    name = "multitask"
